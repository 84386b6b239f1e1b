"""Export a trained backbone as a Hub-ready folder that timm and transformers both load.

The folder is timm's Hub layout, written by :func:`timm.models.save_for_hf`: ``config.json`` +
``model.safetensors``, plus ``README.md`` (the model card, :func:`render_model_card`), the resolved
``training_config.yaml`` and any extra files (plots, ``all_results.json``). It loads with
``timm.create_model("local-dir:DIR", pretrained=True)`` / ``"hf-hub:owner/repo"`` and with
``transformers.AutoModelForImageClassification.from_pretrained(DIR)`` (``TimmWrapper``), with the
class names (``label_names`` in config.json; transformers turns them into ``id2label``).

``config.json`` carries what a rebuild needs (``procrustean.hub.timm_config``).

The export is atomic: it is built and verified (both loaders rebuild the model and give the same
logits as the original) in a hidden sibling directory, then renamed into place; a failure leaves the
previous export untouched and no temporary directory behind.
"""
from __future__ import annotations

import copy

import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from .._atomic import swap_in_directory
from ..models.factory import inner_timm_model
from .timm_config import export_model_args, export_pretrained_cfg, normalise_config_json
from ..errors import MissingInputError, OutputConflictError, UsageError

PathLike = Union[str, "os.PathLike[str]"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "README.md"
TRAINING_CONFIG_NAME = "training_config.yaml"
REQUIRED_FILES = (CONFIG_NAME, WEIGHTS_NAME)

__all__ = ["export_model", "to_plain", "unwrap_backbone"]


# ----------------------------------------------------------------------------------------------- model
def unwrap_backbone(model: nn.Module) -> nn.Module:
    """The plain timm model inside ProcrusteanModel / DDP / torch.compile / transformers' TimmWrapper."""
    model = inner_timm_model(model)
    if not isinstance(getattr(model, "pretrained_cfg", None), Mapping) or not hasattr(model, "num_classes"):
        raise TypeError(f"export_model needs a timm classification model (from timm.create_model), got "
                        f"{type(model).__name__} without `pretrained_cfg` / `num_classes`.")
    return model


# ----------------------------------------------------------------------------------------------- export
def export_model(backbone: nn.Module, output_dir: PathLike, *, label_names: Sequence[str],
                 model_card: Optional[str] = None, extra_files: Optional[Mapping[str, PathLike]] = None,
                 training_config: Optional[Mapping[str, Any]] = None,
                 data_config: Optional[Mapping[str, Any]] = None, model_args: Optional[Mapping[str, Any]] = None,
                 verify: bool = True) -> Path:
    """Write ``backbone`` (a timm model, or a wrapper around one) to ``output_dir`` atomically; return it.

    Args:
        label_names: class names in classifier order (config.json ``label_names``; transformers'
            ``id2label``); one unique name per class.
        model_card: README.md text (see :func:`render_model_card`).
        extra_files: ``{name in the export: source file}``, e.g. plots, ``all_results.json``.
        training_config: the resolved training configuration, written as ``training_config.yaml``.
        data_config: what the training pipeline used (``input_size``, ``mean``, ``std``,
            ``interpolation``, ``crop_pct``, ``crop_mode``); recorded in ``pretrained_cfg``.
        model_args: extra constructor args needed to rebuild the architecture (merged over the
            inferred ``in_chans`` / ``img_size``).
        verify: reload the export the way timm and transformers do and compare logits before the swap.
    """
    import timm.models

    model = unwrap_backbone(backbone)
    if any(not t.is_contiguous() for t in model.state_dict().values()):  # e.g. trained channels-last
        model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)  # safetensors stores dense tensors
    output_dir = Path(output_dir).expanduser().absolute()
    names = _check_label_names(label_names, int(model.num_classes))
    copies = _check_extra_files(extra_files, model_card is not None, training_config is not None)
    _check_replaceable(output_dir)
    args = export_model_args(model, model_args)
    model_config: Dict[str, Any] = {"label_names": names, "pretrained_cfg": export_pretrained_cfg(model, data_config)}

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.parent / f".{output_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        timm.models.save_for_hf(model, tmp, model_config=model_config, model_args=args or None,
                                safe_serialization=True)
        normalise_config_json(tmp / CONFIG_NAME)  # loadable by transformers with any timm release
        if training_config is not None:
            import yaml

            (tmp / TRAINING_CONFIG_NAME).write_text(
                yaml.safe_dump(to_plain(training_config), sort_keys=False, allow_unicode=True), encoding="utf-8")
        for name, source in copies.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, tmp / name)
        if model_card is not None:
            (tmp / MODEL_CARD_NAME).write_text(model_card, encoding="utf-8")
        if verify:
            _verify_export(tmp, model)
        swap_in_directory(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output_dir


def _check_label_names(label_names: Sequence[str], num_classes: int) -> list:
    if isinstance(label_names, str):
        raise TypeError("label_names must be a list of class names, not one string.")
    names = [str(n) for n in label_names]
    if len(names) != num_classes:
        raise UsageError(f"label_names has {len(names)} names but the model has {num_classes} classes; "
                         "pass one name per classifier output, in class-id order.")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"label_names must be unique (transformers builds label2id from them); duplicated: "
                         f"{duplicates}.")
    return names


def _check_extra_files(extra_files: Optional[Mapping[str, PathLike]], has_card: bool,
                       has_training_config: bool) -> Dict[str, Path]:
    reserved = set(REQUIRED_FILES) | ({MODEL_CARD_NAME} if has_card else set()) | (
        {TRAINING_CONFIG_NAME} if has_training_config else set())
    copies: Dict[str, Path] = {}
    for name, source in (extra_files or {}).items():
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise UsageError(f"extra_files name {name!r} must be a relative path inside the export "
                             "(e.g. 'plots/x.png').")
        if rel.as_posix() in reserved:
            raise UsageError(f"extra_files name {name!r} would overwrite a file export_model writes itself; rename it.")
        source = Path(source)
        if not source.is_file():
            raise MissingInputError(f"extra_files[{name!r}]: {source} is not a file.")
        copies[rel.as_posix()] = source
    return copies


def _check_replaceable(output_dir: Path) -> None:
    """Refuse to replace a directory that is not an earlier export (it would be deleted)."""
    if not output_dir.exists():
        return
    if not output_dir.is_dir():
        raise OutputConflictError(f"{output_dir} exists and is not a directory; choose another output_dir.")
    entries = list(output_dir.iterdir())
    if not entries:
        return
    names = {e.name for e in entries}
    looks_like_export = set(REQUIRED_FILES) <= names
    training_state = [e.name for e in entries if e.name.startswith("checkpoint") or e.name in
                      ("trainer_state.json", "optimizer.pt", "optimizer.bin")]
    if not looks_like_export or training_state:
        raise OutputConflictError(f"{output_dir} is not empty and is not a model export (it would be replaced, and its "
                              f"contents deleted); export to a new or empty directory, e.g. {output_dir / 'export'}.")


@torch.no_grad()
def _verify_export(export_dir: Path, original: nn.Module) -> None:
    """Rebuild the export as timm (``local-dir:``) and transformers' TimmWrapper do; compare logits."""
    import timm

    config = json.loads((export_dir / CONFIG_NAME).read_text(encoding="utf-8"))
    shape = config["pretrained_cfg"]["input_size"]
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    param = next(original.parameters(), None)
    device, dtype = (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)
    was_training = original.training
    original.eval()
    try:
        expected = original(x.to(device=device, dtype=dtype)).float().cpu()
    finally:
        original.train(was_training)

    hint = ("pass the constructor arguments that differ from the architecture's defaults as "
            "export_model(..., model_args={...})")
    from transformers import AutoModelForImageClassification

    rebuilt = {}
    try:
        rebuilt["timm local-dir"] = timm.create_model(f"local-dir:{export_dir}", pretrained=True)
        rebuilt["transformers"] = AutoModelForImageClassification.from_pretrained(export_dir)
    except (RuntimeError, TypeError, ValueError, OSError) as e:  # what the two loaders raise for a config that does not rebuild
        detail = " ".join(line.strip() for line in str(e).strip().splitlines()[:2]) or type(e).__name__
        raise RuntimeError(f"The export does not rebuild ({type(e).__name__}: {detail[:300]}); {hint}.") from e
    for loader, model in rebuilt.items():
        out = model.eval().to(dtype=dtype)(x.to(dtype=dtype))
        got = (out.logits if hasattr(out, "logits") else out).float()
        tol = (1e-4 if dtype == torch.float32 and device.type == "cpu" else 1e-2) * (1.0 + expected.abs().max().item())
        diff = (got - expected).abs().max().item()
        if got.shape != expected.shape or not math.isfinite(diff) or diff > tol:
            raise RuntimeError(f"The export rebuilt by {loader} gives different logits than the trained model "
                               f"(max |diff| {diff:.3g}); {hint}.")


def to_plain(obj: Any) -> Any:
    """Configs as YAML/JSON-safe builtins (paths, tuples, numpy/torch scalars and arrays, dataclasses)."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, (str, bool, int, float)) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy / torch arrays and scalars
        return to_plain(obj.tolist())
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)
