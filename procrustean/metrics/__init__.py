"""Evaluation metrics for class-imbalanced classification, shipped as offline `evaluate` modules.

`evaluate.load("accuracy")` needs the Hub; these modules live in the package, so
`evaluate.load(LONG_TAIL_ACCURACY_PATH)` works offline and from an installed wheel.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .long_tail_accuracy.long_tail_accuracy import LongTailAccuracy, compute_long_tail_accuracy

if TYPE_CHECKING:
    import evaluate

#: The scalar results of the long-tail metric, with their names for people: the one list that the per-epoch logs,
#: the model card and the benchmark suite all report from.
SCALAR_METRICS = (
    ("image_averaged_accuracy", "Image-averaged accuracy (top-1)"),
    ("class_averaged_accuracy", "Class-averaged accuracy"),
    ("many_shot_accuracy", "Many-shot accuracy"),
    ("medium_shot_accuracy", "Medium-shot accuracy"),
    ("few_shot_accuracy", "Few-shot accuracy"),
    ("major_class_accuracy", "Major-class accuracy"),
    ("minor_class_accuracy", "Minor-class accuracy"),
)

#: Absolute path of the metric folder; `evaluate.load` accepts it (and the `.py` file inside it).
LONG_TAIL_ACCURACY_PATH: str = os.path.join(os.path.dirname(os.path.abspath(__file__)), "long_tail_accuracy")


def load_long_tail_accuracy(**kwargs: Any) -> "evaluate.EvaluationModule":
    """`evaluate.load` the packaged long-tail accuracy module (no network; kwargs go to `evaluate.load`).

    The result is an instance of evaluate's copy of `LongTailAccuracy` (imported from
    `$HF_HOME/modules`), not of `procrustean.metrics.LongTailAccuracy` itself.
    """
    import evaluate

    return evaluate.load(LONG_TAIL_ACCURACY_PATH, **kwargs)


__all__ = ["LONG_TAIL_ACCURACY_PATH", "LongTailAccuracy", "SCALAR_METRICS", "compute_long_tail_accuracy",
           "load_long_tail_accuracy"]
