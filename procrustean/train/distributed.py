"""What must agree across processes.

Under DDP every rank holds the same global class counts and weakening probabilities (they come from
the whole training split, never a shard; the progress rule's statistics are all-reduced), weakens
within its own local batch (the collator draws each batch's plan from that batch), and must stop
together when the loss stops being finite (checked without a host synchronisation per step).
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch


class NonFiniteWatch:
    """Notices a non-finite loss without a host synchronisation per step.

    Each micro-batch's finiteness is folded into one device tensor (no ``.item()`` in the loop);
    :meth:`check` reads it -- one all-gather and one host read -- every few optimizer steps, before
    every checkpoint and at the end of every epoch. Every process checks at the same points, so all
    stop together; a broken state is never checkpointed; and the first bad micro-batch is named.
    """

    _NONE = 2**62  # "no bad micro-batch since the last check"

    def __init__(self, accelerator: Any):
        self.accelerator = accelerator
        self._first_bad: Optional[torch.Tensor] = None  # index into _seen of the first non-finite loss
        self._seen: List[Tuple[int, int, int]] = []  # (epoch, step, batch of the epoch) since the last check

    def update(self, loss: torch.Tensor, epoch: int, step: int, batch: int) -> None:
        index = len(self._seen)
        self._seen.append((epoch, step, batch))
        candidate = torch.where(torch.isfinite(loss.detach()).all(), self._NONE, index)
        self._first_bad = candidate if self._first_bad is None else torch.minimum(self._first_bad, candidate)

    def check(self) -> Optional[Tuple[int, int, int]]:
        """(epoch, step, batch) of the first non-finite loss on any process since the last check, else None."""
        if self._first_bad is None:
            return None
        first = self._first_bad.reshape(1)
        if self.accelerator.num_processes > 1:
            first = self.accelerator.gather(first)
        index = int(first.min())
        seen, self._seen, self._first_bad = self._seen, [], None
        return seen[index] if index < self._NONE else None
