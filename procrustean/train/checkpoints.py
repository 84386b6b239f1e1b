"""The run directory: refuse to clobber another run, atomic checkpoints, and resolving what to resume.

    output_dir/
      training_config.yaml        resolved config (also inside every checkpoint and the export)
      checkpoints/step_00000120/  accelerate save_state (model, optimizer, RNG, scaler) + run_state_<rank>.json
      logs/                       tracker files (tensorboard, ...)
      metrics.jsonl, metrics.csv  one row per epoch
      all_results.json, plots/, export/
"""
from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path
import json
import warnings
from typing import Any, Dict, List, Optional, Tuple

import torch

from .._atomic import fsync_tree, swap_in_directory
from ..errors import (MissingInputError, NotEnoughSpaceError, OutputConflictError, OutputNotWritableError,
                      UnsafeCheckpointError)

CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)$")
RUN_STATE = "run_state_{}.json"  # per process: counters, epoch history, per-class sums
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


def resolve_resume(resume_from_checkpoint: Optional[str], output_dir: Path | str,
                   token: Optional[str] = None) -> Optional[Path]:
    """``latest`` -> newest complete checkpoint of this run; ``hf-hub:owner/repo[@rev]`` (or ``owner/repo@rev``) ->
    the repo's ``last-checkpoint/``, downloaded; a path -> that checkpoint; errors name the fix."""
    if not resume_from_checkpoint:
        return None
    hub = _hub_checkpoint(resume_from_checkpoint) if resume_from_checkpoint != "latest" else None
    if hub is not None:
        return download_last_checkpoint(*hub, token=token)
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


def _dense_weights(models: Any, weights: List[Dict[str, Any]], output_dir: str) -> None:
    """Accelerate's save-state pre-hook: safetensors stores dense tensors only, so a model trained channels-last
    is saved in the contiguous layout (loading restores the values; the recipe puts the layout back)."""
    for state in weights:
        for key, value in state.items():
            if torch.is_tensor(value) and not value.is_contiguous():
                state[key] = value.contiguous()


def save_checkpoint(accelerator: Any, output_dir: Path | str, step: int, total_limit: Optional[int] = None,
                    run_state: Optional[Dict[str, Any]] = None) -> Path:
    """``accelerator.save_state`` plus each process's ``run_state`` (JSON) into a temporary folder, then one rename:
    a crash never leaves a partial checkpoint where ``latest`` would find it, and the previous checkpoint stays
    until the new one is whole."""
    folder = Path(output_dir) / "checkpoints"
    final = folder / f"step_{step:08d}"
    tmp = folder / f".tmp-step_{step:08d}"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    hook = accelerator.register_save_state_pre_hook(_dense_weights)
    try:
        accelerator.save_state(str(tmp), safe_serialization=True)
    finally:
        hook.remove()
    if run_state is not None:
        (tmp / RUN_STATE.format(accelerator.process_index)).write_text(json.dumps(run_state))
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


def check_checkpoint_is_safe(path: Path) -> None:
    """Refuse a checkpoint with a pickle file that is more than tensors, numbers and numpy arrays.

    accelerate loads its ``.bin`` / ``.pkl`` files with torch's ``weights_only`` loader, which cannot run code;
    the run's own state is JSON. A file that this loader refuses (a planted pickle, say, in a checkpoint
    downloaded from someone's Hub repo) is refused here first, with the file named, before anything loads it.
    """
    import pickle

    import torch
    from accelerate.utils.other import TORCH_SAFE_GLOBALS

    for file in sorted(Path(path).iterdir()):
        if file.suffix not in (".bin", ".pkl", ".pt", ".pth"):
            continue
        try:
            with torch.serialization.safe_globals(TORCH_SAFE_GLOBALS):
                torch.load(file, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise UnsafeCheckpointError(
                f"Refusing to resume from {path}: {file.name} is not plain tensors and numbers ({first}). Loading it "
                "could run code; nothing was loaded. Resume from a checkpoint this recipe wrote.") from None


def load_checkpoint(accelerator: Any, path: Path) -> Dict[str, Any]:
    """accelerate's state (weights, optimizer, RNGs) and this process's run state, after :func:`check_checkpoint_is_safe`."""
    check_checkpoint_is_safe(path)
    accelerator.load_state(str(path))
    own = Path(path) / RUN_STATE.format(accelerator.process_index)
    if not own.exists():
        written = sorted(p.name for p in Path(path).glob(RUN_STATE.format("*")))
        if not written:
            raise MissingInputError(f"{path} has no run state ({RUN_STATE.format(0)}): it was not written by this "
                                    "recipe. Resume from one of its checkpoints.")
        warnings.warn(f"{path} was written by {len(written)} process(es), resumed with {accelerator.num_processes}: the "
                      "run continues, but not bit-exactly (the data order and per-process counters differ).")
        own = Path(path) / written[0]
    return json.loads(own.read_text())


def _hub_checkpoint(value: str) -> Optional[Tuple[str, Optional[str]]]:
    """(repo_id, revision) for ``hf-hub:owner/repo[@revision]`` or ``owner/repo@revision``; None for a local path."""
    if value.startswith("hf-hub:"):
        value = value[len("hf-hub:"):]
    elif "@" not in value or Path(value).exists():
        return None
    repo_id, _, revision = value.partition("@")
    from ..hub.push import check_repo_id

    check_repo_id(repo_id)
    return repo_id, revision or None


def download_last_checkpoint(repo_id: str, revision: Optional[str] = None, token: Optional[str] = None) -> Path:
    """``last-checkpoint/`` of a Hub repo (only that folder); offline, the HF cache serves it."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    from ..hub.publisher import LAST_CHECKPOINT

    try:
        root = Path(snapshot_download(repo_id, revision=revision, token=token, allow_patterns=[f"{LAST_CHECKPOINT}/*"]))
    except (LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise MissingInputError(f"--resume_from_checkpoint hf-hub:{repo_id}: {type(error).__name__}: "
                                f"{str(error).strip().splitlines()[0][:200]}. Check the repo id and revision, your "
                                "network and token, or resume from a local checkpoint.") from None
    checkpoint = root / LAST_CHECKPOINT
    if not (checkpoint / "model.safetensors").is_file():
        raise MissingInputError(f"{repo_id}{'@' + revision if revision else ''} has no {LAST_CHECKPOINT}/ with a training "
                                "state: it was not published with --hub_strategy checkpoint.")
    return checkpoint


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
