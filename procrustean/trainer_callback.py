"""``ProcrusteanCallback``: the recipe's epoch schedules in ``transformers.Trainer``.

The configurations that win in the long regime (docs/RESULTS.md) stop the weakening at an epoch
(``--weakening_stop_epoch``) and switch LDAM's class-balanced DRW weights on at an epoch (``--drw_epoch``).
Trainer has neither; this callback applies both at the start of every epoch, exactly as
``recipes/train.py`` does (0-based epochs: weakening on while ``epoch < weakening_stop_epoch``, DRW
weights from ``drw_epoch`` on). Both follow from the epoch alone, so a resumed Trainer run (whose
``state.epoch`` comes back from ``trainer_state.json``) gets them right without any saved state. At the start of
training it logs, as the recipe prints, what the weakening measured for the model's family: a warning where it did
not beat a re-balancing loss alone.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Optional

from torch import nn
from transformers import TrainerCallback

from .data.counts import ClassCounts
from .errors import UsageError
from .location_map import backbone_family
from .losses import ClassWeightedLoss, DeferredReweighting
from .model import ProcrusteanModel

logger = logging.getLogger(__name__)


def _check_epoch(name: str, value: Optional[int]) -> Optional[int]:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise UsageError(f"{name} must be a whole number of epochs >= 0 (0-based) or None, got {value!r}.")
    return value


def procrustean_model_of(model: nn.Module) -> ProcrusteanModel:
    """The ``ProcrusteanModel`` inside a DDP / torch.compile wrapper (what Trainer hands to callbacks may be either)."""
    inner = model
    while not isinstance(inner, ProcrusteanModel):
        unwrapped = getattr(inner, "_orig_mod", None)
        if unwrapped is None:
            unwrapped = getattr(inner, "module", None)
        if unwrapped is None:
            raise TypeError(f"ProcrusteanCallback schedules a ProcrusteanModel, got {type(model).__name__}.")
        inner = unwrapped
    return inner


class ProcrusteanCallback(TrainerCallback):
    """Stop the weakening at ``weakening_stop_epoch`` and apply DRW from ``drw_epoch`` (both 0-based, None: never).

    DRW's class-balanced weights (``drw_beta``) come from ``class_counts``, by default the model's policy's (the
    global training counts); the model's loss must be a procrustean ``ClassWeightedLoss`` (LDAM for LDAM-DRW).
    """

    def __init__(self, weakening_stop_epoch: Optional[int] = None, drw_epoch: Optional[int] = None,
                 class_counts: Optional[ClassCounts] = None, drw_beta: float = 0.9999):
        self.weakening_stop_epoch = _check_epoch("weakening_stop_epoch", weakening_stop_epoch)
        self.drw_epoch = _check_epoch("drw_epoch", drw_epoch)
        self.class_counts, self.drw_beta = class_counts, drw_beta
        self._drw: Optional[DeferredReweighting] = None
        if drw_epoch is not None and class_counts is not None:
            self._drw = DeferredReweighting(class_counts, beta=drw_beta, start_epoch=drw_epoch)

    def _drw_for(self, model: ProcrusteanModel) -> Optional[DeferredReweighting]:
        if self.drw_epoch is None or self._drw is not None:
            return self._drw
        if model.policy is None:
            raise UsageError("ProcrusteanCallback(drw_epoch=...) needs the class counts: pass class_counts=..., or "
                             "give the ProcrusteanModel a WeakeningPolicy (its counts are used).")
        self._drw = DeferredReweighting(model.policy.class_counts, beta=self.drw_beta, start_epoch=self.drw_epoch)
        return self._drw

    def apply(self, model: nn.Module, epoch: int) -> None:
        """Set the weakening switch and the loss's class weight for a 0-based ``epoch`` (what the recipe does)."""
        model = procrustean_model_of(model)
        model.weakening_enabled = self.weakening_stop_epoch is None or epoch < self.weakening_stop_epoch
        drw = self._drw_for(model)
        if drw is not None:
            if not isinstance(model.loss, ClassWeightedLoss):
                raise UsageError(f"DRW re-weights the model's loss, but {type(model.loss).__name__} takes no class "
                                 "weight: build the ProcrusteanModel with loss=LDAMLoss(counts) (LDAM-DRW) or another "
                                 "procrustean ClassWeightedLoss.")
            drw.apply(model.loss, epoch)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Optional[nn.Module] = None,
                       **kwargs: Any) -> None:
        model = procrustean_model_of(model)
        if model.policy is None or not getattr(state, "is_world_process_zero", True):
            return
        helps, summary = model.measured_outcome
        family = backbone_family(model.backbone)
        if helps:
            logger.info("Weakening at %s. Measured for %s: %s.", model.location, family, summary)
        else:
            logger.warning("Weakening at %s. Measured for %s: %s. To train with the re-balancing loss alone, build "
                           "the ProcrusteanModel without a policy.", model.location, family, summary)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, model: Optional[nn.Module] = None,
                       **kwargs: Any) -> None:
        # Trainer's state.epoch is the float progress: the epoch that starts now when fresh, a point inside it
        # after a resume mid-epoch
        self.apply(model, int(math.floor(state.epoch or 0.0)))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(weakening_stop_epoch={self.weakening_stop_epoch}, drw_epoch={self.drw_epoch}, "
                f"drw_beta={self.drw_beta})")
