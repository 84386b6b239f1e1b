"""Per-class accuracy accumulated over an epoch: the paper's under-fitting signal on the training set.

Counts live on the device and are summed across processes once per epoch, so every rank ends with
the same global numbers and the hot loop never synchronises.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch


class PerClassAccuracy:
    """``update(logits_or_predictions, labels)`` per batch, ``compute()`` once per epoch."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.correct = torch.zeros(num_classes, dtype=torch.long)
        self.total = torch.zeros(num_classes, dtype=torch.long)

    def reset(self) -> None:
        self.correct.zero_()
        self.total.zero_()

    @torch.no_grad()
    def update(self, predictions: torch.Tensor, labels: torch.Tensor) -> None:
        if predictions.ndim == 2:
            predictions = predictions.argmax(dim=-1)
        if self.correct.device != labels.device:
            self.correct, self.total = self.correct.to(labels.device), self.total.to(labels.device)
        self.total += torch.bincount(labels, minlength=self.num_classes)
        # index_add_ rather than bincount(labels[hit]): boolean indexing would wait for the device
        self.correct.index_add_(0, labels, (predictions == labels).to(self.correct.dtype))

    def reduced(self, accelerator: Any = None) -> "PerClassAccuracy":
        """A copy holding the sums over all processes (``accelerator.reduce``)."""
        out = PerClassAccuracy(self.num_classes)
        correct, total = self.correct, self.total
        if accelerator is not None and accelerator.num_processes > 1:
            correct, total = accelerator.reduce(correct.clone(), "sum"), accelerator.reduce(total.clone(), "sum")
        out.correct, out.total = correct.cpu(), total.cpu()
        return out

    def compute(self) -> Dict[str, Any]:
        total = self.total.cpu().double()
        seen = total > 0
        per_class: List[Optional[float]] = [
            (c / t) if t > 0 else None for c, t in zip(self.correct.cpu().tolist(), total.tolist())]
        return {
            "per_class_accuracy": per_class,
            "image_averaged_accuracy": float(self.correct.sum() / total.sum()) if total.sum() > 0 else None,
            "class_averaged_accuracy": float((self.correct.cpu()[seen] / total[seen]).mean()) if seen.any() else None,
        }

    def state_dict(self) -> Dict[str, Any]:
        """Plain lists (JSON), so a checkpoint never needs pickle."""
        return {"correct": self.correct.cpu().tolist(), "total": self.total.cpu().tolist()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.correct = torch.as_tensor(state["correct"], dtype=torch.long, device=self.correct.device)
        self.total = torch.as_tensor(state["total"], dtype=torch.long, device=self.total.device)
