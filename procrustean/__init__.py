"""procrustean: Procrustean training (class-size-aware feature weakening) for any timm backbone.

Ye, Zhan, Chao, "Procrustean Training for Imbalanced Deep Learning", ICCV 2021 (arXiv 2104.01769).
Features of major-class samples are mixed with other samples' features, labels kept, so that major
classes are not fitted first. Importing the package also registers the CIFAR ResNets in timm.
"""
from ._counts import as_class_counts, counts_from_labels

__version__ = "0.1.0"
