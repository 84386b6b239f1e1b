"""Long-tail accuracy: top-1, class-averaged, per-class, shot-group and major/minor accuracy.

Self-contained on purpose (imports only numpy, datasets and evaluate): `evaluate.load` copies this
script under `$HF_HOME/modules` and imports it from there, where the `procrustean` package may not
be importable. The pure computation, `compute_long_tail_accuracy`, is re-exported by
`procrustean.metrics` so code that does not want an `evaluate.Metric` can call it directly.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Accuracy metrics for class-imbalanced (long-tailed) classification. Top-1 accuracy over images is
dominated by the large classes whenever the evaluation set is imbalanced, so this module reports it
side by side with the class-averaged accuracy (the mean of per-class accuracies, a.k.a. balanced
accuracy), which weighs every class equally. On a balanced test set the two coincide.

Given the *training* class counts it also reports the usual long-tail breakdowns:
- shot groups (OLTR / classifier-balancing convention): many-shot classes have more than 100
  training images, medium-shot 20 to 100, few-shot fewer than 20 (thresholds configurable);
- major vs. minor classes (the usual split for step imbalance): major classes have a training count
  strictly above the median training count, unless the major class ids are given explicitly.
Every group accuracy is the class-average of per-class accuracies inside the group, over the classes
of the group that have evaluation samples.
"""

_CITATION = """\
@inproceedings{liu2019largescale,
  title     = {Large-Scale Long-Tailed Recognition in an Open World},
  author    = {Liu, Ziwei and Miao, Zhongqi and Zhan, Xiaohang and Wang, Jiayun and Gong, Boqing
               and Yu, Stella X.},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2019}
}
@inproceedings{ye2021procrustean,
  title     = {Procrustean Training for Imbalanced Deep Learning},
  author    = {Ye, Han-Jia and Zhan, De-Chuan and Chao, Wei-Lun},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  pages     = {92--102},
  year      = {2021}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted class ids, one per evaluation image.
    references (`list` of `int`): Ground-truth class ids, one per evaluation image.
    train_class_counts (`list` of `int`, *optional*): Number of *training* images per class (the
        whole training split). Enables the shot-group and major/minor results.
    num_classes (`int`, *optional*): Number of classes. Defaults to `len(train_class_counts)`, else
        to the largest label or prediction + 1.
    many_shot_threshold (`int`, defaults to 100): Classes with strictly more training images are
        many-shot.
    few_shot_threshold (`int`, defaults to 20): Classes with strictly fewer training images are
        few-shot; the rest (few_shot_threshold <= n <= many_shot_threshold) are medium-shot.
    major_classes (`list` of `int`, *optional*): Explicit major class ids; all other classes are
        minor. Defaults to the classes whose training count is strictly above the median.

Returns:
    image_averaged_accuracy (`float`): Top-1 accuracy over all evaluation images.
    class_averaged_accuracy (`float`): Mean per-class accuracy over the classes present in
        `references` (balanced accuracy).
    per_class_accuracy (`list`): Accuracy of each class, `None` where a class has no evaluation sample.
    per_class_count (`list` of `int`): Number of evaluation images of each class.
    many_shot_accuracy, medium_shot_accuracy, few_shot_accuracy (`float` or `None`): Class-averaged
        accuracy within each shot group; `None` when no class of the group has evaluation samples.
        Only with `train_class_counts`.
    many_shot_classes, medium_shot_classes, few_shot_classes (`list` of `int`): Class ids of each
        shot group. Only with `train_class_counts`.
    major_class_accuracy, minor_class_accuracy (`float` or `None`): Class-averaged accuracy of the
        major / minor classes. Only with `train_class_counts` or `major_classes`.
    major_classes, minor_classes (`list` of `int`): Class ids of each half.

Examples:
    >>> import evaluate
    >>> from procrustean.metrics import LONG_TAIL_ACCURACY_PATH
    >>> metric = evaluate.load(LONG_TAIL_ACCURACY_PATH)
    >>> results = metric.compute(predictions=[0, 0, 0, 0, 1, 0], references=[0, 0, 0, 0, 1, 2],
    ...                          train_class_counts=[500, 50, 5])
    >>> results["image_averaged_accuracy"], results["class_averaged_accuracy"]
    (0.8333333333333334, 0.6666666666666666)
    >>> results["per_class_accuracy"], results["per_class_count"]
    ([1.0, 1.0, 0.0], [4, 1, 1])
    >>> results["many_shot_accuracy"], results["medium_shot_accuracy"], results["few_shot_accuracy"]
    (1.0, 1.0, 0.0)
    >>> results["major_classes"], results["major_class_accuracy"], results["minor_class_accuracy"]
    ([0], 1.0, 0.5)
"""


def _int_array(values: Any, name: str) -> np.ndarray:
    """1-D int64 array, refusing non-integer input (a float prediction is usually a logit by mistake)."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of class ids, got shape {array.shape}. "
                         "Take the argmax over the class dimension of logits first.")
    if array.size and array.dtype.kind not in "iub":
        if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
            return array.astype(np.int64)
        raise ValueError(f"{name} must be integer class ids, got dtype {array.dtype}.")
    return array.astype(np.int64)


def _class_mean(per_class_accuracy: List[Optional[float]], classes: Sequence[int]) -> Optional[float]:
    """Mean accuracy over the given classes that have evaluation samples, None if there are none."""
    values = [per_class_accuracy[c] for c in classes if per_class_accuracy[c] is not None]
    return float(np.mean(values)) if values else None


def compute_long_tail_accuracy(
    predictions: Sequence[int],
    references: Sequence[int],
    train_class_counts: Optional[Sequence[int]] = None,
    num_classes: Optional[int] = None,
    many_shot_threshold: float = 100,
    few_shot_threshold: float = 20,
    major_classes: Optional[Sequence[int]] = None,
) -> Dict[str, Any]:
    """Image-averaged, class-averaged, per-class, shot-group and major/minor accuracy as plain Python.

    See `_KWARGS_DESCRIPTION` in this module for the arguments and returned keys.
    """
    preds = _int_array(predictions, "predictions")
    refs = _int_array(references, "references")
    if preds.shape != refs.shape:
        raise ValueError(f"predictions and references must have the same length, got {preds.size} "
                         f"predictions and {refs.size} references.")
    if refs.size == 0:
        raise ValueError("No predictions/references given: accuracy of an empty evaluation set is "
                         "undefined.")
    if few_shot_threshold < 0 or few_shot_threshold > many_shot_threshold:
        raise ValueError(f"Need 0 <= few_shot_threshold <= many_shot_threshold, got few_shot_threshold="
                         f"{few_shot_threshold} and many_shot_threshold={many_shot_threshold}.")

    train = None
    if train_class_counts is not None:
        train = np.asarray(train_class_counts, dtype=np.float64)
        if train.ndim != 1 or train.size == 0:
            raise ValueError("train_class_counts must be a non-empty 1-D list with one training count "
                             f"per class, got shape {train.shape}.")
        if not np.all(np.isfinite(train)) or np.any(train < 0) or np.any(train != np.round(train)):
            raise ValueError(f"train_class_counts must be non-negative whole numbers, got {train.tolist()}.")
        if num_classes is not None and num_classes != train.size:
            raise ValueError(f"num_classes={num_classes} but train_class_counts has {train.size} entries; "
                             "pass one training count per class.")
        num_classes = train.size
    if num_classes is None:
        num_classes = int(max(refs.max(), preds.max())) + 1
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes}.")
    num_classes = int(num_classes)
    for name, array in (("references", refs), ("predictions", preds)):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high >= num_classes:
            raise ValueError(f"{name} must lie in [0, {num_classes}), found range [{low}, {high}]. "
                             "Pass the right `num_classes` / `train_class_counts` or fix the labels.")

    count = np.bincount(refs, minlength=num_classes)
    correct = np.bincount(refs[preds == refs], minlength=num_classes)
    per_class = [float(correct[c] / count[c]) if count[c] else None for c in range(num_classes)]
    present = [c for c in range(num_classes) if count[c]]
    results: Dict[str, Any] = {
        "image_averaged_accuracy": float(np.mean(preds == refs)),
        "class_averaged_accuracy": _class_mean(per_class, present),
        "per_class_accuracy": per_class,
        "per_class_count": [int(n) for n in count],
    }

    if train is not None:
        groups = {
            "many_shot": [c for c in range(num_classes) if train[c] > many_shot_threshold],
            "medium_shot": [c for c in range(num_classes)
                            if few_shot_threshold <= train[c] <= many_shot_threshold],
            "few_shot": [c for c in range(num_classes) if train[c] < few_shot_threshold],
        }
        for group, classes in groups.items():
            results[f"{group}_accuracy"] = _class_mean(per_class, classes)
            results[f"{group}_classes"] = classes

    if major_classes is not None:
        major_ids = _int_array(list(major_classes), "major_classes")
        if major_ids.size and (major_ids.min() < 0 or major_ids.max() >= num_classes):
            raise ValueError(f"major_classes must be class ids in [0, {num_classes}), got "
                             f"{major_ids.tolist()}.")
        major = sorted(set(major_ids.tolist()))
    elif train is not None:
        median = float(np.median(train))
        major = [c for c in range(num_classes) if train[c] > median]
    else:
        major = None
    if major is not None:
        minor = [c for c in range(num_classes) if c not in set(major)]
        results["major_class_accuracy"] = _class_mean(per_class, major)
        results["minor_class_accuracy"] = _class_mean(per_class, minor)
        results["major_classes"] = major
        results["minor_classes"] = minor
    return results


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class LongTailAccuracy(evaluate.Metric):
    """`evaluate` wrapper around `compute_long_tail_accuracy` (accumulates batches, works offline)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Value("int64"),
                "references": datasets.Value("int64"),
            }),
            reference_urls=["https://arxiv.org/abs/1904.05160", "https://arxiv.org/abs/2104.01769"],
        )

    def _compute(self, predictions, references, train_class_counts=None, num_classes=None,
                 many_shot_threshold=100, few_shot_threshold=20, major_classes=None) -> Dict[str, Any]:
        return compute_long_tail_accuracy(
            predictions, references, train_class_counts=train_class_counts, num_classes=num_classes,
            many_shot_threshold=many_shot_threshold, few_shot_threshold=few_shot_threshold,
            major_classes=major_classes)
