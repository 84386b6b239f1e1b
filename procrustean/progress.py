"""Per-class training progress: what Procrustean training sets out to equalize, measured while training.

The paper's aim is to "equalize the training progress across classes". A rule that looks only at
class counts is a proxy for that; the ``progress`` rule of ``WeakeningPolicy`` reads the progress
itself, as measured here. Every choice below is ours (the paper's rule is not public) and is
measured in docs/RESULTS.md:

* **what is measured**: the per-class accuracy of the training forward passes -- the predictions the
  loss sees, weakened samples included (``samples="all"``), or only the samples that were not
  weakened (``samples="unweakened"``);
* **how it is averaged**: counts, not batch accuracies. Correct and seen counts are accumulated per
  batch on the device; every ``interval`` batches the window is summed over processes and folded into
  an exponential moving average, ``correct_c <- momentum * correct_c + window_correct_c`` (``seen_c``
  likewise), ``accuracy_c = correct_c / seen_c``. Every sample weighs the same, so a minor class seen
  once in ten batches is not judged on a single image, and a class absent from a window keeps its
  estimate (both sums decay together).

The statistics are global: under ``torch.distributed`` the window is all-reduced, once per
``interval`` batches, so every process holds the same accuracies and draws from the same
probabilities. All ranks reach each refresh at the same batch, because every rank runs the same
number of training forward passes. The state (``state_dict``) holds plain tensors and numbers, so a
resumed run continues with the same statistics.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch

PROGRESS_SAMPLES = ("all", "unweakened")


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes when a process group is up (gloo wants CPU tensors), else the tensor itself."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    on_cpu = dist.get_backend() == "gloo"
    reduced = tensor.cpu() if on_cpu else tensor.clone()
    dist.all_reduce(reduced)
    return reduced


class ClassProgress:
    """Running per-class training accuracy, summed over processes: ``update`` per batch, ``accuracy`` any time."""

    def __init__(self, num_classes: int, momentum: float = 0.9, interval: int = 10, samples: str = "all"):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"progress momentum must lie in [0, 1), got {momentum}.")
        if int(interval) < 1:
            raise ValueError(f"progress interval must be >= 1 batch, got {interval}.")
        if samples not in PROGRESS_SAMPLES:
            raise ValueError(f"Unknown progress samples {samples!r}; use one of {PROGRESS_SAMPLES}.")
        self.num_classes, self.momentum, self.interval, self.samples = num_classes, float(momentum), int(interval), samples
        self.correct = torch.zeros(num_classes, dtype=torch.float64)  # moving sums, identical on every process
        self.seen = torch.zeros(num_classes, dtype=torch.float64)
        self.batches = 0
        self.refreshes = 0
        self._window: Optional[torch.Tensor] = None  # [2, C] local (correct, seen) since the last refresh

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor, weakened: Optional[torch.Tensor] = None) -> bool:
        """Count one training batch; returns True when this batch completed a refresh of the statistics."""
        labels = labels.detach().long()
        correct = logits.detach().argmax(dim=-1) == labels
        if self.samples == "unweakened" and weakened is not None:
            keep = ~weakened.to(labels.device)
            labels, correct = labels[keep], correct[keep]
        counts = torch.stack([torch.bincount(labels[correct], minlength=self.num_classes),
                              torch.bincount(labels, minlength=self.num_classes)])
        self._window = counts if self._window is None else self._window.to(counts.device) + counts
        self.batches += 1
        if self.batches % self.interval:
            return False
        window = _all_reduce_sum(self._window).to("cpu", torch.float64)
        self._window = None
        self.correct.mul_(self.momentum).add_(window[0])
        self.seen.mul_(self.momentum).add_(window[1])
        self.refreshes += 1
        return True

    def accuracy(self) -> torch.Tensor:
        """Per-class running accuracy (float64, CPU); NaN for a class not seen yet."""
        return torch.where(self.seen > 0, self.correct / self.seen.clamp_min(1e-12),
                           torch.full_like(self.seen, float("nan")))

    def state_dict(self) -> Dict[str, Any]:
        window = self._window.cpu() if self._window is not None else torch.zeros(2, self.num_classes, dtype=torch.int64)
        return {"correct": self.correct.clone(), "seen": self.seen.clone(), "window": window,
                "batches": self.batches, "refreshes": self.refreshes}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.correct = state["correct"].clone().to(torch.float64)
        self.seen = state["seen"].clone().to(torch.float64)
        window = state["window"].clone()
        self._window = window if int(window.sum()) > 0 else None
        self.batches, self.refreshes = int(state["batches"]), int(state["refreshes"])


def progress_probabilities(accuracy: torch.Tensor, present: torch.Tensor, margin: float) -> torch.Tensor:
    """``p_c = min(1, (accuracy_c - min_k accuracy_k) / margin)`` over the classes present in training.

    A class is weakened in proportion to how far its training accuracy is ahead of the least-fitted
    class, with certainty once it is ``margin`` ahead; the least-fitted class and every class level
    with it are left intact, so weakening fades as progress evens out.
    """
    if not margin > 0:
        raise ValueError(f"progress margin must be > 0, got {margin}.")
    behind = accuracy[present].min()
    gap = (accuracy - behind).clamp_min(0.0)
    return (gap / margin).clamp_max(1.0).masked_fill(~present, 0.0).to(torch.float32)
