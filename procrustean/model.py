"""``ProcrusteanModel``: any timm classifier, weakened during training at a chosen location.

Locations (``supported_locations``):

* ``input``      -- the pixels, before the backbone;
* ``stage:k``    -- the output of the k-th entry of the backbone's ``feature_info`` (a stage boundary),
                    replaced through a forward hook that returns the mixed tensor;
* ``pre_logits`` -- the pooled feature the classifier sees: ``forward_features`` ->
                    ``forward_head(pre_logits=True)`` -> weaken -> ``get_classifier()`` (default);
* ``random``     -- one of the above, drawn per batch from the policy's generator.

The weakening runs only in training mode and only when labels are given; otherwise ``forward`` is the
plain backbone call, bit for bit, so evaluation, export and inference never see it. The backbone stays
a plain timm model at ``.backbone``: that is what gets saved and pushed.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, List, Optional

import torch
from torch import nn
from transformers.modeling_outputs import ImageClassifierOutput

from .losses import CrossEntropyLoss
from .policy import WeakeningPlan, WeakeningPolicy

FIXED_LOCATIONS = ("input", "pre_logits", "random")


def _unwrap_backbone(backbone: nn.Module) -> nn.Module:
    """Accept a plain timm model or transformers' TimmWrapperForImageClassification (its ``timm_model``)."""
    inner = getattr(backbone, "timm_model", None)
    return inner if isinstance(inner, nn.Module) else backbone


def _stage_modules(backbone: nn.Module) -> List[str]:
    """Module names of the backbone's stage boundaries, from timm's ``feature_info``."""
    info = getattr(backbone, "feature_info", None)
    if info is None:
        return []
    if hasattr(info, "module_name"):  # a timm FeatureInfo object (features_only models)
        return [info.module_name(i) for i in range(len(info))]
    return [entry["module"] for entry in info if isinstance(entry, dict) and "module" in entry]


class ProcrusteanModel(nn.Module):
    """Wrap a timm model so that training weakens major-class features; returns ``ImageClassifierOutput``.

    ``forward(pixel_values, labels=None)`` gives ``.logits`` and, with labels, ``.loss`` from ``loss``
    (any ``(logits, labels) -> scalar`` module; cross-entropy by default), so ``transformers.Trainer``
    and Accelerate loops can train it directly.
    """

    def __init__(self, backbone: nn.Module, policy: Optional[WeakeningPolicy] = None,
                 location: str = "pre_logits", loss: Optional[nn.Module] = None):
        super().__init__()
        self.backbone = _unwrap_backbone(backbone)
        for method in ("forward_features", "forward_head", "get_classifier"):
            if not callable(getattr(self.backbone, method, None)):
                raise TypeError(f"{type(self.backbone).__name__} lacks `{method}`: ProcrusteanModel wraps timm "
                                "classification models (timm.create_model(...)) or transformers' "
                                "TimmWrapperForImageClassification.")
        self.policy = policy
        self.loss = loss if loss is not None else CrossEntropyLoss()
        self.weakening_enabled = True
        self._stage_names = _stage_modules(self.backbone)
        classifier = self.backbone.get_classifier()
        self._has_single_classifier = isinstance(classifier, nn.Module)
        self.location = self._check_location(location)
        self.last_plan: Optional[WeakeningPlan] = None  # the most recent plan drawn (for logging and tests)
        self.last_location: Optional[str] = None

    # ----------------------------------------------------------------------------------- locations
    @property
    def supported_locations(self) -> List[str]:
        stages = [f"stage:{k}" for k in range(len(self._stage_names))]
        pre_logits = ["pre_logits"] if self._has_single_classifier else []
        return ["input"] + stages + pre_logits + ["random"]

    def _check_location(self, location: str) -> str:
        location = str(location).strip()
        if location.startswith("stage:"):
            try:
                k = int(location.split(":", 1)[1])
            except ValueError:
                k = None
            if k is not None and -len(self._stage_names) <= k < len(self._stage_names):
                return f"stage:{k % len(self._stage_names)}"
        elif location in self.supported_locations:
            return location
        why = ""
        if location == "pre_logits" and not self._has_single_classifier:
            why = " (its classifier is not a single module, e.g. distilled heads)"
        raise ValueError(f"Weakening location {location!r} is not supported for "
                         f"{type(self.backbone).__name__}{why}; supported: {self.supported_locations}.")

    def _concrete_locations(self) -> List[str]:
        return [loc for loc in self.supported_locations if loc != "random"]

    # ----------------------------------------------------------------------------------- forward
    @property
    def num_classes(self) -> int:
        return int(getattr(self.backbone, "num_classes"))

    def weakening_active(self, labels: Optional[torch.Tensor]) -> bool:
        return self.training and labels is not None and self.policy is not None and self.weakening_enabled

    def forward(self, pixel_values: torch.Tensor, labels: Optional[torch.Tensor] = None) -> ImageClassifierOutput:
        if self.weakening_active(labels):
            logits = self._weakened_forward(pixel_values, labels)
        else:
            logits = self.backbone(pixel_values)
        loss = self.loss(logits, labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)

    def _weakened_forward(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        plan = self.policy.plan(labels)
        location = self.location
        if location == "random":
            choices = self._concrete_locations()
            location = choices[int(torch.randint(len(choices), (1,), generator=self.policy.generator))]
        self.last_plan, self.last_location = plan, location
        if location == "input":
            return self.backbone(plan.apply(pixel_values))
        if location == "pre_logits":
            features = self.backbone.forward_features(pixel_values)
            pooled = self.backbone.forward_head(features, pre_logits=True)
            return self.backbone.get_classifier()(plan.apply(pooled))
        stage = self.backbone.get_submodule(self._stage_names[int(location.split(":")[1])])
        handle = stage.register_forward_hook(_mixing_hook(plan, location))
        try:
            return self.backbone(pixel_values)
        finally:
            handle.remove()

    # ----------------------------------------------------------------------------------- builders
    @classmethod
    def from_timm(cls, model_name: str, policy: Optional[WeakeningPolicy] = None, location: str = "pre_logits",
                  loss: Optional[nn.Module] = None, **create_kwargs: Any) -> "ProcrusteanModel":
        """``timm.create_model(model_name, **create_kwargs)`` wrapped; unknown names fail with suggestions."""
        return cls(create_timm_model(model_name, **create_kwargs), policy, location, loss)


def _mixing_hook(plan: WeakeningPlan, location: str) -> Callable:
    calls = {"n": 0}

    def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 1:  # a module reused within one forward is weakened once, at its first call
            return output
        if not torch.is_tensor(output):
            raise TypeError(f"Cannot weaken at {location}: {type(module).__name__} returns {type(output).__name__}, "
                            "not a tensor. Choose another location.")
        return plan.apply(output)

    return hook


def check_timm_model_name(model_name: str) -> None:
    """Refuse unknown timm architectures early, with the closest names (hf-hub: and local-dir: pass through)."""
    import timm

    from . import models  # noqa: F401  (registers the CIFAR ResNets)

    if not model_name.startswith(("hf-hub:", "local-dir:")) and not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown timm model {model_name!r}.{hint} See `timm.list_models('*pattern*')`, "
                         "or use 'hf-hub:<repo>' / 'local-dir:<path>'.")


def create_timm_model(model_name: str, **create_kwargs: Any) -> nn.Module:
    """``timm.create_model`` with a clear error for unknown architectures."""
    import timm

    check_timm_model_name(model_name)
    return timm.create_model(model_name, **create_kwargs)
