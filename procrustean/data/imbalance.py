"""Build the standard class-imbalanced benchmarks (exp / step) from a balanced HF dataset.

The counts and the per-class selection reproduce LDAM-DRW's `imbalance_cifar.py` exactly, so that
CIFAR-10-LT and friends built here are the same subsets as in the literature:
- exp (long-tailed): ``n_i = int(n_max * (1/ratio) ** (i / (C - 1)))``, class 0 largest;
- step: the first ``C // 2`` classes keep ``n_max``, the rest get ``int(n_max * (1/ratio))``;
- per class (in class order), the first ``n_i`` indices of a shuffle by one seeded RandomState.
Only the training split is made imbalanced; test sets stay balanced.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .counts import counts_from_labels, dataset_label_column, dataset_num_classes
from .verification import check_no_empty_classes
from ..errors import UsageError

PROFILES = ("exp", "step", "none")
_ACCEPTED = "'exp:<ratio>' (e.g. 'exp:100'), 'step:<ratio>' (e.g. 'step:10') or 'none', with ratio >= 1"


def _check_ratio(ratio: Any, context: str) -> float:
    try:
        value = float(ratio)
    except (TypeError, ValueError):
        raise UsageError(f"{context}: imbalance ratio must be a number >= 1, got {ratio!r}. "
                         f"Accepted specs: {_ACCEPTED}.") from None
    if not math.isfinite(value) or value < 1:
        raise UsageError(f"{context}: imbalance ratio rho = n_max / n_min must be finite and >= 1, got "
                         f"{ratio!r}. Accepted specs: {_ACCEPTED}.")
    return value


def parse_imbalance(spec: str) -> Tuple[str, float]:
    """Parse a CLI/config spec such as ``"exp:100"`` into ``(profile, ratio)``; ``"none"`` -> ratio 1."""
    if not isinstance(spec, str):
        raise UsageError(f"Imbalance spec must be a string, got {type(spec).__name__}. Accepted: {_ACCEPTED}.")
    text = spec.strip().lower()
    if text == "none":
        return "none", 1.0
    profile, sep, ratio = text.partition(":")
    if profile not in ("exp", "step") or not sep or not ratio.strip():
        raise UsageError(f"Malformed imbalance spec {spec!r}. Accepted: {_ACCEPTED}.")
    return profile, _check_ratio(ratio.strip(), f"Imbalance spec {spec!r}")


def imbalanced_counts(profile: str, ratio: float, n_max: int, num_classes: int,
                      minor_fraction: float = 0.5) -> List[int]:
    """Per-class training counts of an exp / step / none profile (class 0 largest), LDAM-DRW formulas.

    `minor_fraction` (step only) is Buda et al.'s mu: the last ``ceil(C * mu)`` classes are minor,
    which at mu = 0.5 is exactly LDAM-DRW's ``C // 2`` major classes. "none" ignores `ratio`.
    """
    if profile not in PROFILES:
        raise UsageError(f"Unknown imbalance profile {profile!r}; choose one of {PROFILES}.")
    ratio = _check_ratio(ratio, f"Profile {profile!r}")
    if isinstance(n_max, bool) or int(n_max) != n_max or n_max < 1:
        raise UsageError(f"n_max (samples of the largest class) must be a positive integer, got {n_max!r}.")
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise UsageError(f"num_classes must be a positive integer, got {num_classes!r}.")
    n_max, num_classes = int(n_max), int(num_classes)
    factor = 1.0 / ratio  # LDAM-DRW's `imb_factor`; keep its arithmetic so counts match bit for bit

    if profile == "none":
        return [n_max] * num_classes
    if num_classes < 2:
        raise UsageError(f"A {profile!r} imbalance needs at least 2 classes, got num_classes={num_classes}.")
    if profile == "exp":
        counts = [int(n_max * factor ** (i / (num_classes - 1.0))) for i in range(num_classes)]
    else:
        if not 0.0 < minor_fraction < 1.0:
            raise UsageError(f"minor_fraction must lie strictly between 0 and 1, got {minor_fraction}.")
        num_minor = math.ceil(num_classes * minor_fraction - 1e-9)  # tolerate 0.1 + 0.2-style floats
        num_major = num_classes - num_minor
        if num_minor < 1 or num_major < 1:
            raise UsageError(f"minor_fraction={minor_fraction} with {num_classes} classes gives "
                             f"{num_major} major and {num_minor} minor classes; a step imbalance needs "
                             "at least one of each.")
        counts = [n_max] * num_major + [int(n_max * factor)] * num_minor
    if min(counts) < 1:
        empty = [i for i, n in enumerate(counts) if n < 1]
        shown = ", ".join(map(str, empty[:20])) + (f", ... ({len(empty)} classes)" if len(empty) > 20 else "")
        raise UsageError(f"{profile}:{ratio:g} with n_max={n_max} leaves classes {shown} with 0 samples "
                         f"(n_max / ratio < 1). Lower the ratio or raise n_max to at least {math.ceil(ratio)}.")
    return counts


def _resolve_profile(profile: str, ratio: Optional[float]) -> Tuple[str, float]:
    """Accept either a spec string ("exp:100", "none") or a profile name plus `ratio`."""
    if not isinstance(profile, str):
        raise UsageError(f"profile must be a string, got {type(profile).__name__}. Accepted: {_ACCEPTED}.")
    name = profile.strip().lower()
    if ":" in name or (name == "none" and ratio is None):
        if ratio is not None:
            raise UsageError(f"Give the ratio once: either profile={profile!r} alone or a profile name "
                             f"with ratio=..., not both (got ratio={ratio!r}).")
        return parse_imbalance(profile)
    if name not in PROFILES:
        raise UsageError(f"Unknown imbalance profile {profile!r}. Accepted: {_ACCEPTED}, or a name in "
                         f"{PROFILES} with ratio=....")
    if ratio is None:
        raise UsageError(f"Profile {profile!r} needs a ratio: pass ratio=100 or the spec '{name}:100'.")
    return name, _check_ratio(ratio, f"Profile {profile!r}")


def _largest_fitting_n_max(profile: str, ratio: float, upper: int, available: Sequence[int],
                           minor_fraction: float) -> Optional[int]:
    """Largest n_max <= upper whose target counts all fit in `available` (counts grow with n_max)."""
    def targets(n: int) -> Optional[List[int]]:
        try:
            return imbalanced_counts(profile, ratio, n, len(available), minor_fraction)
        except ValueError:  # n too small: some class would be empty
            return None

    def fits(n: int) -> bool:  # capacity only, monotone in n; an empty-class n "fits" trivially
        counts = targets(n)
        return counts is None or all(t <= a for t, a in zip(counts, available))

    low, high = 1, upper  # the answer lies in [low, high] if fits(1)
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low if fits(low) and targets(low) is not None else None


def make_imbalanced(dataset: Any, profile: str, ratio: Optional[float] = None,
                    label_column: str = "label", seed: int = 0, max_per_class: Optional[int] = None,
                    num_classes: Optional[int] = None, minor_fraction: float = 0.5,
                    class_order: Optional[Sequence[int]] = None) -> Any:
    """Subsample an HF `datasets.Dataset` to an exp / step imbalance, reproducing LDAM-DRW's selection.

    `n_max` is `max_per_class` or the largest class available. One `np.random.RandomState(seed)`
    shuffles each class's indices in class order and the first `n_i` are kept; this is LDAM-DRW's
    `np.random.seed(seed); np.random.shuffle(idx)` loop. Rows keep their original order. Labels are
    read from the column only, so images are never decoded.

    `class_order` says which class takes the profile's k-th count (largest first): a permutation of
    the class ids, default label order. It moves the imbalance onto other classes (e.g. which
    Fashion-MNIST classes are minor) without changing the labels.
    """
    profile, ratio = _resolve_profile(profile, ratio)
    labels = dataset_label_column(dataset, label_column)
    if num_classes is None:
        num_classes = dataset_num_classes(dataset, label_column)
    available = counts_from_labels(labels, num_classes).tolist()
    labels = labels.astype(np.int64)
    num_classes = len(available)

    check_no_empty_classes(available)  # an imbalanced subset cannot create data for a class that has none
    if max_per_class is not None and (isinstance(max_per_class, bool) or int(max_per_class) != max_per_class
                                      or max_per_class < 1):
        raise UsageError(f"max_per_class must be a positive integer, got {max_per_class!r}.")
    n_max = int(max_per_class) if max_per_class is not None else max(available)
    targets = imbalanced_counts(profile, ratio, n_max, num_classes, minor_fraction=minor_fraction)
    if class_order is not None:
        order = [int(c) for c in class_order]
        if sorted(order) != list(range(num_classes)):
            raise UsageError(f"class_order must be a permutation of the {num_classes} class ids 0..{num_classes - 1} "
                             f"(which class gets the largest count first), got {list(class_order)}.")
        by_class = [0] * num_classes
        for rank, c in enumerate(order):
            by_class[c] = targets[rank]
        targets = by_class

    short = [(c, need, have) for c, (need, have) in enumerate(zip(targets, available)) if need > have]
    if short:
        detail = ", ".join(f"class {c} needs {need} but has {have}" for c, need, have in short[:10])
        detail += f", ... ({len(short)} classes short)" if len(short) > 10 else ""
        fits = _largest_fitting_n_max(profile, ratio, n_max, available, minor_fraction)
        fix = (f"Pass max_per_class={fits} (the largest n_max every class can fill)" if fits
               else "No n_max fits; use a smaller ratio")
        raise UsageError(f"Not enough samples for {profile}:{ratio:g} with n_max={n_max}: {detail}. "
                         f"{fix}.")

    rng = np.random.RandomState(seed)
    # each class's row indices in ascending order (as np.where(labels == c) gives them), from one stable sort
    # instead of one pass over the labels per class
    by_class = np.split(np.argsort(labels, kind="stable"), np.cumsum(available)[:-1])
    selected: List[np.ndarray] = []
    for idx, n_c in zip(by_class, targets):
        rng.shuffle(idx)
        selected.append(idx[:n_c])
    return dataset.select(np.sort(np.concatenate(selected)))


@dataclass
class ClassHistogram:
    """Per-class sample counts with a printable table, to show what imbalance a run actually trained on.

    `imbalance_ratio` is `inf` when a class is empty: an empty class is infinitely under-represented,
    and silently ignoring it would hide a broken split (see `empty_classes`). `to_dict` writes it as
    `None` then, so the dict stays valid JSON.
    """

    counts: List[int]
    class_names: Optional[List[str]] = None

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts.detach().cpu().numpy() if torch.is_tensor(self.counts) else self.counts)
        if counts.ndim != 1 or counts.size == 0:
            raise UsageError(f"counts must be a non-empty 1-D list (one count per class), got shape {counts.shape}.")
        if np.any(counts < 0) or np.any(counts != np.round(counts)):
            raise UsageError(f"counts must be non-negative integers, got {counts.tolist()}.")
        self.counts = [int(n) for n in counts]
        if self.class_names is not None:
            self.class_names = [str(name) for name in self.class_names]
            if len(self.class_names) != len(self.counts):
                raise UsageError(f"Got {len(self.class_names)} class_names for {len(self.counts)} classes; "
                                 "pass one name per class.")

    @property
    def num_classes(self) -> int:
        return len(self.counts)

    @property
    def num_samples(self) -> int:
        return sum(self.counts)

    @property
    def empty_classes(self) -> List[int]:
        return [c for c, n in enumerate(self.counts) if n == 0]

    @property
    def imbalance_ratio(self) -> float:
        """n_max / n_min; `inf` if any class is empty."""
        smallest = min(self.counts)
        return math.inf if smallest == 0 else max(self.counts) / smallest

    def name(self, class_id: int) -> str:
        return self.class_names[class_id] if self.class_names is not None else str(class_id)

    def format(self, width: int = 40) -> str:
        """A table with one row per class: id, name, count, share of all samples and a text bar."""
        total, largest = self.num_samples, max(self.counts)
        name_width = min(max([4] + [len(self.name(c)) for c in range(self.num_classes)]), 24)
        count_width = max(5, len(str(largest)))
        lines = [f"{'id':>4}  {'name':<{name_width}}  {'count':>{count_width}}  {'share':>7}"]
        for c, n in enumerate(self.counts):
            share = n / total if total else 0.0
            bar = "#" * (round(width * n / largest) if largest else 0)
            lines.append(f"{c:>4}  {self.name(c)[:name_width]:<{name_width}}  {n:>{count_width}}  "
                         f"{share:>7.2%}  {bar}{'  (empty)' if n == 0 else ''}")
        ratio = self.imbalance_ratio
        ratio_text = f"{ratio:.4g}" if math.isfinite(ratio) else f"inf (empty classes: {self.empty_classes})"
        lines.append(f"{self.num_classes} classes, {total} samples, imbalance ratio n_max/n_min = {ratio_text}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready summary for logging (infinite ratio written as None)."""
        ratio = self.imbalance_ratio
        return {
            "counts": list(self.counts),
            "class_names": list(self.class_names) if self.class_names is not None else None,
            "num_classes": self.num_classes,
            "num_samples": self.num_samples,
            "imbalance_ratio": ratio if math.isfinite(ratio) else None,
            "empty_classes": self.empty_classes,
        }


def class_histogram(dataset_or_labels: Union[Any, Sequence[int], np.ndarray, torch.Tensor],
                    label_column: str = "label", num_classes: Optional[int] = None,
                    class_names: Optional[Sequence[str]] = None) -> ClassHistogram:
    """Count the classes of an HF dataset (label column only, no image decoding) or of a label list.

    `num_classes` and `class_names` default to the dataset's `ClassLabel` feature when it has one, so
    classes missing from a split still show up as empty rows.
    """
    if hasattr(dataset_or_labels, "column_names"):
        labels: Iterable[int] = dataset_label_column(dataset_or_labels, label_column)
        feature = dataset_or_labels.features.get(label_column)
        if num_classes is None:
            num_classes = dataset_num_classes(dataset_or_labels, label_column)
        if class_names is None and getattr(feature, "names", None) and len(feature.names) == num_classes:
            class_names = list(feature.names)
    else:
        labels = dataset_or_labels
    if num_classes is None and class_names is not None:
        num_classes = len(class_names)
    counts = counts_from_labels(labels, num_classes)
    return ClassHistogram(counts=counts.tolist(), class_names=list(class_names) if class_names is not None else None)
