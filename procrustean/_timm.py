"""Small facts about timm models that several modules need."""
from __future__ import annotations

from torch import nn


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
