"""The run directory: refuse to clobber another run, atomic checkpoints, and resolving what to resume.

    output_dir/
      training_config.yaml        resolved config (also inside every checkpoint and the export)
      checkpoints/step_00000120/  accelerate save_state (model, optimizer, RNG, scaler, run state)
      logs/                       tracker files (tensorboard, ...)
      metrics.jsonl, metrics.csv  one row per epoch
      all_results.json, plots/, export/
"""
from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path
from typing import Any, List, Optional

from .._atomic import fsync_tree, swap_in_directory
from ..errors import MissingInputError, NotEnoughSpaceError, OutputConflictError, OutputNotWritableError

CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)$")
RUN_MARKER = "training_config.yaml"


def prepare_output_dir(output_dir: Path | str, *, resume: bool, overwrite: bool) -> Path:
    """Create ``output_dir``; refuse one that holds another run unless resuming or overwriting."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise OutputConflictError(f"--output_dir {path} exists and is not a directory.")
    if path.is_dir() and any(path.iterdir()) and not resume:
        if not overwrite:
            what = "another run" if (path / RUN_MARKER).exists() else "files"
            raise OutputConflictError(f"--output_dir {path} already holds {what}. Pass --resume_from_checkpoint latest "
                                  "to continue it, --overwrite_output_dir to replace it, or choose a new directory.")
        shutil.rmtree(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as error:
        raise OutputNotWritableError(f"--output_dir {path} is not writable ({error.strerror or error}). "
                                     "Choose a writable directory with free space.") from error
    return path


def list_checkpoints(output_dir: Path | str) -> List[Path]:
    """Complete checkpoints, oldest first (temporary folders of interrupted saves are ignored)."""
    folder = Path(output_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := CHECKPOINT_PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def resolve_resume(resume_from_checkpoint: Optional[str], output_dir: Path | str) -> Optional[Path]:
    """``latest`` -> newest complete checkpoint of this run; a path -> that checkpoint; errors name the fix."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            raise MissingInputError(f"--resume_from_checkpoint latest: no checkpoint in {Path(output_dir) / 'checkpoints'}. "
                                    "Start again with --overwrite_output_dir (nothing to resume), or point it at a checkpoint folder.")
        return checkpoints[-1]
    path = Path(resume_from_checkpoint)
    if not path.is_dir() or not any(path.glob("model*.safetensors")) and not any(path.glob("pytorch_model*")):
        raise MissingInputError(f"--resume_from_checkpoint {path} is not a checkpoint folder (expected "
                                f"{Path(output_dir) / 'checkpoints' / 'step_<N>'} or 'latest').")
    return path


def save_checkpoint(accelerator: Any, output_dir: Path | str, step: int, total_limit: Optional[int] = None) -> Path:
    """``accelerator.save_state`` into a temporary folder, then one rename: a crash never leaves a partial
    checkpoint where ``latest`` would find it, and the previous checkpoint stays until the new one is whole."""
    folder = Path(output_dir) / "checkpoints"
    final = folder / f"step_{step:08d}"
    tmp = folder / f".tmp-step_{step:08d}"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for name in ("training_config.yaml",):
            source = Path(output_dir) / name
            if source.exists():
                shutil.copy2(source, tmp / name)
        fsync_tree(tmp)
        swap_in_directory(tmp, final)
        if total_limit:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def check_free_space(output_dir: Path | str, model: Any, optimizer_state_factor: float = 2.0,
                     checkpoints_kept: int = 2) -> None:
    """Refuse to start when the disk cannot hold the checkpoints and the export (estimated from the model)."""
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    needed = int(param_bytes * ((1 + optimizer_state_factor) * (checkpoints_kept + 1) + 1)) + 16 * 2**20
    free = shutil.disk_usage(output_dir).free
    if free < needed:
        raise NotEnoughSpaceError(f"--output_dir {output_dir} has {free / 2**20:.1f} MiB free but this run needs about "
                      f"{needed / 2**20:.1f} MiB for its checkpoints and export. Free some space, lower "
                      "--checkpoints_total_limit, or choose another directory.")
