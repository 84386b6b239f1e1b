"""``config.json`` for an exported model: what timm's ``save_for_hf`` leaves out, and we fill in.

* ``model_args``: constructor arguments a rebuild needs that the architecture name does not imply
  (``in_chans`` != 3, ``img_size`` of ViT-like models, ...). transformers' ``TimmWrapper`` ignores
  ``pretrained_cfg`` and calls ``timm.create_model(architecture, num_classes=..., **model_args)``, so
  they must be here -- but never ``num_classes`` (transformers 5.x passes it itself: "got multiple
  values for keyword argument 'num_classes'").
  timm >= 1.0.31 records every factory argument in ``model_args``, ``num_classes`` included:
  :func:`normalise_config_json` takes it out again after ``save_for_hf``.
* ``pretrained_cfg``: the model's default config describes the *upstream* weights (ImageNet 1000
  classes, 3x160x160, ...). We rewrite ``num_classes``, ``input_size`` (channels and training
  resolution) and ``mean``/``std`` (one value per input channel, else timm's data config asserts),
  so that ``timm.data.resolve_data_config`` and transformers' image processor preprocess correctly.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from torch import nn

from ..data.transforms import fit_channels
from ..errors import UsageError

# Upstream-weights provenance that does not describe an exported (re-trained) model; keys config.json
# keeps at its root.
_DROPPED_CFG_KEYS = ("architecture", "tag", "hf_hub_id", "url", "file", "source", "label_names", "label_descriptions")
# Data-config keys a caller may set (what the training pipeline actually used).
DATA_CONFIG_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")


def _input_channels(model: nn.Module) -> int:
    from ..models import hf_model_args

    return int(hf_model_args(model).get("in_chans", 3))


def _img_size(model: nn.Module) -> Optional[tuple]:
    """Image size fixed at construction (ViT-like models: ``patch_embed.img_size``), else None."""
    img_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if img_size is None:
        return None
    return tuple(int(s) for s in img_size) if isinstance(img_size, (tuple, list)) else (int(img_size),) * 2


def export_model_args(model: nn.Module, extra: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Constructor args for ``config.json``'s ``model_args``: ``in_chans`` (!= 3), ``img_size``, ``extra``.

    ``num_classes`` is refused: the root ``num_classes`` carries it, and transformers' TimmWrapper
    fails when it is in ``model_args`` too.
    """
    from ..models import hf_model_args

    args = dict(hf_model_args(model))
    img_size = _img_size(model)
    if img_size is not None:
        args["img_size"] = list(img_size)
    for key, value in (extra or {}).items():
        if key == "num_classes":
            raise UsageError("model_args must not contain 'num_classes': config.json stores it at the root, "
                             "and transformers' TimmWrapper fails with 'got multiple values for keyword argument "
                             "num_classes' when it is in model_args too. Remove it.")
        args[key] = list(value) if isinstance(value, tuple) else value
    args.pop("num_classes", None)
    return args


def export_pretrained_cfg(model: nn.Module, data_config: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The model's ``pretrained_cfg`` made true for the exported weights (see the module docstring)."""
    from timm.models._pretrained import filter_pretrained_cfg

    unknown = set(data_config or {}) - set(DATA_CONFIG_KEYS)
    if unknown:
        raise UsageError(f"Unknown data_config keys {sorted(unknown)}; allowed: {list(DATA_CONFIG_KEYS)}.")
    cfg = filter_pretrained_cfg(dict(model.pretrained_cfg), remove_source=True, remove_null=True)
    for key in _DROPPED_CFG_KEYS:
        cfg.pop(key, None)
    cfg.update({k: v for k, v in (data_config or {}).items() if v is not None})
    in_chans = _input_channels(model)
    input_size = list(cfg.get("input_size") or (3, 224, 224))
    if data_config is None or "input_size" not in data_config:
        img_size = _img_size(model)
        input_size = [in_chans, *(img_size or input_size[-2:])]
    if len(input_size) != 3 or int(input_size[0]) != in_chans:
        raise UsageError(f"input_size {input_size} does not match the model's {in_chans} input channels; "
                         "use input_size=(channels, height, width).")
    cfg["input_size"] = [int(s) for s in input_size]
    for name in ("mean", "std"):
        if cfg.get(name) is not None:
            cfg[name] = list(fit_channels(cfg[name], in_chans, name))
    cfg["num_classes"] = int(model.num_classes)
    return cfg


def normalise_config_json(path: Path | str) -> Dict[str, Any]:
    """Make a ``config.json`` written by timm's ``save_for_hf`` load in transformers' ``TimmWrapper`` too.

    timm 1.0.31 writes the model's factory arguments into ``model_args``, ``num_classes`` among them;
    ``TimmWrapper`` passes ``num_classes`` itself and fails with "got multiple values for keyword argument
    'num_classes'". The root ``num_classes`` carries it for both loaders, so it leaves ``model_args``.
    """
    path = Path(path)
    config = json.loads(path.read_text(encoding="utf-8"))
    model_args = config.get("model_args")
    if isinstance(model_args, dict) and "num_classes" in model_args:
        if int(model_args.pop("num_classes")) != int(config["num_classes"]):
            raise ValueError(f"{path}: model_args.num_classes differs from num_classes; the export is inconsistent.")
        if not model_args:
            del config["model_args"]
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return config
