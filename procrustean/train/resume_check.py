"""Refuse a resume whose run would not fit the checkpoint's state, naming the options that differ.

``accelerator.load_state`` into a model of another shape fails with PyTorch's "Error(s) in loading state_dict"
traceback, and an optimizer of another kind or grouping either fails the same way or breaks at its first step.
Before anything is loaded, the checkpoint's tensor names and shapes (read from the safetensors header, no data)
and its optimizer's parameter groups are compared with this run's; a mismatch is a UsageError that names the
options that differ from the checkpoint run's ``training_config.yaml``, both values, and the way out. Options
that do not change the state's shape (``--epochs``, ``--lr``, ...) may change on resume; they are listed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml
from torch import nn

from ..errors import UsageError

# Options that decide the model's tensors (architecture, input channels and size, classes, the progress rule's
# statistics, the loss's buffers) or the optimizer's state; what a mismatch is explained by.
STATE_OPTIONS = ("model", "model_kwargs", "in_chans", "img_size", "dataset", "dataset_config", "label_column",
                 "train_split", "weakening", "weakening_rule", "mixup_alpha", "cutmix_alpha", "loss", "optimizer",
                 "weight_decay")
# Options that may differ on resume without any effect on the state's shape; not worth a note.
_QUIET = ("resume_from_checkpoint", "overwrite_output_dir", "hub_token", "num_workers", "verify_images",
          "report_to", "progress_display", "logging_steps")
_WAY_OUT = ("Resume with the checkpoint's options, or start a new run: another --output_dir, or "
            "--overwrite_output_dir to replace this one.")


def saved_config(checkpoint: Path) -> Optional[Dict[str, Any]]:
    """The checkpoint run's resolved options (``training_config.yaml``, saved in every checkpoint), if present."""
    path = Path(checkpoint) / "training_config.yaml"
    if not path.is_file():
        return None
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    return values if isinstance(values, dict) else None


def _differences(saved: Optional[Dict[str, Any]], current: Dict[str, Any], names: Tuple[str, ...]) -> List[str]:
    if saved is None:
        return []
    return [f"--{name} {saved[name]!r} in the checkpoint, {current[name]!r} now" for name in names
            if name in saved and saved[name] != current.get(name)]


def _tensor_mismatch(checkpoint: Path, model: nn.Module) -> List[str]:
    """What differs between the checkpoint's ``model.safetensors`` (names and shapes only) and ``model``."""
    from safetensors import safe_open

    weights = Path(checkpoint) / "model.safetensors"
    if not weights.is_file():  # sharded or another format: accelerate's own checks apply
        return []
    with safe_open(str(weights), framework="pt") as saved:
        shapes = {_plain(key): list(saved.get_slice(key).get_shape()) for key in saved.keys()}
    current = {_plain(key): list(value.shape) for key, value in model.state_dict().items()}
    found = [f"{key} is {shapes[key]} in the checkpoint, {current[key]} now" for key in current
             if key in shapes and shapes[key] != current[key]]
    missing = [key for key in current if key not in shapes]
    unexpected = [key for key in shapes if key not in current]
    if missing:
        found.append(f"{len(missing)} tensor(s) of this run are not in the checkpoint (e.g. {missing[0]})")
    if unexpected:
        found.append(f"{len(unexpected)} tensor(s) of the checkpoint are not in this run (e.g. {unexpected[0]})")
    return found


def _plain(key: str) -> str:
    """A state-dict key without the wrappers' path parts: accelerate saves the prepared model as it is (DDP's
    ``module.``, ``torch.compile``'s ``_orig_mod.``), while the recipe checks the model before ``prepare``."""
    return ".".join(part for part in key.split(".") if part not in ("module", "_orig_mod"))


def _optimizer_mismatch(checkpoint: Path, optimizer: Any) -> List[str]:
    """Parameter groups (how many, and their sizes) of the checkpoint's ``optimizer.bin`` against ``optimizer``'s."""
    import torch
    from accelerate.utils.other import TORCH_SAFE_GLOBALS

    from .checkpoints import check_checkpoint_is_safe

    path = Path(checkpoint) / "optimizer.bin"
    if not path.is_file():
        return []
    check_checkpoint_is_safe(checkpoint)  # a planted pickle is refused by name before this reads it
    with torch.serialization.safe_globals(TORCH_SAFE_GLOBALS):
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    sizes = [len(group["params"]) for group in saved.get("param_groups", [])]
    now = [len(group["params"]) for group in optimizer.param_groups]
    return [] if sizes == now else [f"the optimizer's parameter groups hold {sizes} parameters in the checkpoint, "
                                    f"{now} now"]


def _refuse(checkpoint: Path, config: Any, problems: List[str]) -> None:
    saved = saved_config(checkpoint)
    options = _differences(saved, config.to_dict(), STATE_OPTIONS)
    if saved is None:
        because = ""
    elif options:
        because = f" The options that differ from the checkpoint's run: {'; '.join(options)}."
    else:
        because = (" None of the options that shape the state differ from the checkpoint's run: the data's classes, "
                   "or the model behind the same name, must have changed.")
    raise UsageError(f"--resume_from_checkpoint {checkpoint}: this run's state does not fit the checkpoint's: "
                     f"{'; '.join(problems[:3])}.{because} {_WAY_OUT}")


def check_model_fits(checkpoint: Path, config: Any, model: nn.Module) -> None:
    """Before the data is prepared: refuse when ``model``'s tensors differ from the checkpoint's (names, shapes)."""
    problems = _tensor_mismatch(checkpoint, model)
    if problems:
        _refuse(checkpoint, config, problems)


def check_weakening_location(checkpoint: Path, location: Optional[str]) -> None:
    """Before anything is written: refuse a resume that would weaken elsewhere than the checkpoint's run did. The
    location keeps the state's shape, so only the run's record of it (``--weakening_location auto`` resolved, in the
    run state) can tell; a checkpoint written before that record was kept passes."""
    from .checkpoints import RUN_STATE

    path = Path(checkpoint) / RUN_STATE.format(0)
    saved = json.loads(path.read_text(encoding="utf-8")).get("weakening_location") if path.is_file() else None
    if saved and location and saved != location:
        raise UsageError(f"--resume_from_checkpoint {checkpoint}: the checkpoint's run weakened at {saved}, and this "
                         f"run would weaken at {location} (with --weakening_location auto, the location map may have "
                         f"changed since). Resume with --weakening_location {saved}, or start a new run.")


def check_optimizer_fits(checkpoint: Path, config: Any, optimizer: Any) -> List[str]:
    """Before loading: refuse an optimizer of another kind or grouping than the checkpoint's; return the options
    that differ but may (``--epochs 20 in the checkpoint, 30 now``, ...), for a note."""
    saved = saved_config(checkpoint)
    current = config.to_dict()
    problems = _optimizer_mismatch(checkpoint, optimizer)
    if saved is not None and "optimizer" in saved and saved["optimizer"] != current["optimizer"]:
        problems.append("the optimizer's state is of another kind")
    if problems:
        _refuse(checkpoint, config, problems)
    others = tuple(name for name in current if name not in STATE_OPTIONS + _QUIET)
    return _differences(saved, current, others)
