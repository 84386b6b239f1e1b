"""What a run must carry through a checkpoint for an exact (mid-epoch) resume, as plain JSON (never pickle)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from ..metrics.per_class import PerClassAccuracy


class RunState:
    """Counters and epoch history that ``save_state`` must carry for an exact (mid-epoch) resume."""

    def __init__(self, train_accuracy: PerClassAccuracy, gradients: Any = None,
                 weakening_location: Optional[str] = None):
        self.gradients = gradients  # an optional FeatureGradientMonitor
        self.weakening_location = weakening_location  # auto resolved; None: no weakening (resume_check reads it)
        self.epoch = 0
        self.step = 0
        self.batches_in_epoch = 0
        self.history: List[Dict[str, Any]] = []
        self.train_accuracy = train_accuracy
        self.last_checkpoint: Optional[str] = None
        self.train_seconds = 0.0  # wall time inside the training loop (all epochs, checkpoint saves included)
        self.train_samples = 0

    def next_epoch(self) -> None:
        self.epoch += 1
        self.batches_in_epoch = 0
        self.train_accuracy.reset()
        if self.gradients is not None:
            self.gradients.reset()

    def state_dict(self) -> Dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "batches_in_epoch": self.batches_in_epoch,
                "history": self.history, "train_accuracy": self.train_accuracy.state_dict(),
                "last_checkpoint": self.last_checkpoint or "",
                "train_seconds": self.train_seconds, "train_samples": self.train_samples,
                "gradients": self.gradients.state_dict() if self.gradients is not None else {},
                "weakening_location": self.weakening_location}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.batches_in_epoch = int(state["batches_in_epoch"])
        self.history = list(state["history"])
        self.train_accuracy.load_state_dict(state["train_accuracy"])
        self.last_checkpoint = state["last_checkpoint"] or None
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.train_samples = int(state.get("train_samples", 0))
        if self.gradients is not None and state.get("gradients"):
            self.gradients.load_state_dict(state["gradients"])
