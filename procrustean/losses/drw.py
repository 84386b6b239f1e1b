"""Deferred re-weighting (DRW) with class-balanced ("effective number") weights.

Why: re-weighting from the start distorts feature learning; training unweighted first and switching
to class-balanced weights late (when the learning rate is annealed) re-balances the classifier
without that cost. Weights: Cui et al., "Class-Balanced Loss Based on Effective Number of Samples",
CVPR 2019 (arXiv 1901.05555). Schedule: Cao et al., "Learning Imbalanced Datasets with
Label-Distribution-Aware Margin Loss", NeurIPS 2019, `train_rule == 'DRW'` of
github.com/kaidic/LDAM-DRW `cifar_train.py` (0-based epochs, weights from epoch 160 of 200).
"""
from __future__ import annotations

import numbers
from typing import Optional

import torch

from ..data.counts import ClassCounts, as_class_counts
from .base import ClassWeightedLoss, _check_counts_positive
from ..errors import UsageError


def _check_beta(beta: float) -> float:
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not 0.0 <= float(beta) < 1.0:
        raise UsageError(f"beta must be a real number in [0, 1), got {beta!r}.")
    return float(beta)


def class_balanced_weights(class_counts: ClassCounts, beta: float = 0.9999) -> torch.Tensor:
    """Per-class weights `w_c = (1 - beta) / (1 - beta^n_c)`, normalised so `sum(w) = C`.

    Computed in float64 and returned as float32, as the reference (`torch.FloatTensor`). `beta = 0`
    gives all-ones (the reference's "before DRW" weights); beta -> 1 approaches inverse frequency.
    Zero-count classes are refused (their effective number is 0).
    """
    beta = _check_beta(beta)
    counts = as_class_counts(class_counts)
    _check_counts_positive(counts, "class_balanced_weights", "the effective number 1 - beta^n_c")
    effective_num = 1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts)
    weights = (1.0 - beta) / effective_num
    weights = weights / weights.sum() * counts.numel()
    return weights.to(torch.float32)


class DeferredReweighting:
    """DRW schedule: no class weight before `start_epoch`, class-balanced weights from it on.

    Epochs are 0-based (the reference switches at `epoch // 160 == 1`). Before `start_epoch` the
    reference passes all-ones weights; clearing the weight (None) is the same loss.

    Args:
        class_counts: global training count per class.
        beta: effective-number hyper-parameter in [0, 1).
        start_epoch: first (0-based) epoch with re-weighting, >= 0.
    """

    def __init__(self, class_counts: ClassCounts, beta: float = 0.9999, start_epoch: int = 160) -> None:
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, numbers.Integral) or start_epoch < 0:
            raise UsageError(f"start_epoch must be an int >= 0, got {start_epoch!r}.")
        self.beta = _check_beta(beta)
        self.start_epoch = int(start_epoch)
        self.class_counts = as_class_counts(class_counts)
        self.weights = class_balanced_weights(self.class_counts, self.beta)

    @property
    def num_classes(self) -> int:
        return self.class_counts.numel()

    def weight_for_epoch(self, epoch: int) -> Optional[torch.Tensor]:
        """Class weight for a 0-based `epoch`: None before `start_epoch`, else a fresh copy."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise UsageError(f"epoch must be an int >= 0 (0-based), got {epoch!r}.")
        return None if epoch < self.start_epoch else self.weights.clone()

    def apply(self, loss: ClassWeightedLoss, epoch: int) -> Optional[torch.Tensor]:
        """Set `loss`'s class weight for `epoch` (call at the start of each epoch); returns it."""
        if not isinstance(loss, ClassWeightedLoss):
            raise TypeError(f"DRW needs a procrustean ClassWeightedLoss, got {type(loss).__name__}.")
        if loss.num_classes is not None and loss.num_classes != self.num_classes:
            raise UsageError(f"DRW has {self.num_classes} classes but the loss has {loss.num_classes}.")
        weight = self.weight_for_epoch(epoch)
        loss.set_class_weight(weight)
        return weight

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_classes={self.num_classes}, beta={self.beta}, "
                f"start_epoch={self.start_epoch})")
