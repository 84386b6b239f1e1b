"""Class-count-driven losses for imbalanced classification (CE, logit adjustment / balanced
softmax, LDAM, CDT, focal) and deferred re-weighting (DRW)."""
from .base import ClassWeightedLoss
from .cdt import CDTLoss
from .cross_entropy import CrossEntropyLoss
from .drw import DeferredReweighting, class_balanced_weights
from .factory import LOSS_NAMES, check_loss_name, create_loss
from .focal import FocalLoss
from .ldam import LDAMLoss
from .logit_adjusted import LogitAdjustedLoss

__all__ = [
    "ClassWeightedLoss",
    "CrossEntropyLoss",
    "LogitAdjustedLoss",
    "LDAMLoss",
    "CDTLoss",
    "FocalLoss",
    "class_balanced_weights",
    "DeferredReweighting",
    "check_loss_name", "create_loss",
    "LOSS_NAMES",
]
