"""`create_loss`: build a class-count-driven loss by name (for configs and command lines)."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Optional, Tuple

from ..data.counts import ClassCounts
from .base import ClassWeightedLoss
from .cdt import CDTLoss
from .cross_entropy import CrossEntropyLoss
from .focal import FocalLoss
from .ldam import LDAMLoss
from .logit_adjusted import LogitAdjustedLoss
from ..errors import UsageError

# name -> (class, needs class_counts, fixed kwargs the caller may not override)
_REGISTRY: Dict[str, Tuple[Callable[..., ClassWeightedLoss], bool, Dict[str, Any]]] = {
    "ce": (CrossEntropyLoss, False, {}),
    "logit_adjusted": (LogitAdjustedLoss, True, {}),
    "balanced_softmax": (LogitAdjustedLoss, True, {"tau": 1.0}),
    "ldam": (LDAMLoss, True, {}),
    "cdt": (CDTLoss, True, {}),
    "focal": (FocalLoss, False, {}),
}
_ALIASES = {"cross_entropy": "ce", "la": "logit_adjusted"}

#: Every name `create_loss` accepts (canonical names first, then aliases).
LOSS_NAMES: Tuple[str, ...] = tuple(_REGISTRY) + tuple(_ALIASES)


def check_loss_name(name: str) -> str:
    """The registry key of a loss name (case-insensitive, "-" read as "_"), or a UsageError listing the names."""
    if not isinstance(name, str):
        raise TypeError(f"loss name must be a str, got {type(name).__name__}.")
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise UsageError(f"Unknown loss {name!r}; choose one of {list(LOSS_NAMES)}.")
    return key


def create_loss(name: str, class_counts: Optional[ClassCounts] = None, **kwargs: Any) -> ClassWeightedLoss:
    """Create a loss by name: "ce" ("cross_entropy"), "logit_adjusted" ("la"), "balanced_softmax"
    (logit-adjusted with tau = 1), "ldam", "cdt", "focal".

    `class_counts` are the global training counts per class: required by "logit_adjusted",
    "balanced_softmax", "ldam" and "cdt"; optional (class-number check only) for "ce" and "focal".
    Remaining keyword arguments go to the loss class; unknown ones raise TypeError.
    Names are case-insensitive and "-" is read as "_".
    """
    key = check_loss_name(name)
    cls, needs_counts, fixed = _REGISTRY[key]
    params = inspect.signature(cls).parameters
    accepted = [p for p in params if p != "class_counts" and p not in fixed]
    unknown = sorted(k for k in kwargs if k not in accepted)
    if unknown:
        hint = f" ('{key}' fixes {fixed})" if any(k in fixed for k in unknown) else ""
        raise TypeError(f"Unexpected keyword argument(s) {unknown} for loss '{key}'{hint}; "
                        f"accepted: {accepted}.")
    if needs_counts and class_counts is None:
        raise UsageError(f"Loss '{key}' needs class_counts (the global training count per class).")
    return cls(class_counts=class_counts, **fixed, **kwargs)
