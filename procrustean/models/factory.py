"""Making timm models by name, and finding the timm model inside any wrapper."""
from __future__ import annotations

import difflib
from typing import Any

from torch import nn
from ..errors import UsageError


def inner_timm_model(model: nn.Module) -> nn.Module:
    """The plain timm model inside ProcrusteanModel / DDP / torch.compile / transformers' TimmWrapper."""
    for _ in range(8):
        for attr in ("backbone", "module", "_orig_mod", "timm_model"):
            inner = getattr(model, attr, None)
            if isinstance(inner, nn.Module):
                model = inner
                break
        else:
            break
    return model


def model_in_chans(model: nn.Module) -> int:
    """Input channels of a (possibly wrapped) timm model: ``in_chans``, else its ``first_conv``, else the first conv."""
    model = inner_timm_model(model)
    in_chans = getattr(model, "in_chans", None)
    first_conv = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    if in_chans is None and isinstance(first_conv, str):
        try:
            in_chans = model.get_submodule(first_conv).weight.shape[1]
        except AttributeError:
            in_chans = None
    if in_chans is None:
        conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        in_chans = conv.in_channels if conv is not None else 3
    return int(in_chans)


def check_timm_model_name(model_name: str) -> None:
    """Refuse unknown timm architectures early, with the closest names (hf-hub: and local-dir: pass through)."""
    import timm

    from . import cifar_resnet  # noqa: F401  (registers the CIFAR ResNets)

    if not model_name.startswith(("hf-hub:", "local-dir:")) and not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UsageError(f"Unknown timm model {model_name!r}.{hint} See `timm.list_models('*pattern*')`, "
                         "or use 'hf-hub:<repo>' / 'local-dir:<path>'.")


def create_timm_model(model_name: str, **create_kwargs: Any) -> nn.Module:
    """``timm.create_model`` with a clear error for unknown architectures."""
    import timm

    check_timm_model_name(model_name)
    return timm.create_model(model_name, **create_kwargs)
