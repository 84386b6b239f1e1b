"""What must agree across processes.

Under DDP every rank holds the same global class counts and weakening probabilities (they come from
the whole training split, never a shard; the progress rule's statistics are all-reduced), weakens
within its own local batch (the collator draws each batch's plan from that batch), and must stop
together when the loss stops being finite.
"""
from __future__ import annotations

from typing import Any

import torch


def all_finite(loss: torch.Tensor, accelerator: Any) -> bool:
    """True when the loss is finite on every process (one scalar all-reduce when there are several)."""
    finite = torch.isfinite(loss).all()
    if accelerator.num_processes == 1:
        return bool(finite)
    bad = accelerator.reduce((~finite).to(torch.float32).reshape(1), "sum")
    return bool(bad.item() == 0)
