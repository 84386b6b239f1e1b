"""Where to weaken a given backbone: the measured map behind ``location="auto"`` (the default).

Which location helps depends on the architecture, so ``auto`` looks the backbone's family (its timm class) up in
``MEASURED_LOCATIONS``; every entry names the RESULTS table that chose it. A family we have not measured gets
``FALLBACK_LOCATION``, the rule measured so far, and says so. The map only grows with measurements
(``benchmarks/configs/families_e40.yaml``, location ablation per family; docs/RESULTS.md, "Families and
fine-tuning").
"""
from __future__ import annotations

from typing import Dict, NamedTuple

from torch import nn


class MeasuredLocation(NamedTuple):
    location: str
    evidence: str  # the table, in docs/RESULTS.md, that chose it


MEASURED_LOCATIONS: Dict[str, MeasuredLocation] = {
    # ResNet-8, Fashion-MNIST-LT step-100, 40 epochs, seeds 0-2: stage:1 +4.5 pp over CE, best of 6 locations
    "CifarResNet": MeasuredLocation("stage:1", "docs/RESULTS.md, 'Ablations, step100' (CIFAR ResNet-8)"),
    # convnext_atto from scratch, Fashion-MNIST-LT step-100 at 32 px, 40 epochs, seeds 0-2: stage:1 +2.3 pp over CE
    # (3/3), best of 6 locations; stage:0 +1.9, the later stages, the pixels and pre_logits within noise
    "ConvNeXt": MeasuredLocation("stage:1", "docs/RESULTS.md, 'Families and fine-tuning', 'Ablations, "
                                            "step100_convnext' (ConvNeXt-atto from scratch, selection seeds 0-2)"),
    # mobilenetv3_small_050 from scratch, the same protocol: stage:0 (the stem's output, 16 channels at stride 2)
    # +5.4 pp over CE (3/3, [+1.9, +8.9]), best of 7 locations; stage:3 +4.8 (3/3); CE's spread is large (± 4.9)
    "MobileNetV3": MeasuredLocation("stage:0", "docs/RESULTS.md, 'Families and fine-tuning', 'Ablations, "
                                               "step100_mobilenetv3' (MobileNetV3-small-0.5 from scratch, selection "
                                               "seeds 0-2)"),
    # regnetx_002 from scratch, the same protocol: stage:0 (the stem's output, 32 channels at stride 2) +2.2 pp over CE
    # (3/3, [+1.5, +3.2]), best of 7 locations; stage:3 +2.1 and stage:1 +1.7 (3/3 each)
    "RegNet": MeasuredLocation("stage:0", "docs/RESULTS.md, 'Families and fine-tuning', 'Ablations, step100_regnet' "
                                          "(RegNetX-200MF from scratch, selection seeds 0-2)"),
}

FALLBACK_LOCATION = MeasuredLocation(
    "stage:1", "the second stage boundary of timm's feature_info, the rule measured on the CIFAR ResNet "
               "(docs/RESULTS.md, 'Ablations, step100'); this family has no location ablation of its own yet")


def backbone_family(backbone: nn.Module) -> str:
    """The family a location was measured for: the timm model's class (``ConvNeXt``, ``VisionTransformer``, ...)."""
    return type(backbone).__name__


def auto_location(backbone: nn.Module) -> MeasuredLocation:
    """The measured location for ``backbone``'s family, else the documented fallback."""
    return MEASURED_LOCATIONS.get(backbone_family(backbone), FALLBACK_LOCATION)
