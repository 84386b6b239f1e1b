"""What must agree across processes, and a per-rank report to prove that it does.

Under DDP every rank holds the same global class counts and probabilities (they come from the whole
training split, never a shard), draws its own weakening plans (own seed) over its own local batch,
and must stop together when the loss stops being finite. ``PROCRUSTEAN_RANK_REPORT=DIR`` makes each
rank write ``DIR/rank<i>.json`` at the end of training; the distributed tests compare them.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch


def all_finite(loss: torch.Tensor, accelerator: Any) -> bool:
    """True when the loss is finite on every process (one scalar all-reduce when there are several)."""
    finite = torch.isfinite(loss).all()
    if accelerator.num_processes == 1:
        return bool(finite)
    bad = accelerator.reduce((~finite).to(torch.float32).reshape(1), "sum")
    return bool(bad.item() == 0)


def parameter_digest(model: torch.nn.Module) -> str:
    """sha256 over all parameters and buffers in state_dict order (bitwise identity across ranks)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write_rank_report(accelerator: Any, model: Any, policy: Any, state: Any) -> None:
    folder = os.environ.get("PROCRUSTEAN_RANK_REPORT")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    plan = getattr(model, "last_plan", None)
    report = {
        "process_index": accelerator.process_index, "num_processes": accelerator.num_processes,
        "distributed_type": str(accelerator.distributed_type),
        "parameter_digest": parameter_digest(model.backbone),
        "class_counts": policy.class_counts.tolist(), "probabilities": policy.probabilities.tolist(),
        "policy_seed": policy.seed, "steps": state.step, "epochs": state.epoch,
        "progress_seen": policy.progress.seen.tolist() if policy.progress is not None else None,
        "last_plan_batch_size": len(plan) if plan is not None else None,
        "last_plan_max_partner": int(plan.partner.max()) if plan is not None else None,
        "train_accuracy_history": [h["train_image_averaged_accuracy"] for h in state.history],
        "eval_num_samples": [h.get("eval_num_samples") for h in state.history],
    }
    (Path(folder) / f"rank{accelerator.process_index}.json").write_text(json.dumps(report, indent=2))


class PerProcessState:
    """Checkpoint an object whose state differs per process (the weakening generator) from the main process.

    ``accelerator.save_state`` writes registered objects from the main process only, so a rank-local
    generator would come back as rank 0's after a resume. This gathers every rank's state into the one
    saved dict and hands each rank its own on load.
    """

    def __init__(self, obj: Any, accelerator: Any):
        self.obj, self.accelerator = obj, accelerator

    def state_dict(self) -> dict:
        from accelerate.utils import gather_object

        states = [self.obj.state_dict()]
        if self.accelerator.num_processes > 1:
            states = gather_object(states)
        return {"num_processes": self.accelerator.num_processes, "states": states}

    def load_state_dict(self, state: dict) -> None:
        if state["num_processes"] != self.accelerator.num_processes:
            warnings.warn(f"This checkpoint was written by {state['num_processes']} process(es), resumed with "
                          f"{self.accelerator.num_processes}: the run continues, but not bit-exactly (the data order "
                          "and the weakening draws differ from an uninterrupted run).")
            return
        self.obj.load_state_dict(state["states"][self.accelerator.process_index])
