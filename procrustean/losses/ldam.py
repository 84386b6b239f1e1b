"""Label-distribution-aware margin (LDAM) loss.

Why: the generalisation bound for a class tightens with a larger margin, and the optimal trade-off
gives minor classes larger margins, m_c proportional to n_c^(-1/4).

Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss", NeurIPS 2019
(arXiv 1906.07413). Mirrors `LDAMLoss` of the authors' code (github.com/kaidic/LDAM-DRW, losses.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.counts import ClassCounts
from .base import ClassWeightedLoss, _check_counts_positive, _check_real


class LDAMLoss(ClassWeightedLoss):
    """`CE(scale * (logits - m_y * onehot(y)), y, weight)` with `m_c = max_margin * (n_min / n_c)^(1/4)`.

    Margins are `1 / n_c^(1/4)` rescaled so that the largest (smallest class) equals `max_margin`,
    exactly as the reference. Note: the reference feeds LDAM the cosine logits of a `NormedLinear`
    classifier (|logit| <= 1, hence `scale` = 30); this class applies to whatever logits it is given,
    so with an ordinary linear head the margin/scale values of the paper are not calibrated.

    Args:
        class_counts: global training count per class (zero counts are refused).
        max_margin: the largest margin (>= 0; the reference's `max_m`).
        scale: logit scale (> 0; the reference's `s`).
        reduction: "mean" (weighted mean, as `F.cross_entropy`), "sum" or "none".
    """

    margins: torch.Tensor

    def __init__(self, class_counts: ClassCounts, max_margin: float = 0.5, scale: float = 30.0, *,
                 reduction: str = "mean") -> None:
        super().__init__(class_counts, reduction=reduction)
        counts = self.class_counts
        _check_counts_positive(counts, type(self).__name__, "the margin 1 / n_c^(1/4)")
        self.max_margin = _check_real(max_margin, "max_margin", 0.0)
        self.scale = _check_real(scale, "scale", 0.0, low_inclusive=False)
        margins = 1.0 / torch.sqrt(torch.sqrt(counts))
        margins = margins * (self.max_margin / margins.max())
        self.register_buffer("margins", margins, persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = self._check_inputs(logits, labels)
        margins = self._buffer_like("margins", logits)
        is_target = F.one_hot(labels, logits.shape[1]).bool()
        adjusted = torch.where(is_target, logits - margins[labels].unsqueeze(1), logits)
        return self._cross_entropy(self.scale * adjusted, labels)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_margin={self.max_margin}, scale={self.scale}"
