"""Base class for the class-count-driven losses.

Every loss here can carry an optional per-class weight, because deferred re-weighting (DRW, Cao et
al. 2019) switches class weights on part-way through training on top of *any* of these losses
(CE-DRW, LDAM-DRW, LA-DRW, ...). The weight is state set from outside (`set_class_weight`), never
part of a checkpoint: it is recomputed from the class counts and the epoch on resume.

All losses take `logits [B, C]` (float) and `labels [B]` (integer class indices; soft / mixed targets
are not supported: for timm's `Mixup` use `timm.loss.SoftTargetCrossEntropy`). Unless a loss documents
otherwise, `reduction="mean"` follows `F.cross_entropy(..., weight=w)`: the weighted mean
`sum_i w[y_i] * l_i / sum_i w[y_i]`, which is the plain batch mean when no weight is set.
`ignore_index` is not supported.
"""
from __future__ import annotations

import numbers
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.counts import ClassCounts, as_class_counts
from ..errors import UsageError

_REDUCTIONS = ("mean", "sum", "none")


class ClassWeightedLoss(nn.Module):
    """Loss with optional global class counts and an optional (DRW) per-class weight.

    Args:
        class_counts: global training count per class (whole training split). Fixes `num_classes`.
        num_classes: number of classes, when no counts are given (only used for validation).
        reduction: "mean" (default, weighted mean as `F.cross_entropy`), "sum" or "none"
            (per-sample losses, already multiplied by the class weight of their label).
    """

    class_weight: Optional[torch.Tensor]

    def __init__(
            self,
            class_counts: Optional[ClassCounts] = None,
            num_classes: Optional[int] = None,
            reduction: str = "mean",
    ) -> None:
        super().__init__()
        counts = None if class_counts is None else as_class_counts(class_counts)
        if num_classes is not None:
            if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
                raise UsageError(f"num_classes must be a positive int, got {num_classes!r}.")
            if counts is not None and counts.numel() != num_classes:
                raise UsageError(f"num_classes={num_classes} does not match len(class_counts)="
                                 f"{counts.numel()}.")
        elif counts is not None:
            num_classes = counts.numel()
        if reduction not in _REDUCTIONS:
            raise UsageError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}.")
        self.num_classes: Optional[int] = num_classes
        self.reduction = reduction
        # Counts stay a plain CPU float64 attribute (exact ratios); derived constants are buffers.
        self.class_counts: Optional[torch.Tensor] = counts
        self.register_buffer("class_weight", None, persistent=False)

    def set_class_weight(self, weight: Optional[torch.Tensor]) -> None:
        """Set (or clear, with None) the per-class weight applied from the next forward on."""
        if weight is None:
            self.class_weight = None
            return
        weight = torch.as_tensor(weight)
        if not weight.is_floating_point():
            weight = weight.to(torch.float32)
        if weight.ndim != 1:
            raise UsageError(f"class weight must be 1-D (one weight per class), got shape "
                             f"{tuple(weight.shape)}.")
        if self.num_classes is not None and weight.numel() != self.num_classes:
            raise UsageError(f"class weight has {weight.numel()} entries but the loss has "
                             f"{self.num_classes} classes.")
        if not bool(torch.isfinite(weight).all()) or bool((weight < 0).any()) or not bool(
                (weight > 0).any()):
            raise UsageError(f"class weight must be finite, non-negative and not all zero, got "
                             f"{weight.tolist()}.")
        self.class_weight = weight.detach()

    def _check_inputs(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Validate shapes/dtypes; return labels as int64."""
        if not torch.is_tensor(logits) or logits.ndim != 2 or not logits.is_floating_point():
            raise UsageError(f"logits must be a 2-D float tensor [batch, num_classes], got "
                             f"{tuple(logits.shape) if torch.is_tensor(logits) else type(logits)}.")
        if not torch.is_tensor(labels) or labels.ndim != 1:
            raise UsageError(
                f"labels must be a 1-D tensor of class indices [batch], got "
                f"{tuple(labels.shape) if torch.is_tensor(labels) else type(labels)}. Soft or mixed "
                f"targets are not supported (use timm.loss.SoftTargetCrossEntropy for Mixup).")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise UsageError(f"labels must be integer class indices, got dtype {labels.dtype}.")
        if labels.shape[0] != logits.shape[0]:
            raise UsageError(f"batch size mismatch: logits have {logits.shape[0]} rows, labels "
                             f"{labels.shape[0]}.")
        num_classes = self.num_classes
        if num_classes is None and self.class_weight is not None:
            num_classes = self.class_weight.numel()
        if num_classes is not None and logits.shape[1] != num_classes:
            raise UsageError(f"logits have {logits.shape[1]} classes but the loss was built for "
                             f"{num_classes} (len(class_counts) / class weight).")
        return labels.long()

    def _buffer_like(self, name: str, logits: torch.Tensor) -> Optional[torch.Tensor]:
        """Buffer `name` on logits' device (moved once and kept there) and in logits' dtype."""
        t = getattr(self, name)
        if t is None:
            return None
        if t.device != logits.device:
            t = t.to(logits.device)
            setattr(self, name, t)
        return t.to(dtype=logits.dtype)

    def _weight_like(self, logits: torch.Tensor) -> Optional[torch.Tensor]:
        return self._buffer_like("class_weight", logits)

    def _cross_entropy(self, logits: torch.Tensor, labels: torch.Tensor,
                       label_smoothing: float = 0.0) -> torch.Tensor:
        return F.cross_entropy(logits, labels, weight=self._weight_like(logits),
                               reduction=self.reduction, label_smoothing=label_smoothing)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, reduction={self.reduction!r}"


def _check_counts_positive(counts: torch.Tensor, loss_name: str, why: str) -> None:
    """Refuse zero-count classes for losses whose formula divides by (or takes the log of) n_c."""
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        raise UsageError(f"{loss_name}: class(es) {empty} have zero training samples, so {why} is "
                         f"undefined. Drop the empty classes or use a loss that does not need "
                         f"per-class counts (e.g. 'ce').")


def _check_real(value: float, name: str, low: float, low_inclusive: bool = True) -> float:
    """Validate a finite real hyper-parameter with a lower bound."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}.")
    value = float(value)
    ok = value >= low if low_inclusive else value > low
    if not (ok and value == value and value != float("inf")):
        raise UsageError(f"{name} must be finite and {'>=' if low_inclusive else '>'} {low}, "
                         f"got {value}.")
    return value
