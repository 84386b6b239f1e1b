"""``ProcrusteanCollator``: HF-style examples -> batch tensors, optionally weakened in pixel space.

Usable as a ``DataLoader`` ``collate_fn`` and as a ``transformers.Trainer`` ``data_collator``. With a
policy it weakens the images of major-class samples here, on the CPU, before the batch exists as a
device tensor -- and before Accelerate could split it across processes (``split_batches`` /
``dispatch_batches``), so the mixing is always complete within the batch it was drawn for.
Labels are never changed. Use a collator without a policy (or ``weaken=False``) for evaluation.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch
from torch.utils.data import get_worker_info

from .policy import WeakeningPolicy


def _to_tensor(value: Any, key: str, index: int) -> torch.Tensor:
    if torch.is_tensor(value):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if hasattr(value, "mode") and hasattr(value, "size"):  # a PIL image: the transform was not applied
        raise TypeError(f"Example {index}: '{key}' is a PIL image. Apply an image transform first "
                        "(e.g. dataset.set_transform with timm's create_transform) so it becomes a tensor.")
    return torch.as_tensor(value)


class ProcrusteanCollator:
    """Stack ``pixel_key`` and ``label_key`` of each example into ``{"pixel_values": [B,...], "labels": [B]}``.

    Pass ``policy`` to weaken in pixel space (``weaken=True``); ``weaken`` can be switched off later
    (e.g. at the weakening stop epoch). In DataLoader worker processes each worker draws from its own
    generator seeded by the worker's seed, so workers never repeat each other's plans.
    """

    def __init__(self, policy: Optional[WeakeningPolicy] = None, weaken: bool = True,
                 pixel_key: str = "pixel_values", label_key: str = "labels",
                 output_pixel_key: str = "pixel_values", output_label_key: str = "labels"):
        self.policy = policy
        self.weaken = weaken
        self.pixel_key, self.label_key = pixel_key, label_key
        self.output_pixel_key, self.output_label_key = output_pixel_key, output_label_key
        self._worker_generator: Optional[torch.Generator] = None
        self._worker_id: Optional[int] = None

    def _generator(self) -> torch.Generator:
        worker = get_worker_info()
        if worker is None:
            return self.policy.generator
        if self._worker_id != worker.id or self._worker_generator is None:
            self._worker_generator = torch.Generator().manual_seed(worker.seed % 2**63)
            self._worker_id = worker.id
        return self._worker_generator

    def __call__(self, examples: List[Mapping[str, Any]]) -> Dict[str, torch.Tensor]:
        if len(examples) == 0:
            raise ValueError("Cannot collate an empty list of examples.")
        for key in (self.pixel_key, self.label_key):
            if key not in examples[0]:
                raise KeyError(f"Examples have no '{key}' key; available keys: {sorted(examples[0].keys())}. "
                               f"Set the collator's pixel_key / label_key.")
        pixels = torch.stack([_to_tensor(ex[self.pixel_key], self.pixel_key, i) for i, ex in enumerate(examples)])
        labels = torch.as_tensor([int(ex[self.label_key]) for ex in examples], dtype=torch.long)
        if self.policy is not None and self.weaken:
            pixels = self._weaken_pixels(pixels, labels)
        return {self.output_pixel_key: pixels, self.output_label_key: labels}

    def _weaken_pixels(self, pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        plan = self.policy.plan(labels, generator=self._generator())
        if pixels.dtype.is_floating_point:
            return plan.apply(pixels)
        # uint8 (fast-collate style) images: mix in float, round back to the input dtype.
        info = torch.iinfo(pixels.dtype)
        return plan.apply(pixels.float()).round_().clamp_(info.min, info.max).to(pixels.dtype)
