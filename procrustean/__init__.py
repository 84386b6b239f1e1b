"""procrustean: Procrustean training (class-size-aware feature weakening) for any timm backbone.

Ye, Zhan, Chao, "Procrustean Training for Imbalanced Deep Learning", ICCV 2021 (arXiv 2104.01769).
Features of major-class samples are mixed with other samples' features, labels kept, so that major
classes are not fitted first. Importing the package also registers the CIFAR ResNets in timm.

Where things are: ``policy`` (who is weakened, how much, with whom -- the weakening itself),
``model`` (the timm wrapper and its locations), ``collator`` (pixel-space weakening in the data
pipeline), ``losses`` (class-count-aware losses, DRW), ``imbalance`` (LT builders, histograms),
``metrics`` (the long-tail ``evaluate`` module), ``models`` (CIFAR ResNets for timm).
"""
from . import models  # noqa: F401  (registers resnet*_cifar in timm)
from ._counts import as_class_counts, counts_from_labels
from .collator import ProcrusteanCollator
from .export import export_model, render_model_card
from .imbalance import ClassHistogram, class_histogram, imbalanced_counts, make_imbalanced, parse_imbalance
from .losses import (LOSS_NAMES, CDTLoss, ClassWeightedLoss, CrossEntropyLoss, DeferredReweighting, FocalLoss,
                     LDAMLoss, LogitAdjustedLoss, class_balanced_weights, create_loss)
from .metrics import LONG_TAIL_ACCURACY_PATH, compute_long_tail_accuracy, load_long_tail_accuracy
from .model import ProcrusteanModel, create_timm_model
from .policy import WeakeningPlan, WeakeningPolicy, weakening_probabilities
from .sample_seeding import SampleSeededDataset

__version__ = "0.1.0"
