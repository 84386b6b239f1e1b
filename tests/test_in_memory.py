"""The in-memory data path: the same augmentation distribution as the PIL path, from (seed, epoch, index) only."""
import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image

from procrustean.data.in_memory import DeviceAugment, InMemoryImages, decode_images, sample_uniforms

from recipe_utils import SMALL, assert_same_weights, run_killed_and_resumed


def test_uniforms_depend_on_seed_epoch_and_index_only():
    indices = torch.arange(1000)
    a = sample_uniforms(0, 3, indices, 3)
    assert torch.equal(a[500:], sample_uniforms(0, 3, indices[500:], 3))  # not on the batch it lands in
    assert not torch.equal(a, sample_uniforms(0, 4, indices, 3)) and not torch.equal(a, sample_uniforms(1, 3, indices, 3))
    assert 0 <= a.min() and a.max() < 1 and abs(a.mean().item() - 0.5) < 0.03


def test_crop_offsets_and_flips_have_the_pil_distribution():
    augment = DeviceAugment([0.5], [0.5], padding=4)
    top, left, flipped = augment.draws(torch.arange(45_000), epoch=1)
    for offsets in (top, left):  # RandomCrop(padding=4): the corner is uniform on {0, ..., 8}
        counts = torch.bincount(offsets, minlength=9).double()
        assert counts.numel() == 9 and ((counts - 5000).abs() < 5 * 5000 ** 0.5).all(), counts
    assert abs(flipped.double().mean().item() - 0.5) < 0.01


def test_the_batched_crop_equals_pad_then_slice_then_flip():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 10, 12), dtype=torch.uint8, generator=g)
    indices = torch.arange(100, 164)
    augment = DeviceAugment([0.1, 0.2, 0.3], [0.5, 0.6, 0.7], padding=4, seed=7)
    out = augment(images, indices, epoch=2)
    top, left, flipped = augment.draws(indices, 2)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for i in range(64):
        crop = padded[i, :, top[i]:top[i] + 10, left[i]:left[i] + 12]
        crop = crop.flip(-1) if flipped[i] else crop
        expected = (crop.float() / 255 - torch.tensor([0.1, 0.2, 0.3]).view(3, 1, 1)) / torch.tensor([0.5, 0.6, 0.7]).view(3, 1, 1)
        torch.testing.assert_close(out[i], expected)


def test_decode_applies_the_geometry_once_and_refuses_mixed_sizes():
    rng = np.random.default_rng(0)
    ds = Dataset.from_dict({"image": [Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)) for _ in range(3)]})
    images = decode_images(ds, lambda im: im.resize((6, 6)), "image", "L")
    assert images.shape == (3, 1, 6, 6) and images.dtype == torch.uint8
    data = InMemoryImages(images, [0, 1, 1])
    assert data[2]["sample_index"] == 2 and data[2]["labels"] == 1 and data[2]["pixel_values"].shape == (1, 6, 6)
    mixed = Dataset.from_dict({"image": [Image.new("L", (8, 8)), Image.new("L", (9, 9))]})
    from procrustean.errors import UsageError

    with pytest.raises(UsageError, match="one size"):
        decode_images(mixed, lambda im: im, "image", "L")


def test_recipe_in_memory_path_trains_and_resumes_exactly(imagefolder, tmp_path):
    common = ["--dataset", str(imagefolder), "--imbalance", "none", "--epochs", "2", "--checkpointing_steps", "2",
              "--data_path", "in_memory", "--seed", "9", "--verify_images", "false", *SMALL]
    full, broken = tmp_path / "full", tmp_path / "broken"
    run_killed_and_resumed(common, full, broken, kill_after=6)
    assert_same_weights(full, broken)
