"""Per-class training progress: what Procrustean training sets out to equalize, measured while training.

The paper's aim is to "equalize the training progress across classes". A rule that looks only at
class counts is a proxy for that; the ``progress`` rule of ``WeakeningPolicy`` reads the progress
itself, as measured here. Every choice below is ours (the paper's rule is not public) and is
measured in docs/RESULTS.md:

* **what is measured**: the per-class accuracy of the training forward passes -- the predictions the
  loss sees, weakened samples included (``samples="all"``), or only the samples that were not
  weakened (``samples="unweakened"``). In that mode a class whose samples in a batch were *all*
  weakened is counted on all of them: a class weakened with certainty (the count prior gives the
  largest classes p = 1) would otherwise never be measured, every class would never count as seen,
  and the rule would stay the count prior for the whole run (it did, bit for bit: docs/RESULTS.md);
* **how it is averaged**: counts, not batch accuracies. Correct and seen counts of each batch are
  summed over processes into a window; every ``interval`` batches the window is folded into an
  exponential moving average, ``correct_c <- momentum * correct_c + window_correct_c`` (``seen_c``
  likewise), ``accuracy_c = correct_c / seen_c``. Every sample weighs the same, so a minor class
  seen once in ten batches is not judged on a single image, and a class absent from a window keeps
  its estimate (both sums decay together);
* **the mapping**: ``p_c = min(1, (accuracy_c - min_k accuracy_k) / margin)`` (:func:`progress_probabilities`),
  with the count rule's probabilities as the prior until every class has been seen.

The statistics are buffers of this module, so they live on the training device (no host
synchronisation in the loop), travel with the model's ``state_dict`` (``ProcrusteanModel`` owns the
module: ``accelerator.save_state`` and ``transformers.Trainer`` checkpoints carry them), and are the
same on every process (each batch's counts are all-reduced; every rank runs the same number of
training forward passes, so the collectives line up).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from .errors import UsageError

PROGRESS_SAMPLES = ("all", "unweakened")


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes when a process group is up (gloo wants CPU tensors), else the tensor itself."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    if dist.get_backend() == "gloo" and tensor.device.type != "cpu":
        reduced = tensor.cpu()
        dist.all_reduce(reduced)
        return reduced.to(tensor.device)
    dist.all_reduce(tensor)
    return tensor


def check_progress_settings(margin: float, momentum: float, interval: int, samples: str) -> None:
    """Refuse malformed settings of the progress rule (UsageError naming the setting)."""
    if not margin > 0:
        raise UsageError(f"progress margin must be > 0, got {margin}.")
    if not 0.0 <= momentum < 1.0:
        raise UsageError(f"progress momentum must lie in [0, 1), got {momentum}.")
    if isinstance(interval, bool) or int(interval) != interval or interval < 1:
        raise UsageError(f"progress interval must be a whole number of batches >= 1, got {interval}.")
    if samples not in PROGRESS_SAMPLES:
        raise UsageError(f"Unknown progress samples {samples!r}; use one of {PROGRESS_SAMPLES}.")


def progress_probabilities(accuracy: torch.Tensor, present: torch.Tensor, margin: float) -> torch.Tensor:
    """``p_c = min(1, (accuracy_c - min_k accuracy_k) / margin)`` over the classes present in training.

    A class is weakened in proportion to how far its training accuracy is ahead of the least-fitted
    class, with certainty once it is ``margin`` ahead; the least-fitted class and every class level
    with it are left intact, so weakening fades as progress evens out.
    """
    behind = torch.where(present, accuracy, torch.full_like(accuracy, float("inf"))).min()
    gap = (accuracy - behind).clamp_min(0.0).nan_to_num(0.0)
    return (gap / margin).clamp_max(1.0).masked_fill(~present, 0.0).to(torch.float32)


class ClassProgress(nn.Module):
    """Running per-class training accuracy, summed over processes, and the weakening probabilities it implies."""

    def __init__(self, prior: torch.Tensor, present: torch.Tensor, margin: float = 0.5, momentum: float = 0.9,
                 interval: int = 10, samples: str = "all"):
        super().__init__()
        check_progress_settings(margin, momentum, interval, samples)
        self.margin, self.momentum, self.interval, self.samples = float(margin), float(momentum), int(interval), samples
        num_classes = len(prior)
        self.register_buffer("prior", prior.detach().float().clone())
        self.register_buffer("present", present.detach().bool().clone())
        self.register_buffer("correct", torch.zeros(num_classes, dtype=torch.float64))  # moving sums
        self.register_buffer("seen", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("window", torch.zeros(2, num_classes, dtype=torch.float64))  # (correct, seen), global
        self.register_buffer("probabilities", prior.detach().float().clone())
        self.register_buffer("batches", torch.zeros((), dtype=torch.int64))
        # host copy of `batches`: the refresh decision needs no device read (None after compiled forwards, which
        # count on the device only: read back once by the next eager forward)
        self._batches: Optional[int] = 0

    @property
    def num_classes(self) -> int:
        return self.prior.numel()

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor, weakened: Optional[torch.Tensor] = None) -> bool:
        """Count one training batch (all processes together); True when it refreshed the probabilities (under
        torch.compile the refresh is decided on the device, and this returns False)."""
        labels = labels.detach().long()
        correct = (logits.detach().argmax(dim=-1) == labels).to(torch.float64)
        seen = torch.ones_like(correct)
        counts = torch.zeros(2, self.num_classes, dtype=torch.float64, device=labels.device)
        counts[0].index_add_(0, labels, correct)
        counts[1].index_add_(0, labels, seen)
        if self.samples == "unweakened" and weakened is not None:
            intact = (~weakened.to(labels.device)).to(torch.float64)
            intact_counts = torch.zeros_like(counts)
            intact_counts[0].index_add_(0, labels, correct * intact)
            intact_counts[1].index_add_(0, labels, intact)
            counts = torch.where(intact_counts[1] > 0, intact_counts, counts)  # all weakened: count them all
        self.window += _all_reduce_sum(counts).to(self.window.device)
        if torch.compiler.is_compiling():
            self._update_traced()
            return False
        if self._batches is None:  # a compiled forward counted the last batches on the device
            self._batches = int(self.batches)
        self._batches += 1
        self.batches.fill_(self._batches)
        if self._batches % self.interval:
            return False
        self._refresh()
        return True

    def _refresh(self) -> None:
        """Fold the window into the moving sums and recompute the probabilities."""
        self.correct.mul_(self.momentum).add_(self.window[0])
        self.seen.mul_(self.momentum).add_(self.window[1])
        self.window.zero_()
        self.probabilities.copy_(self._measured_or_prior())

    def _measured_or_prior(self) -> torch.Tensor:
        every_class_seen = ((self.seen > 0) | ~self.present).all()
        measured = progress_probabilities(self.accuracy(), self.present, self.margin).to(self.prior.device)
        return torch.where(every_class_seen, measured, self.prior)

    def _update_traced(self) -> None:
        """The refresh decided on the device, for ``torch.compile``: the host count (a Python int the graph would
        be specialised on, one recompilation per batch) is not read; every batch computes the refresh, and
        ``torch.where`` keeps it only on every ``interval``-th batch. Same values as the eager path."""
        self._batches = None
        self.batches.add_(1)
        refresh = (self.batches % self.interval) == 0
        correct = self.correct * self.momentum + self.window[0]
        seen = self.seen * self.momentum + self.window[1]
        self.correct.copy_(torch.where(refresh, correct, self.correct))
        self.seen.copy_(torch.where(refresh, seen, self.seen))
        self.window.copy_(torch.where(refresh, torch.zeros_like(self.window), self.window))
        self.probabilities.copy_(torch.where(refresh, self._measured_or_prior(), self.probabilities))

    def accuracy(self) -> torch.Tensor:
        """Per-class running accuracy (float64); NaN for a class not seen yet."""
        return torch.where(self.seen > 0, self.correct / self.seen.clamp_min(1e-12),
                           torch.full_like(self.seen, float("nan")))

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._batches = int(self.batches)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, margin={self.margin}, momentum={self.momentum}, "
                f"interval={self.interval}, samples={self.samples!r}")
