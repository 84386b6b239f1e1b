"""Logit-adjusted cross-entropy (a.k.a. balanced softmax at tau = 1).

Why: on imbalanced data the softmax learns p(y|x) under the skewed training prior; adding
`tau * log(prior_y)` to the logits *during training only* makes the raw logits estimate a balanced
posterior, so plain argmax at test time favours minor classes as much as major ones.

Menon et al., "Long-tail learning via logit adjustment", ICLR 2021 (arXiv 2007.07314), eq. (10);
tau = 1 is Ren et al., "Balanced Meta-Softmax for Long-Tailed Visual Recognition", NeurIPS 2020.
"""
from __future__ import annotations

import torch

from ..data.counts import ClassCounts
from .base import ClassWeightedLoss, _check_counts_positive, _check_real


class LogitAdjustedLoss(ClassWeightedLoss):
    """`CE(logits + tau * log(prior), labels)` with `prior_c = n_c / sum(n)`.

    The adjustment is part of the loss only: at inference use the model's raw logits. A class with
    zero training samples has log-prior -inf, so it is refused (ValueError) rather than clamped.

    Args:
        class_counts: global training count per class.
        tau: adjustment strength (>= 0); 0 is plain CE, 1 is balanced softmax.
        reduction: "mean" (weighted mean, as `F.cross_entropy`), "sum" or "none".
    """

    log_prior: torch.Tensor

    def __init__(self, class_counts: ClassCounts, tau: float = 1.0, *, reduction: str = "mean") -> None:
        super().__init__(class_counts, reduction=reduction)
        counts = self.class_counts
        _check_counts_positive(counts, type(self).__name__, "the log prior log(n_c / N)")
        self.tau = _check_real(tau, "tau", 0.0)
        self.register_buffer("log_prior", torch.log(counts / counts.sum()), persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = self._check_inputs(logits, labels)
        adjusted = logits + self.tau * self._buffer_like("log_prior", logits)
        return self._cross_entropy(adjusted, labels)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tau={self.tau}"
