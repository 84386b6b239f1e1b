"""Per-class feature-gradient norms: the paper's second symptom, measured during training.

The paper (abstract) reports that, while fixing its early mistakes on minor classes, a network
produces "much larger gradients for features of minor classes". We log, per class and epoch, the
mean L2 norm of the per-sample loss gradient with respect to the feature the classifier sees
(the pre-logit vector; after weakening when weakening is on). The batch loss is a mean, so its
gradient is rescaled by the batch size (and accumulation steps) to the per-sample gradient.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
from torch import nn


class FeatureGradientMonitor:
    """Hook the classifier's input; after each backward, ``update(labels)`` accumulates per-class norms."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        classifier = backbone.get_classifier()
        if not isinstance(classifier, nn.Module):
            raise ValueError("Feature-gradient logging needs a single classifier module.")
        self.num_classes = num_classes
        self.norm_sum = torch.zeros(num_classes, dtype=torch.float64)
        self.count = torch.zeros(num_classes, dtype=torch.long)
        self._feature: Optional[torch.Tensor] = None
        self._handle = classifier.register_forward_pre_hook(self._capture)

    def _capture(self, module: nn.Module, args: Any) -> None:
        feature = args[0]
        if torch.is_grad_enabled() and feature.requires_grad:
            feature.retain_grad()
            self._feature = feature
        else:
            self._feature = None

    @torch.no_grad()
    def update(self, labels: torch.Tensor, loss_scale: float) -> None:
        """``loss_scale``: the factor from the batch loss to a sum of per-sample losses (batch size x accumulation)."""
        feature, self._feature = self._feature, None
        if feature is None or feature.grad is None:
            return
        norms = feature.grad.flatten(1).float().norm(dim=1).double() * loss_scale
        if self.norm_sum.device != labels.device:
            self.norm_sum, self.count = self.norm_sum.to(labels.device), self.count.to(labels.device)
        self.norm_sum.index_add_(0, labels, norms)
        self.count += torch.bincount(labels, minlength=self.num_classes)

    def compute(self, accelerator: Any = None) -> List[Optional[float]]:
        norm_sum, count = self.norm_sum, self.count
        if accelerator is not None and accelerator.num_processes > 1:
            norm_sum, count = accelerator.reduce(norm_sum.clone(), "sum"), accelerator.reduce(count.clone(), "sum")
        return [(s / c) if c > 0 else None for s, c in zip(norm_sum.cpu().tolist(), count.cpu().tolist())]

    def reset(self) -> None:
        self.norm_sum.zero_()
        self.count.zero_()

    def state_dict(self) -> Dict[str, Any]:
        """Plain lists (JSON; float64 values round-trip exactly)."""
        return {"norm_sum": self.norm_sum.cpu().tolist(), "count": self.count.cpu().tolist()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.norm_sum = torch.as_tensor(state["norm_sum"], dtype=torch.float64, device=self.norm_sum.device)
        self.count = torch.as_tensor(state["count"], dtype=torch.long, device=self.count.device)

    def remove(self) -> None:
        self._handle.remove()
