"""Plain cross-entropy, the baseline every imbalanced-learning method is measured against.

Wrapped as a `ClassWeightedLoss` so deferred re-weighting can turn it into CE-DRW (Cao et al., NeurIPS
2019) and so the class count can be checked against the logits.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..data.counts import ClassCounts
from .base import ClassWeightedLoss, _check_real
from ..errors import UsageError


class CrossEntropyLoss(ClassWeightedLoss):
    """`F.cross_entropy(logits, labels, weight=class_weight, label_smoothing=...)`.

    Args:
        class_counts: optional global training counts; only used to check the number of classes.
        label_smoothing: as in `F.cross_entropy` (PyTorch's convention, also when a class weight is set).
        num_classes: optional number of classes, checked against the logits.
        reduction: "mean" (weighted mean, as `F.cross_entropy`), "sum" or "none".
    """

    def __init__(
            self,
            class_counts: Optional[ClassCounts] = None,
            label_smoothing: float = 0.0,
            *,
            num_classes: Optional[int] = None,
            reduction: str = "mean",
    ) -> None:
        super().__init__(class_counts, num_classes=num_classes, reduction=reduction)
        self.label_smoothing = _check_real(label_smoothing, "label_smoothing", 0.0)
        if self.label_smoothing > 1.0:
            raise UsageError(f"label_smoothing must be in [0, 1], got {label_smoothing}.")

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = self._check_inputs(logits, labels)
        return self._cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, label_smoothing={self.label_smoothing}"
