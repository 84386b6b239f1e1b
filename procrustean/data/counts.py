"""Class-count plumbing shared by the policy, the losses, the metrics and the imbalance builders.

Everything in procrustean that depends on class sizes takes the *global* training counts (whole
training split, all processes), never per-batch or per-shard counts.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np
import torch
from ..errors import MissingColumnError, UsageError

ClassCounts = Union[Sequence[int], np.ndarray, torch.Tensor]


def as_class_counts(class_counts: ClassCounts, name: str = "class_counts") -> torch.Tensor:
    """Validate and return class counts as a 1-D float64 CPU tensor (float so ratios stay exact)."""
    counts = torch.as_tensor(np.asarray(class_counts if not torch.is_tensor(class_counts)
                                        else class_counts.detach().cpu().numpy()), dtype=torch.float64)
    if counts.ndim != 1 or counts.numel() == 0:
        raise UsageError(f"{name} must be a non-empty 1-D sequence with one count per class, "
                         f"got shape {tuple(counts.shape)}.")
    if not torch.isfinite(counts).all() or (counts < 0).any():
        raise UsageError(f"{name} must be finite and non-negative, got {counts.tolist()}.")
    if (counts != counts.round()).any():
        raise UsageError(f"{name} must be whole numbers of training samples, got {counts.tolist()}.")
    if counts.sum() == 0:
        raise UsageError(f"{name} are all zero: there is no training data to be class-aware about.")
    return counts


def counts_from_labels(labels: Union[Iterable[int], torch.Tensor, np.ndarray],
                       num_classes: Optional[int] = None) -> torch.Tensor:
    """Count integer labels into a [num_classes] int64 tensor, refusing labels outside the range."""
    labels_np = np.asarray(labels.detach().cpu().numpy() if torch.is_tensor(labels) else list(labels)
                           if not isinstance(labels, np.ndarray) else labels)
    if labels_np.size == 0:
        raise UsageError("No labels given: cannot count classes of an empty training set.")
    if labels_np.dtype.kind not in "iu":
        if labels_np.dtype.kind == "f" and np.all(labels_np == np.round(labels_np)):
            labels_np = labels_np.astype(np.int64)
        else:
            raise UsageError(f"Labels must be integer class indices, got dtype {labels_np.dtype}. "
                             "Encode string labels first (e.g. datasets' `class_encode_column`).")
    labels_np = labels_np.astype(np.int64).reshape(-1)
    low, high = int(labels_np.min()), int(labels_np.max())
    if num_classes is None:
        num_classes = high + 1
    if low < 0 or high >= num_classes:
        raise UsageError(f"Labels must lie in [0, {num_classes}), found range [{low}, {high}]. "
                         "Pass the right `num_classes` or fix the label column.")
    return torch.from_numpy(np.bincount(labels_np, minlength=num_classes)).long()


def dataset_label_column(dataset: Any, label_column: str) -> np.ndarray:
    """Read a label column from an HF `datasets.Dataset` without decoding images."""
    names = getattr(dataset, "column_names", None)
    if names is not None and label_column not in names:
        raise MissingColumnError(f"Label column '{label_column}' not found; available columns: {names}. "
                       "Pass the right `label_column`.")
    if hasattr(dataset, "select_columns") and hasattr(dataset, "with_format"):
        # One Arrow read of this column only; also bypasses a `set_transform` that would otherwise need (and
        # decode) every column. 1M labels: 0.02 s, against 1 s through the numpy format (benchmarks/scaling.py).
        return dataset.select_columns([label_column]).with_format("arrow")[:][label_column].to_numpy()
    return np.asarray(dataset[label_column])


def dataset_num_classes(dataset: Any, label_column: str) -> Optional[int]:
    """Number of classes declared by a `ClassLabel` feature, if the column has one."""
    features = getattr(dataset, "features", None)
    feature = features.get(label_column) if features is not None else None
    return getattr(feature, "num_classes", None)
