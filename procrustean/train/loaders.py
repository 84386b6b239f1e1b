"""DataLoader settings that fit the machine: worker processes, pinned memory, persistent workers.

Measured on the 2-core CPU machine (``benchmarks/throughput.py``, docs/RESULTS.md, Cost): when the
model trains on the CPU, data workers take the cores the model's own threads need, and the recipe
ran slower with workers than without. On an accelerator the CPU cores are free for decoding and
augmenting, so the default then is a worker per spare core (at most 8 per process). The in-memory
path has nothing left for workers to do.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

import torch

MAX_AUTO_WORKERS = 8


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a SLURM or container allocation)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def loader_settings(num_workers: Optional[int], data_path: str, device: torch.device) -> Dict[str, Any]:
    """``num_workers`` (``None``: chosen here), ``pin_memory`` and ``persistent_workers`` for a DataLoader.

    The spare cores are shared by the processes of this node (``LOCAL_WORLD_SIZE``, set by ``accelerate
    launch`` and ``torchrun``)."""
    if num_workers is None:
        if data_path == "in_memory" or device.type == "cpu":
            num_workers = 0
        else:
            local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
            num_workers = min(MAX_AUTO_WORKERS, max(1, available_cpus() // local_processes - 1))
    return {"num_workers": num_workers, "pin_memory": device.type == "cuda",
            "persistent_workers": num_workers > 0}
