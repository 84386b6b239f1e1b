"""``ProcrusteanModel``: any timm classifier, weakened during training at a chosen location.

Locations (``supported_locations``):

* ``input``      -- the pixels, before the backbone;
* ``stage:k``    -- the output of the k-th entry of the backbone's ``feature_info`` (a stage boundary),
                    replaced through a forward hook that returns the mixed tensor. ``stage:1`` is the
                    default (``DEFAULT_LOCATION``): best of all locations in our ablation (docs/RESULTS.md;
                    in timm's ResNets the output of the first residual stage, in ConvNeXt / EfficientNet
                    the second stage);
* ``pre_logits`` -- the pooled feature the classifier sees, i.e. ``forward_head(forward_features(x),
                    pre_logits=True)``: the input of ``get_classifier()`` is mixed by a forward
                    pre-hook. Working on the classifier's input rather than re-assembling
                    the head also covers distilled twin heads (DeiT, LeViT, EfficientFormer) and
                    convolutional classifiers (DLA);
* ``random``     -- one of the above, drawn per batch from the policy's generator.

The weakening runs only in training mode and only when labels are given; otherwise ``forward`` is the
plain backbone call, bit for bit, so evaluation, export and inference never see it. The backbone stays
a plain timm model at ``.backbone``: that is what gets saved and pushed.
"""
from __future__ import annotations

import difflib
from typing import Any, List, Optional

import torch
from torch import nn
from transformers.modeling_outputs import ImageClassifierOutput

from .losses import CrossEntropyLoss
from .policy import WeakeningPlan, WeakeningPolicy

FIXED_LOCATIONS = ("input", "pre_logits", "random")
DEFAULT_LOCATION = "stage:1"  # measured: docs/RESULTS.md, location ablation


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
                 location: str = DEFAULT_LOCATION, loss: Optional[nn.Module] = None):
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
        self._classifiers = self._classifier_modules()
        self.location = self._check_location(location)
        self.last_plan: Optional[WeakeningPlan] = None  # the most recent plan drawn (for logging and tests)
        self.last_location: Optional[str] = None

    # ----------------------------------------------------------------------------------- locations
    @property
    def supported_locations(self) -> List[str]:
        stages = [f"stage:{k}" for k in range(len(self._stage_names))]
        pre_logits = ["pre_logits"] if self._classifiers else []
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
        if location == "pre_logits" and not self._classifiers:
            why = " (it has no classifier module: build it with num_classes > 0)"
        raise ValueError(f"Weakening location {location!r} is not supported for "
                         f"{type(self.backbone).__name__}{why}; supported: {self.supported_locations}.")

    def _classifier_modules(self) -> List[nn.Module]:
        classifier = self.backbone.get_classifier()
        heads = list(classifier) if isinstance(classifier, (tuple, list)) else [classifier]
        return [h for h in heads if isinstance(h, nn.Module) and not isinstance(h, nn.Identity)]

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
            logits = self.backbone(plan.apply(pixel_values))
            self.policy.observe(logits, labels, plan)
            return logits
        if location == "pre_logits":
            modules, hook = self._classifiers, _MixingHook(plan, location, on_input=True)
            handles = [m.register_forward_pre_hook(hook) for m in modules]
        else:
            modules = [self.backbone.get_submodule(self._stage_names[int(location.split(":")[1])])]
            hook = _MixingHook(plan, location, on_input=False)
            handles = [modules[0].register_forward_hook(hook)]
        try:
            logits = self.backbone(pixel_values)
        finally:
            for handle in handles:
                handle.remove()
        if hook.calls == 0:
            raise RuntimeError(f"Weakening at {location} never happened: {type(self.backbone).__name__}'s forward does "
                               f"not call {[type(m).__name__ for m in modules]}. Choose another location among "
                               f"{self.supported_locations}.")
        self.policy.observe(logits, labels, plan)  # the progress rule's statistics (no-op for the count rules)
        return logits

    # ----------------------------------------------------------------------------------- builders
    @classmethod
    def from_timm(cls, model_name: str, policy: Optional[WeakeningPolicy] = None, location: str = "pre_logits",
                  loss: Optional[nn.Module] = None, **create_kwargs: Any) -> "ProcrusteanModel":
        """``timm.create_model(model_name, **create_kwargs)`` wrapped; unknown names fail with suggestions."""
        return cls(create_timm_model(model_name, **create_kwargs), policy, location, loss)


class _MixingHook:
    """Mixes a module's output (forward hook) or first input (forward pre-hook) with one plan, once per
    module and forward (a module called twice, e.g. a shared block, is weakened at its first call)."""

    def __init__(self, plan: WeakeningPlan, location: str, on_input: bool):
        self.plan, self.location, self.on_input = plan, location, on_input
        self.calls, self._done = 0, set()

    def _mix(self, module: nn.Module, tensor: Any) -> Any:
        if not torch.is_tensor(tensor):
            raise TypeError(f"Cannot weaken at {self.location}: {type(module).__name__} "
                            f"{'takes' if self.on_input else 'returns'} {type(tensor).__name__}, not a tensor. "
                            "Choose another location.")
        return self.plan.apply(tensor)

    def __call__(self, module: nn.Module, args: Any, output: Any = None) -> Any:
        self.calls += 1
        if id(module) in self._done:
            return None
        self._done.add(id(module))
        if self.on_input:
            return (self._mix(module, args[0]),) + tuple(args[1:])
        return self._mix(module, output)


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
