import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from procrustean import ProcrusteanCollator, WeakeningPolicy

COUNTS = [100, 100, 1, 1]


def examples(n=8, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return [{"pixel_values": (torch.rand(3, 4, 4, generator=g) * 255).to(dtype), "labels": i % 4, "id": i}
            for i in range(n)]


def test_stacks_without_policy():
    batch = ProcrusteanCollator()(examples())
    assert set(batch) == {"pixel_values", "labels"}
    assert batch["pixel_values"].shape == (8, 3, 4, 4) and batch["labels"].dtype == torch.long
    assert batch["labels"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert torch.equal(batch["pixel_values"][5], examples()[5]["pixel_values"])


def test_custom_keys_numpy_inputs_and_missing_key_error():
    exs = [{"img": np.ones((1, 2, 2), dtype=np.float32) * i, "fine_label": i} for i in range(3)]
    collate = ProcrusteanCollator(pixel_key="img", label_key="fine_label", output_pixel_key="x",
                                  output_label_key="y")
    batch = collate(exs)
    assert batch["x"].shape == (3, 1, 2, 2) and batch["y"].tolist() == [0, 1, 2]
    with pytest.raises(KeyError, match=r"no 'labels' key; available keys: \['fine_label', 'img'\]"):
        ProcrusteanCollator(pixel_key="img")(exs)


def test_pil_images_get_a_clear_error():
    from PIL import Image

    with pytest.raises(TypeError, match="Apply an image transform"):
        ProcrusteanCollator()([{"pixel_values": Image.new("RGB", (4, 4)), "labels": 0}])


def test_pixel_weakening_keeps_labels_and_minor_samples():
    policy = WeakeningPolicy(COUNTS, rule="linear", lam_range=(0.5, 0.7), seed=0)
    exs = examples(64)
    plain = ProcrusteanCollator()(exs)
    batch = ProcrusteanCollator(policy)(exs)
    assert torch.equal(batch["labels"], plain["labels"])
    minor = plain["labels"] >= 2
    assert torch.equal(batch["pixel_values"][minor], plain["pixel_values"][minor])
    changed = (batch["pixel_values"] != plain["pixel_values"]).flatten(1).any(1)
    assert changed[~minor].float().mean() > 0.8  # p = 1 for the two big classes (unless paired with self)
    # same seed, same plan: the mixing equals the policy's own plan applied to the stacked batch
    replay = WeakeningPolicy(COUNTS, rule="linear", lam_range=(0.5, 0.7), seed=0)
    torch.testing.assert_close(batch["pixel_values"], replay.plan(plain["labels"]).apply(plain["pixel_values"]))


def test_uint8_images_are_mixed_and_rounded():
    policy = WeakeningPolicy(COUNTS, gamma=0.0, seed=1)
    exs = examples(8, dtype=torch.uint8)
    batch = ProcrusteanCollator(policy)(exs)
    assert batch["pixel_values"].dtype == torch.uint8
    replay = WeakeningPolicy(COUNTS, gamma=0.0, seed=1).plan(batch["labels"])
    stacked = torch.stack([e["pixel_values"] for e in exs]).float()
    expected = replay.apply(stacked).round().to(torch.uint8)
    assert torch.equal(batch["pixel_values"], expected)


def test_switch_off_and_dataloader_workers_draw_distinct_plans():
    policy = WeakeningPolicy(COUNTS, gamma=0.0, seed=0)
    collate = ProcrusteanCollator(policy, weaken=False)
    exs = examples(16)
    assert torch.equal(collate(exs)["pixel_values"], ProcrusteanCollator()(exs)["pixel_values"])
    collate.weaken = True
    # identical batches in two workers must not be mixed identically (each worker has its own generator)
    data = exs[:8] * 2
    loader = DataLoader(data, batch_size=8, shuffle=False, num_workers=2, collate_fn=collate,
                        generator=torch.Generator().manual_seed(0))
    first, second = [b["pixel_values"] for b in loader]
    assert not torch.equal(first, second)
    again = [b["pixel_values"] for b in DataLoader(data, batch_size=8, shuffle=False, num_workers=2,
                                                   collate_fn=collate, generator=torch.Generator().manual_seed(0))]
    assert torch.equal(first, again[0]) and torch.equal(second, again[1])  # reproducible from the loader seed


def test_works_as_trainer_data_collator_for_hf_dataset():
    from datasets import Dataset

    ds = Dataset.from_dict({"image": [np.zeros((2, 2), dtype=np.float32).tolist()] * 4, "label": [0, 1, 2, 3]})
    ds.set_transform(lambda b: {"pixel_values": [torch.tensor(im)[None] for im in b["image"]],
                                "labels": b["label"]})
    batch = ProcrusteanCollator(WeakeningPolicy(COUNTS))([ds[i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, 1, 2, 2)
