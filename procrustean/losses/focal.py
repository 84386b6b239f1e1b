"""Focal loss.

Why: down-weights well-classified (mostly major-class) samples by (1 - p)^gamma so that the hard
ones dominate the gradient. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017
(arXiv 1708.02002). Follows `FocalLoss`/`focal_loss` of github.com/kaidic/LDAM-DRW (losses.py),
the baseline of the LDAM-DRW paper (gamma = 1 in its `cifar_train.py`).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..data.counts import ClassCounts
from .base import ClassWeightedLoss, _check_real


class FocalLoss(ClassWeightedLoss):
    """`mean_i (1 - p_i)^gamma * ce_i`, with `ce_i = w[y_i] * CE_i` and `p_i = exp(-ce_i)`.

    Reduction convention (differs from the other losses, as in the reference): "mean" is the
    *plain* batch mean, not divided by `sum_i w[y_i]`; and when a class weight is set, `p_i` is
    computed from the *weighted* per-sample CE (so it is not the model's probability), exactly as
    `focal_loss(F.cross_entropy(..., reduction='none', weight=w), gamma)` in LDAM-DRW.
    Numerical difference from the reference: `1 - p` is computed as `-expm1(-ce)`, and a sample
    with `ce == 0` gets a zero (not NaN) gradient when `0 < gamma < 1`.

    Args:
        gamma: focusing exponent (>= 0; 0 is cross-entropy).
        class_counts: optional global training counts; only used to check the number of classes.
        num_classes: optional number of classes, checked against the logits.
        reduction: "mean" (plain mean), "sum" or "none".
    """

    def __init__(
            self,
            gamma: float = 1.0,
            class_counts: Optional[ClassCounts] = None,
            *,
            num_classes: Optional[int] = None,
            reduction: str = "mean",
    ) -> None:
        super().__init__(class_counts, num_classes=num_classes, reduction=reduction)
        self.gamma = _check_real(gamma, "gamma", 0.0)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = self._check_inputs(logits, labels)
        ce = F.cross_entropy(logits, labels, weight=self._weight_like(logits), reduction="none")
        if self.gamma == 0.0:
            loss = ce
        else:
            one_minus_p = -torch.expm1(-ce)
            # Double `where` so that pow's infinite derivative at 0 (gamma < 1) never reaches autograd.
            positive = one_minus_p > 0
            safe = torch.where(positive, one_minus_p, torch.ones_like(one_minus_p))
            modulator = torch.where(positive, safe ** self.gamma, torch.zeros_like(one_minus_p))
            loss = modulator * ce
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gamma={self.gamma}"
