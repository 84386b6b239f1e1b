"""procrustean: Procrustean training (class-size-aware feature weakening) for any timm backbone.

Ye, Zhan, Chao, "Procrustean Training for Imbalanced Deep Learning", ICCV 2021 (arXiv 2104.01769).
Features of major-class samples are mixed with other samples' features, labels kept, so that major
classes are not fitted first. Importing the package also registers the CIFAR ResNets in timm.

The method, at the top: ``policy`` (who is weakened, how much, with whom -- the weakening itself),
``progress`` (per-class training progress, for the progress rule), ``model`` (the timm wrapper and its
locations), ``collator`` (batches, and where the plans are drawn), ``trainer_callback`` (the recipe's epoch schedules in
transformers.Trainer). Libraries: ``data`` (sources,
imbalance builders, checks, transforms), ``losses`` (class-count-aware losses, DRW), ``metrics`` (the
long-tail ``evaluate`` module), ``models`` (CIFAR ResNets, the timm factory), ``hub`` (export, model
card, push). Training machinery for the recipes: ``train``.
"""
from . import models  # noqa: F401  (registers resnet*_cifar in timm)
from .collator import ProcrusteanCollator
from .data import (ClassHistogram, SampleSeededDataset, as_class_counts, class_histogram, counts_from_labels,
                   imbalanced_counts, make_imbalanced, parse_imbalance)
from .hub import export_model, render_model_card
from .losses import (LOSS_NAMES, CDTLoss, ClassWeightedLoss, CrossEntropyLoss, DeferredReweighting, FocalLoss,
                     LDAMLoss, LogitAdjustedLoss, class_balanced_weights, create_loss)
from .metrics import LONG_TAIL_ACCURACY_PATH, compute_long_tail_accuracy, load_long_tail_accuracy
from .model import ProcrusteanModel
from .models.factory import create_timm_model
from .policy import WeakeningDraws, WeakeningPlan, WeakeningPolicy, weakening_probabilities
from .trainer_callback import ProcrusteanCallback

__version__ = "0.1.0"

__all__ = ["CDTLoss", "ClassHistogram", "ClassWeightedLoss", "CrossEntropyLoss", "DeferredReweighting", "FocalLoss",
           "LDAMLoss", "LONG_TAIL_ACCURACY_PATH", "LOSS_NAMES", "LogitAdjustedLoss", "ProcrusteanCallback", "ProcrusteanCollator",
           "ProcrusteanModel", "SampleSeededDataset", "WeakeningDraws", "WeakeningPlan", "WeakeningPolicy",
           "as_class_counts", "class_balanced_weights", "class_histogram", "compute_long_tail_accuracy",
           "counts_from_labels", "create_loss", "create_timm_model", "export_model", "imbalanced_counts",
           "load_long_tail_accuracy", "make_imbalanced", "parse_imbalance", "render_model_card",
           "weakening_probabilities"]
