"""The long-tail accuracy `evaluate` module; `long_tail_accuracy.py` is what `evaluate.load` copies."""
from .long_tail_accuracy import LongTailAccuracy, compute_long_tail_accuracy

__all__ = ["LongTailAccuracy", "compute_long_tail_accuracy"]
