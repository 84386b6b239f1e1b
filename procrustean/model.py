"""``ProcrusteanModel``: any timm classifier, weakened during training at a chosen location.

Locations (``supported_locations``):

* ``input``      -- the pixels, before the backbone;
* ``stage:k``    -- the output of the k-th entry of the backbone's ``feature_info`` (a stage boundary),
                    replaced through a forward hook that returns the mixed tensor (in timm's ResNets
                    ``stage:1`` is the output of the first residual stage, in ConvNeXt the second stage);
* ``pre_logits`` -- the pooled feature the classifier sees, i.e. ``forward_head(forward_features(x),
                    pre_logits=True)``: the input of ``get_classifier()`` is mixed by a forward
                    pre-hook. Working on the classifier's input rather than re-assembling
                    the head also covers distilled twin heads (DeiT, LeViT, EfficientFormer) and
                    convolutional classifiers (DLA);
* ``random``     -- one of the above, drawn per batch from the policy's generator;
* ``auto``       -- the default (``DEFAULT_LOCATION``): the location measured for the backbone's family,
                    from scratch or, with ``fine_tuning=True`` (a pretrained backbone), in fine-tuning
                    (``procrustean/location_map.py``), resolved when the model is built; ``.location``
                    then holds the concrete location and ``.location_evidence`` why.

The weakening runs only in training mode and only when labels are given; otherwise ``forward`` is the
plain backbone call, bit for bit, so evaluation, export and inference never see it. The backbone stays
a plain timm model at ``.backbone``: that is what gets saved and pushed.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional

import torch
from torch import nn
from transformers.modeling_outputs import ImageClassifierOutput

from .losses import CrossEntropyLoss
from .location_map import MeasuredOutcome, auto_location, classifier_modules, feature_info_values, measured_outcome
from .models.factory import create_timm_model, inner_timm_model
from .policy import WeakeningDraws, WeakeningPlan, WeakeningPolicy
from .errors import UsageError

FIXED_LOCATIONS = ("input", "pre_logits", "random", "auto")
DEFAULT_LOCATION = "auto"  # the measured location of the backbone's family (procrustean/location_map.py)


def check_location_name(location: str) -> str:
    """The spelling of a location (``input``, ``stage:K``, ``pre_logits``, ``random``, ``auto``), before any model
    exists."""
    location = str(location).strip()
    stage = location.startswith("stage:") and location[6:].lstrip("-").isdigit()
    if location not in FIXED_LOCATIONS and not stage:
        raise UsageError(f"Weakening location {location!r}: use auto (the location measured for the backbone's "
                         "family), input, stage:K (an index into the backbone's feature_info), pre_logits or random.")
    return location


def _unwrap_backbone(backbone: nn.Module) -> nn.Module:
    """The timm model to weaken: a plain timm model, transformers' TimmWrapper (its ``timm_model``), or the
    original module of a ``torch.compile``d one (forward hooks need the eager modules)."""
    inner = inner_timm_model(backbone)
    if inner is not backbone and hasattr(backbone, "_orig_mod"):
        warnings.warn("ProcrusteanModel weakens through forward hooks on the backbone's own modules, so it uses the "
                      "original module of the compiled backbone. Compile the ProcrusteanModel instead "
                      "(torch.compile(model)).", stacklevel=3)
    return inner


def _stage_modules(backbone: nn.Module) -> List[str]:
    """Module names of the backbone's stage boundaries, from timm's ``feature_info``."""
    return feature_info_values(backbone, "module")


class ProcrusteanModel(nn.Module):
    """Wrap a timm model so that training weakens major-class features; returns ``ImageClassifierOutput``.

    ``forward(pixel_values, labels=None)`` gives ``.logits`` and, with labels, ``.loss`` from ``loss``
    (any ``(logits, labels) -> scalar`` module; cross-entropy by default), so ``transformers.Trainer``
    and Accelerate loops can train it directly. ``fine_tuning=True`` says the backbone starts from pretrained
    weights: ``auto`` then resolves to the location measured in fine-tuning, which can differ from scratch's.
    """

    def __init__(self, backbone: nn.Module, policy: Optional[WeakeningPolicy] = None,
                 location: str = DEFAULT_LOCATION, loss: Optional[nn.Module] = None, fine_tuning: bool = False):
        super().__init__()
        self.fine_tuning = fine_tuning
        self.backbone = _unwrap_backbone(backbone)
        for method in ("forward_features", "forward_head", "get_classifier"):
            if not callable(getattr(self.backbone, method, None)):
                raise TypeError(f"{type(self.backbone).__name__} lacks `{method}`: ProcrusteanModel wraps timm "
                                "classification models (timm.create_model(...)) or transformers' "
                                "TimmWrapperForImageClassification.")
        if policy is not None and policy.num_classes != self.num_classes:
            raise UsageError(f"The weakening policy has {policy.num_classes} classes but the backbone "
                             f"{type(self.backbone).__name__} has {self.num_classes} outputs; build both from the same "
                             "training split (WeakeningPolicy.from_dataset and num_classes=...).")
        self.policy = policy
        # the progress rule's statistics are buffers of the model: they follow it to its device and into its
        # state_dict, so accelerate's and Trainer's checkpoints resume them
        self.progress = policy.progress if policy is not None else None
        self.loss = loss if loss is not None else CrossEntropyLoss()
        self.weakening_enabled = True
        self._stage_names = _stage_modules(self.backbone)
        self._classifiers = classifier_modules(self.backbone)
        # the generator that draws plans when no collator draws are given: its state is in the model's state_dict,
        # so any checkpoint of the model (accelerate's, Trainer's) resumes its draws exactly
        self.generator_state = _GeneratorState(policy.generator) if policy is not None else None
        self._warned_generator_under_compile = False
        self._mixing = _MixingState()
        self._hooks: Optional[Dict[str, List[_MixingHook]]] = None
        self.location = location
        if policy is not None:
            self._mixing_hooks()

    # ----------------------------------------------------------------------------------- locations
    @property
    def supported_locations(self) -> List[str]:
        stages = [f"stage:{k}" for k in range(len(self._stage_names))]
        pre_logits = ["pre_logits"] if self._classifiers else []
        return ["input"] + stages + pre_logits + ["random"]

    @property
    def location(self) -> str:
        """Where the features are weakened (checked on assignment against ``supported_locations``)."""
        return self._location

    @location.setter
    def location(self, location: str) -> None:
        self.location_evidence = "given"
        if check_location_name(location) == "auto":
            location, self.location_evidence = auto_location(self.backbone, fine_tuning=self.fine_tuning)
        self._location = self._check_location(location)

    @property
    def measured_outcome(self) -> MeasuredOutcome:
        """Whether, for this backbone's family (from scratch, or fine-tuned with ``fine_tuning``), the weakening on top
        of a re-balancing loss beat the loss alone on fresh seeds, with the numbers (``procrustean/location_map.py``)."""
        return measured_outcome(self.backbone, fine_tuning=self.fine_tuning)

    def _check_location(self, location: str) -> str:
        location = check_location_name(location)
        if location.startswith("stage:"):
            k = int(location.split(":", 1)[1])
            if -len(self._stage_names) <= k < len(self._stage_names):
                return f"stage:{k % len(self._stage_names)}"
        elif location in self.supported_locations:
            return location
        why = ""
        if location == "pre_logits" and not self._classifiers:
            why = " (it has no classifier module: build it with num_classes > 0)"
        raise UsageError(f"Weakening location {location!r} is not supported for "
                         f"{type(self.backbone).__name__}{why}; supported: {self.supported_locations}.")

    def _concrete_locations(self) -> List[str]:
        return [loc for loc in self.supported_locations if loc != "random"]

    # ----------------------------------------------------------------------------------- forward
    @property
    def num_classes(self) -> int:
        return int(getattr(self.backbone, "num_classes"))

    def weakening_active(self, labels: Optional[torch.Tensor]) -> bool:
        return self.training and labels is not None and self.policy is not None and self.weakening_enabled

    def forward(self, pixel_values: torch.Tensor, labels: Optional[torch.Tensor] = None,
                weakening_draws: Optional[WeakeningDraws] = None) -> ImageClassifierOutput:
        """Logits (and the loss, with labels). In training mode with labels, the features are weakened
        with ``weakening_draws`` (from ``ProcrusteanCollator``), else with draws from the policy's generator."""
        if self.weakening_active(labels):
            logits = self._weakened_forward(pixel_values, labels, weakening_draws)
        else:
            logits = self.backbone(pixel_values)
        loss = self.loss(logits, labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)

    def _weakened_forward(self, pixel_values: torch.Tensor, labels: torch.Tensor,
                          draws: Optional[WeakeningDraws]) -> torch.Tensor:
        if draws is None:
            draws = self._draw_from_generator(labels, torch.compiler.is_compiling())
        plan = self.policy.resolve(draws, labels)
        location = self.location
        if location == "random" and torch.compiler.is_compiling():
            logits = self._random_forward_traced(pixel_values, plan, draws.location)
            self.policy.observe(logits, labels, plan)
            return logits
        if location == "random":
            choices = self._concrete_locations()
            location = choices[min(int(draws.location * len(choices)), len(choices) - 1)]
        if location == "input":
            logits = self.backbone(plan.apply(pixel_values))
        else:
            logits = self._forward_with_hook(pixel_values, plan, location)
        self.policy.observe(logits, labels, plan)  # the progress rule's statistics (no-op for the count rule)
        return logits

    @torch.compiler.disable
    def _draw_from_generator(self, labels: torch.Tensor, compiling: bool) -> WeakeningDraws:
        """Draws from the policy's generator (no collator draws given): a CPU generator, so under torch.compile
        this is the one graph break of the forward; its state is saved with the model (``generator_state``)."""
        if compiling and not self._warned_generator_under_compile:
            self._warned_generator_under_compile = True
            warnings.warn("ProcrusteanModel draws its weakening plans from the policy's generator because no "
                          "weakening_draws were given: under torch.compile that draw breaks the graph once per "
                          "forward. Pass ProcrusteanCollator(policy) as the collate_fn / data_collator to draw them "
                          "with the batch instead.", stacklevel=2)
        return self.policy.draw(labels)

    def _forward_with_hook(self, pixel_values: torch.Tensor, plan: WeakeningPlan, location: str) -> torch.Tensor:
        """The backbone's forward with ``plan`` published to the hooks of ``location`` (registered once, so that
        ``torch.compile`` traces them as part of the graph instead of breaking it at a per-forward registration)."""
        hooks = self._mixing_hooks()[location]
        for hook in hooks:
            hook.fired = False
        self._mixing.plan, self._mixing.location = plan, location
        try:
            logits = self.backbone(pixel_values)
        finally:
            self._mixing.plan = self._mixing.location = None
        if not any(hook.fired for hook in hooks):
            raise UsageError(f"Weakening at {location} never happened: {type(self.backbone).__name__}'s forward does "
                             f"not call {[type(h.module).__name__ for h in hooks]}. Choose another location among "
                             f"{self.supported_locations}.")
        return logits

    def _random_forward_traced(self, pixel_values: torch.Tensor, plan: WeakeningPlan, draw: float) -> torch.Tensor:
        """``random`` under torch.compile: the location drawn is a tensor, and every location mixes and keeps the
        mix only where it was drawn (``torch.where``). Choosing it in Python would compile one graph per location
        and recompile on revisits, up to Dynamo's limit; this is one graph, with the same values as eager, at the
        price of a mix at every location."""
        choices = self._concrete_locations()
        chosen = (torch.full((), draw, dtype=torch.float64, device=pixel_values.device) * len(choices)).floor()
        chosen = chosen.clamp_max(len(choices) - 1)
        pixel_values = torch.where(chosen == choices.index("input"), plan.apply(pixel_values), pixel_values)
        hooks = self._mixing_hooks()
        for location_hooks in hooks.values():
            for hook in location_hooks:
                hook.fired = False
        self._mixing.plan, self._mixing.location, self._mixing.chosen = plan, "random", chosen
        self._mixing.index = {location: choices.index(location) for location in hooks}
        try:
            return self.backbone(pixel_values)
        finally:
            self._mixing.plan = self._mixing.location = self._mixing.chosen = None

    def _mixing_hooks(self) -> Dict[str, List["_MixingHook"]]:
        """One hook per stage boundary and classifier, registered at the first weakened forward and kept: each
        mixes only while a forward publishes a plan for its location, and is a no-op otherwise."""
        if self._hooks is None:
            hooks: Dict[str, List[_MixingHook]] = {}
            for k, name in enumerate(self._stage_names):
                module = self.backbone.get_submodule(name)
                hooks[f"stage:{k}"] = [_MixingHook(self._mixing, module, f"stage:{k}", on_input=False)]
            hooks["pre_logits"] = [_MixingHook(self._mixing, m, "pre_logits", on_input=True) for m in self._classifiers]
            for location_hooks in hooks.values():
                for hook in location_hooks:
                    if hook.on_input:
                        hook.module.register_forward_pre_hook(hook)
                    else:
                        hook.module.register_forward_hook(hook)
            self._hooks = hooks
        return self._hooks

    # ----------------------------------------------------------------------------------- builders
    @classmethod
    def from_timm(cls, model_name: str, policy: Optional[WeakeningPolicy] = None, location: str = DEFAULT_LOCATION,
                  loss: Optional[nn.Module] = None, **create_kwargs: Any) -> "ProcrusteanModel":
        """``timm.create_model(model_name, **create_kwargs)`` wrapped; unknown names fail with suggestions. With
        ``pretrained=True`` it is fine-tuning, and ``auto`` resolves to the fine-tuning location."""
        return cls(create_timm_model(model_name, **create_kwargs), policy, location, loss,
                   fine_tuning=bool(create_kwargs.get("pretrained", False)))


class _GeneratorState(nn.Module):
    """A CPU ``torch.Generator`` as an entry of the state_dict (``generator_state.state``, uint8): read at save,
    restored at load. A checkpoint without it (written before it existed) leaves the generator as it is."""

    def __init__(self, generator: torch.Generator):
        super().__init__()
        self.generator = generator

    def _save_to_state_dict(self, destination: Dict[str, Any], prefix: str, keep_vars: bool) -> None:
        destination[prefix + "state"] = self.generator.get_state()

    def _load_from_state_dict(self, state_dict: Dict[str, Any], prefix: str, local_metadata: Any, strict: bool,
                              missing_keys: List[str], unexpected_keys: List[str], error_msgs: List[str]) -> None:
        state = state_dict.get(prefix + "state")
        if state is not None:
            self.generator.set_state(state.detach().to("cpu", torch.uint8).contiguous())


class _MixingState:
    """The plan of the weakened forward in progress and its location, read by the hooks (None between forwards)."""

    def __init__(self) -> None:
        self.plan: Optional[WeakeningPlan] = None
        self.location: Optional[str] = None
        self.chosen: Optional[torch.Tensor] = None  # location "random" under torch.compile: the index drawn
        self.index: Dict[str, int] = {}  # ... and each location's index


class _MixingHook:
    """Mixes a module's output (forward hook) or first input (forward pre-hook) with the published plan when
    the forward in progress weakens at this hook's location; once per forward (a module called twice, e.g. a
    shared block, is weakened at its first call)."""

    def __init__(self, state: _MixingState, module: nn.Module, location: str, on_input: bool):
        self.state, self.module, self.location, self.on_input = state, module, location, on_input
        self.fired = False

    def _mix(self, module: nn.Module, tensor: Any, plan: WeakeningPlan) -> Any:
        if not torch.is_tensor(tensor):
            raise TypeError(f"Cannot weaken at {self.location}: {type(module).__name__} "
                            f"{'takes' if self.on_input else 'returns'} {type(tensor).__name__}, not a tensor. "
                            "Choose another location.")
        return plan.apply(tensor)

    def __call__(self, module: nn.Module, args: Any, output: Any = None) -> Any:
        plan, state = self.state.plan, self.state
        if plan is None or self.fired or state.location not in (self.location, "random"):
            return None
        self.fired = True
        tensor = args[0] if self.on_input else output
        mixed = self._mix(module, tensor, plan)
        if state.location == "random":  # traced: keep the mix where this location was drawn
            mixed = torch.where(state.chosen == state.index[self.location], mixed, tensor)
        return (mixed,) + tuple(args[1:]) if self.on_input else mixed
