"""Checks that fail a run before training rather than hours into it: columns, label ranges, empty
classes, and images that cannot be opened (:func:`verify_images` opens every image once, cheaply)."""
from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import datasets
import numpy as np
import torch

from .counts import dataset_label_column
from ..errors import UsageError


def require_column(ds: datasets.Dataset, column: str, split: str, role: str) -> None:
    if column not in ds.column_names:
        raise UsageError(f"{role.capitalize()} column {column!r} not found in split {split!r}; available columns: "
                         f"{ds.column_names}. Pass the right one with --{role}_column.")


def check_label_range(ds: datasets.Dataset, column: str, split: str, num_classes: int) -> None:
    labels = dataset_label_column(ds, column)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise UsageError(f"Split {split!r}: labels in column {column!r} must lie in [0, {num_classes}) (the "
                         f"training classes), found {bad.size} outside, e.g. {sorted(set(bad.tolist()))[:5]}. "
                         "Unlabelled rows (-1) and classes unknown to training cannot be used: pick another "
                         "split (--train_split / --eval_split) or fix the labels.")


def check_no_empty_classes(counts: Union[Sequence[int], np.ndarray, torch.Tensor],
                           class_names: Optional[Sequence[str]] = None) -> None:
    """Refuse a training set where some class has no samples: nothing could be learnt or weighted for it."""
    counts = np.asarray(counts.detach().cpu().numpy() if torch.is_tensor(counts) else counts).reshape(-1)
    empty = [int(c) for c in np.flatnonzero(counts == 0)]
    if empty:
        named = ", ".join(f"{c} ({class_names[c]!r})" if class_names is not None else str(c) for c in empty[:20])
        raise UsageError(f"{len(empty)} of {counts.size} classes have no training samples: {named}. Every class "
                         "needs at least one training image: fix the split or label column, drop those classes, "
                         "or use a milder imbalance profile.")


def _verify_one(entry: Optional[Dict[str, Any]]) -> Optional[str]:
    """None if the encoded image opens and verifies, else the error text."""
    from PIL import Image

    if entry is None:
        return "missing image (null)"
    try:
        source = io.BytesIO(entry["bytes"]) if entry.get("bytes") is not None else entry.get("path")
        if source is None:
            return "neither bytes nor a path"
        with Image.open(source) as image:
            image.verify()
    except Exception as err:  # PIL raises many types (SyntaxError, OSError, ValueError, ...)
        return f"{type(err).__name__}: {err}"
    return None


def verify_images(dataset: datasets.Dataset, image_column: str, split_name: str, max_errors: int = 5,
                  batch_size: int = 1000, num_threads: int = 8) -> int:
    """Open every image once (no decoding: PIL ``verify``) and raise one error listing the first bad ones.

    Returns the number of images checked (0 for array-stored pixels, which have nothing to verify).
    Images stored only as paths are checked in a thread pool (file I/O); bytes in the main thread.
    """
    feature = dataset.features[image_column]
    if not isinstance(feature, datasets.Image):
        return 0
    # Raw {bytes, path} entries: no decoding, and no user transform (with_format(None) drops it).
    view = dataset.with_format(None).select_columns([image_column]).cast_column(image_column,
                                                                                 datasets.Image(decode=False))
    bad: List[Tuple[int, Optional[str], str]] = []
    num_bad, offset = 0, 0
    pool = ThreadPoolExecutor(max_workers=num_threads)
    try:
        for batch in view.iter(batch_size=batch_size):
            entries = batch[image_column]
            by_path = any(e is not None and e.get("bytes") is None for e in entries)
            if by_path:  # one task per thread and batch: per-future overhead would cost more than a check
                step = -(-len(entries) // num_threads)
                chunks = pool.map(lambda part: [_verify_one(e) for e in part],
                                  [entries[i:i + step] for i in range(0, len(entries), step)])
                results = [error for chunk in chunks for error in chunk]
            else:
                results = map(_verify_one, entries)
            for i, (entry, error) in enumerate(zip(entries, results)):
                if error is not None:
                    num_bad += 1
                    if len(bad) < max_errors:
                        bad.append((offset + i, (entry or {}).get("path"), error))
            offset += len(entries)
    finally:
        pool.shutdown()
    if num_bad:
        lines = "\n".join(f"  index {i}{f' ({path})' if path else ''}: {error}" for i, path, error in bad)
        raise UsageError(f"Split {split_name!r}: {num_bad} of {offset} images in column {image_column!r} cannot be "
                         f"opened (first {len(bad)} shown):\n{lines}\nFix or remove these images (e.g. "
                         "dataset.filter, or delete the files) and rerun.")
    return offset
