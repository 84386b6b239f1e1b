"""Class-dependent temperatures (CDT) loss.

Why: minor-class training features deviate from their test features (they are over-fitted), which
shrinks the minor classes' decision regions at test time. Dividing each class's logit by a
temperature a_c >= 1 that grows as the class shrinks makes minor classes harder to fit during
training, compensating for that deviation; at test time the raw logits are used.

Ye, Chen, Zhan, Chao, "Identifying and Compensating for Feature Deviation in Imbalanced Deep
Learning", arXiv 2001.01385 (2020). Follows `CDT` of BagofTricks-LT (zhangyongshun/BagofTricks-LT,
lib/loss/loss_impl/class_dependent_temperatures_loss.py) with the temperatures always on.
"""
from __future__ import annotations

import torch

from ..data.counts import ClassCounts
from .base import ClassWeightedLoss, _check_counts_positive, _check_real


class CDTLoss(ClassWeightedLoss):
    """`CE(logits / a, labels)` with `a_c = (n_max / n_c) ** gamma` (training only).

    Args:
        class_counts: global training count per class (zero counts are refused).
        gamma: temperature exponent (>= 0; 0 is plain CE). The paper searches [0, 0.4] on CIFAR-10,
            [0, 0.2] on CIFAR-100, [0, 0.1] on iNaturalist.
        reduction: "mean" (weighted mean, as `F.cross_entropy`), "sum" or "none".
    """

    temperatures: torch.Tensor

    def __init__(self, class_counts: ClassCounts, gamma: float = 0.1, *, reduction: str = "mean") -> None:
        super().__init__(class_counts, reduction=reduction)
        counts = self.class_counts
        _check_counts_positive(counts, type(self).__name__, "the temperature (n_max / n_c)^gamma")
        self.gamma = _check_real(gamma, "gamma", 0.0)
        self.register_buffer("temperatures", (counts.max() / counts) ** self.gamma, persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = self._check_inputs(logits, labels)
        temperatures = self._buffer_like("temperatures", logits)
        return self._cross_entropy(logits / temperatures, labels)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gamma={self.gamma}"
