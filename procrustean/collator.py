"""``ProcrusteanCollator``: examples -> a batch, with each batch's weakening plan drawn where the batch is made.

Usable as a ``DataLoader`` ``collate_fn`` and as a ``transformers.Trainer`` ``data_collator``. The
collator sees each batch's labels, so this is where its plan is drawn: who may be weakened, by how
much, with whom (:class:`~procrustean.policy.WeakeningDraws`). The draws come from a generator seeded
by the policy's seed and the batch itself, so they are the same in any DataLoader worker and after
any resume (the recipe's, or ``Trainer``'s), and they need no saved state. ``ProcrusteanModel`` then
resolves them with the class probabilities of the moment and applies them at its location; the plan
of a batch is always complete within the batch it was drawn for, before any process split.

With ``weaken_pixels=True`` the collator applies the plan to the images itself (the ``input``
location, on the CPU, uint8 images included), for models that are not a ``ProcrusteanModel``; it
then uses the count probabilities it was given (the progress rule's statistics live in the model).
Labels are never changed. Use a collator without a policy for evaluation.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch

from .errors import MissingColumnError, UsageError
from .policy import WeakeningPolicy, batch_generator


def _to_tensor(value: Any, key: str, index: int) -> torch.Tensor:
    if torch.is_tensor(value):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if hasattr(value, "mode") and hasattr(value, "size"):  # a PIL image: the transform was not applied
        raise UsageError(f"Example {index}: '{key}' is a PIL image. Apply an image transform first "
                         "(e.g. dataset.set_transform with timm's create_transform) so it becomes a tensor.")
    return torch.as_tensor(value)


def _label(value: Any, key: str, index: int) -> int:
    """A class index; a float, bool or soft label is refused rather than truncated."""
    if torch.is_tensor(value) or isinstance(value, np.ndarray):
        if (value.size if isinstance(value, np.ndarray) else value.numel()) != 1:
            raise UsageError(f"Example {index}: '{key}' holds {tuple(value.shape)} values, not one class index.")
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise UsageError(f"Example {index}: '{key}' is {value!r} ({type(value).__name__}); labels must be integer "
                         "class indices (soft or float labels are not Procrustean: the weakened sample keeps its "
                         "own hard label).")
    return int(value)


class ProcrusteanCollator:
    """Stack ``pixel_key`` and ``label_key`` into ``{"pixel_values", "labels"}`` and, with a policy, the batch's
    ``"weakening_draws"`` for ``ProcrusteanModel`` (or, with ``weaken_pixels=True``, weakened images)."""

    def __init__(self, policy: Optional[WeakeningPolicy] = None, weaken_pixels: bool = False,
                 pixel_key: str = "pixel_values", label_key: str = "labels",
                 output_pixel_key: str = "pixel_values", output_label_key: str = "labels"):
        if weaken_pixels and policy is None:
            raise UsageError("weaken_pixels=True needs a policy to weaken with.")
        if weaken_pixels and policy.progress is not None:
            raise UsageError("The progress rule reads the model's training statistics, which the collator does not "
                             "see: weaken in the model (ProcrusteanModel(location='input')) rather than in the collator.")
        self.policy, self.weaken_pixels = policy, weaken_pixels
        self.pixel_key, self.label_key = pixel_key, label_key
        self.output_pixel_key, self.output_label_key = output_pixel_key, output_label_key

    def __call__(self, examples: List[Mapping[str, Any]]) -> Dict[str, Any]:
        if len(examples) == 0:
            raise UsageError("Cannot collate an empty list of examples.")
        for key in (self.pixel_key, self.label_key):
            if key not in examples[0]:
                raise MissingColumnError(f"Examples have no '{key}' key; available keys: {sorted(examples[0].keys())}. "
                                         "Set the collator's pixel_key / label_key.")
        pixels = torch.stack([_to_tensor(ex[self.pixel_key], self.pixel_key, i) for i, ex in enumerate(examples)])
        labels = torch.tensor([_label(ex[self.label_key], self.label_key, i) for i, ex in enumerate(examples)],
                              dtype=torch.long)
        batch: Dict[str, Any] = {self.output_pixel_key: pixels, self.output_label_key: labels}
        if "sample_index" in examples[0]:  # the in-memory path's augmentation is seeded by it
            batch["sample_index"] = torch.tensor([int(ex["sample_index"]) for ex in examples], dtype=torch.long)
        if self.policy is not None:
            seed = self.policy.seed if self.policy.seed is not None else 0
            draws = self.policy.draw(labels, generator=batch_generator(seed, labels, pixels))
            if self.weaken_pixels:
                batch[self.output_pixel_key] = self.policy.resolve(draws, labels).apply(pixels)
            else:
                batch["weakening_draws"] = draws
        return batch
