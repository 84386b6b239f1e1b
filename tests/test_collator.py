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


def test_pil_images_and_float_labels_get_a_clear_error():
    from PIL import Image

    from procrustean.errors import UsageError

    with pytest.raises(UsageError, match="Apply an image transform"):
        ProcrusteanCollator()([{"pixel_values": Image.new("RGB", (4, 4)), "labels": 0}])
    for label in (1.7, 1.0, torch.tensor(0.5), True, torch.tensor([0, 1])):
        with pytest.raises(UsageError, match="labels must be integer class indices|not one class index"):
            ProcrusteanCollator()([{"pixel_values": torch.zeros(1), "labels": label}])
    batch = ProcrusteanCollator()([{"pixel_values": torch.zeros(1), "labels": lab}
                                   for lab in (np.int64(2), torch.tensor(1), 0)])
    assert batch["labels"].tolist() == [2, 1, 0]


def test_the_collator_draws_each_batch_plan_from_the_seed_and_the_batch():
    policy = WeakeningPolicy(COUNTS, seed=0)
    exs = examples(16)
    batch = ProcrusteanCollator(policy)(exs)
    plain = ProcrusteanCollator()(exs)
    assert torch.equal(batch["pixel_values"], plain["pixel_values"]) and torch.equal(batch["labels"], plain["labels"])
    draws = batch["weakening_draws"]
    assert len(draws) == 16 and sorted(draws.partner.tolist()) == list(range(16))
    again = ProcrusteanCollator(WeakeningPolicy(COUNTS, seed=0))(exs)["weakening_draws"]  # a new process, a resume
    assert torch.equal(draws.uniform, again.uniform) and torch.equal(draws.partner, again.partner)
    other_seed = ProcrusteanCollator(WeakeningPolicy(COUNTS, seed=1))(exs)["weakening_draws"]
    other_batch = ProcrusteanCollator(policy)(exs[8:] + exs[:8])["weakening_draws"]
    assert not torch.equal(draws.uniform, other_seed.uniform) and not torch.equal(draws.uniform, other_batch.uniform)
    # nothing is consumed from the policy's own generator: plans need no saved state
    assert torch.equal(policy.generator.get_state(), WeakeningPolicy(COUNTS, seed=0).generator.get_state())


def test_plans_are_the_same_with_any_number_of_workers():
    policy = WeakeningPolicy(COUNTS, gamma=0.0, seed=0)
    data = examples(32)

    def draws_with(workers):
        loader = DataLoader(data, batch_size=8, shuffle=True, num_workers=workers,
                            collate_fn=ProcrusteanCollator(policy), generator=torch.Generator().manual_seed(0))
        return [(b["labels"], b["weakening_draws"].uniform, b["weakening_draws"].partner) for b in loader]

    reference = draws_with(0)
    for workers in (1, 2):
        for (labels, uniform, partner), (labels_ref, uniform_ref, partner_ref) in zip(draws_with(workers), reference):
            assert torch.equal(labels, labels_ref) and torch.equal(uniform, uniform_ref)
            assert torch.equal(partner, partner_ref)
    assert len({tuple(u.tolist()) for _, u, _ in reference}) == 4  # different batches, different plans


def test_pixel_weakening_keeps_labels_and_minor_samples():
    policy = WeakeningPolicy(COUNTS, rule=lambda n: (n > 1).double(), lam_range=(0.5, 0.7), seed=0)
    exs = examples(64)
    plain = ProcrusteanCollator()(exs)
    batch = ProcrusteanCollator(policy, weaken_pixels=True)(exs)
    assert "weakening_draws" not in batch and torch.equal(batch["labels"], plain["labels"])
    minor = plain["labels"] >= 2
    assert torch.equal(batch["pixel_values"][minor], plain["pixel_values"][minor])
    changed = (batch["pixel_values"] != plain["pixel_values"]).flatten(1).any(1)
    assert changed[~minor].float().mean() > 0.8  # p = 1 for the two big classes (unless paired with self)
    # exactly the plan the collator draws for this batch, applied to the stacked images
    draws = ProcrusteanCollator(policy)(exs)["weakening_draws"]
    torch.testing.assert_close(batch["pixel_values"],
                               policy.resolve(draws, plain["labels"]).apply(plain["pixel_values"]))


def test_uint8_images_are_mixed_and_rounded():
    policy = WeakeningPolicy(COUNTS, gamma=0.0, seed=1)
    exs = examples(8, dtype=torch.uint8)
    batch = ProcrusteanCollator(policy, weaken_pixels=True)(exs)
    assert batch["pixel_values"].dtype == torch.uint8
    stacked = torch.stack([e["pixel_values"] for e in exs])
    plan = policy.resolve(ProcrusteanCollator(policy)(exs)["weakening_draws"], batch["labels"])
    assert torch.equal(batch["pixel_values"], plan.apply(stacked.float()).round().to(torch.uint8))
    assert not torch.equal(batch["pixel_values"], stacked)


def test_pixel_weakening_needs_a_count_rule():
    from procrustean.errors import UsageError

    with pytest.raises(UsageError, match="progress rule"):
        ProcrusteanCollator(WeakeningPolicy(COUNTS, rule="progress"), weaken_pixels=True)
    with pytest.raises(UsageError, match="needs a policy"):
        ProcrusteanCollator(weaken_pixels=True)


def test_works_as_trainer_data_collator_for_hf_dataset():
    from datasets import Dataset

    ds = Dataset.from_dict({"image": [np.zeros((2, 2), dtype=np.float32).tolist()] * 4, "label": [0, 1, 2, 3]})
    ds.set_transform(lambda b: {"pixel_values": [torch.tensor(im)[None] for im in b["image"]],
                                "labels": b["label"]})
    batch = ProcrusteanCollator(WeakeningPolicy(COUNTS))([ds[i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, 1, 2, 2) and len(batch["weakening_draws"]) == 4
