"""The data side: sources -> HF ``Dataset`` splits, imbalance builders, checks, transforms, Fashion-MNIST.

``sources`` (load any image-classification source), ``imbalance`` (LDAM-DRW's exp / step builders and
class histograms), ``counts`` (global class counts), ``verification`` (columns, labels, empty classes,
corrupt images), ``transforms`` (timm's transforms per model; CIFAR pad-crop), ``sample_seeding``
(augmentation that resumes exactly), ``fashion_mnist`` (the benchmark data, from Debian's package).
"""
from .counts import as_class_counts, counts_from_labels
from .imbalance import ClassHistogram, class_histogram, imbalanced_counts, make_imbalanced, parse_imbalance
from .sample_seeding import SampleSeededDataset
from .sources import ImageData, load_image_dataset
from .transforms import build_transforms, model_data_config, with_image_transform
from .verification import check_label_range, check_no_empty_classes, require_column, verify_images

__all__ = ["ClassHistogram", "ImageData", "SampleSeededDataset", "as_class_counts", "build_transforms",
           "check_label_range", "check_no_empty_classes", "class_histogram", "counts_from_labels",
           "imbalanced_counts", "load_image_dataset", "make_imbalanced", "model_data_config", "parse_imbalance",
           "require_column", "verify_images", "with_image_transform"]
