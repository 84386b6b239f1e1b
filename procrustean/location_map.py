"""Where to weaken a given backbone, and what the weakening measured there: the map behind ``location="auto"``.

Which location helps depends on the architecture and on whether the backbone starts from pretrained weights, so
``auto`` looks the backbone's family (its timm class) up in ``MEASURED_LOCATIONS`` (trained from scratch) or
``MEASURED_FINE_TUNING_LOCATIONS`` (fine-tuned); every entry names the RESULTS table that chose it. A family we have
not measured gets the rule measured across the families that were, and says so. The maps only grow with
measurements (``benchmarks/configs/families_e40.yaml`` and ``finetune_digits.yaml``, a location ablation per family;
docs/RESULTS.md, "Families and fine-tuning"). ``measured_outcome`` says, per family and setting, whether the weakening
on top of a re-balancing loss beat that loss alone on fresh seeds: the recipe prints it at start-up, so a user whose
family's row says "no" learns it before training, not after.
"""
from __future__ import annotations

from typing import Any, Dict, List, NamedTuple

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
    # the 32-px ViT (vit_tiny_patch16_224 resized: depth 4, width 96) from scratch, the same protocol: the pixels,
    # +0.9 pp over CE (3/3, [+0.2, +1.7]), the only location that helps; after every block it hurts, the more the
    # deeper (-0.8, -2.2, -2.9, -3.8), pre_logits -1.4
    "VisionTransformer": MeasuredLocation("input", "docs/RESULTS.md, 'Families and fine-tuning', 'Ablations, "
                                                   "step100_vit' (a 4-block ViT from scratch, selection seeds 0-2)"),
}

# Fine-tuning: a backbone pretrained on a balanced source (benchmarks/pretrain_source.py), fine-tuned with a new head on
# OpenCV's digits made long-tailed (step-100: 5 x 400 + 5 x 4 images), 30 epochs, benchmarks/configs/finetune_digits.yaml
MEASURED_FINE_TUNING_LOCATIONS: Dict[str, MeasuredLocation] = {
    # mobilenetv3_small_050 fine-tuned, seeds 0-2: stage:3 (24 channels at stride 16, the last boundary but one)
    # +4.1 pp over CE (3/3, [+3.2, +5.0]), best of 7 locations; every boundary inside the network helped, the deeper
    # the more (stage:0 +1.0 ... stage:3), the pixels hurt (-1.7). From scratch it was stage:0.
    "MobileNetV3": MeasuredLocation("stage:3", "docs/RESULTS.md, 'Families and fine-tuning', 'Fine-tuning, seeds "
                                               "0-2' (MobileNetV3-small-0.5 fine-tuned, selection seeds 0-2)"),
    # convnext_atto fine-tuned, the same protocol: pre_logits (the pooled, normalised 320-d feature) +2.1 pp over CE
    # (3/3, [+2.0, +2.2]), the only location that helps; stage:3 -1.2, stage:2 -1.7, stage:1 -3.7, stage:0 -6.2, the
    # pixels -3.7 (0/3 each). From scratch it was stage:1.
    "ConvNeXt": MeasuredLocation("pre_logits", "docs/RESULTS.md, 'Families and fine-tuning', 'Fine-tuning, seeds "
                                               "0-2' (ConvNeXt-atto fine-tuned, selection seeds 0-2)"),
}

# The rule for a fine-tuned family never measured in fine-tuning: the classifier's input, the one location that
# improved on CE in both families fine-tuned (MobileNetV3 +2.5, ConvNeXt +2.1, 3/3 seeds each), where the early
# locations helped least (MobileNetV3: stage:0 +1.0) or hurt (ConvNeXt: stage:0 -6.2; both: the pixels).
FINE_TUNING_FALLBACK_LOCATION = MeasuredLocation(
    "pre_logits", "the rule for fine-tuned backbones without a fine-tuning location ablation of their own: the "
                  "classifier's input, better than CE in both families fine-tuned (docs/RESULTS.md, 'Families and "
                  "fine-tuning')")

# The rule for a family never measured, from the families that were (docs/RESULTS.md, 'Families and fine-tuning'):
# in every hierarchical network (stages that downsample: the CIFAR ResNet, ConvNeXt, MobileNetV3, RegNet) the second
# stage boundary improved on CE (+4.5, +2.3, +1.3, +1.7 pp); in the isotropic ViT (every block at one resolution)
# every block hurt and only the pixels helped.
FALLBACK_LOCATION = MeasuredLocation(
    "stage:1", "the rule for hierarchical backbones without a location ablation of their own: the second stage "
               "boundary of timm's feature_info, better than CE in all four such families measured "
               "(docs/RESULTS.md, 'Families and fine-tuning')")
ISOTROPIC_FALLBACK_LOCATION = MeasuredLocation(
    "input", "the rule for isotropic backbones (every feature_info entry at one reduction, as a ViT's blocks) without "
             "a location ablation of their own: the pixels, the only location that helped the ViT measured "
             "(docs/RESULTS.md, 'Families and fine-tuning')")


class MeasuredOutcome(NamedTuple):
    # the weakening on top of a re-balancing loss met the success bar over the loss alone in a measured regime (issue 9:
    # +1.0 pp on average, ahead on 4 of 5 fresh seeds, paired bootstrap interval above 0)
    helps: bool
    summary: str  # the numbers, and the docs/RESULTS.md row they come from


# Trained from scratch: the best Procrustean cell minus the best re-balancer alone on fresh seeds (at 200 epochs, where
# nothing was chosen: the pre-registered pair, progress rule + LDAM-DRW minus LDAM-DRW) (docs/RESULTS.md, "In short" and
# "Families and fine-tuning").
MEASURED_OUTCOMES: Dict[str, MeasuredOutcome] = {
    "CifarResNet": MeasuredOutcome(True, "from scratch, 200 epochs, on top of LDAM-DRW: +1.9 pp (step-100, 4/5 fresh "
                                         "seeds) and +3.6 (exp-100, 5/5); in 40 epochs level with logit adjustment "
                                         "alone (+0.1, -0.3) (docs/RESULTS.md, 'In short')"),
    "ConvNeXt": MeasuredOutcome(False, "from scratch, 40 epochs: below the re-balancer alone, -0.7 pp (step-100, 1/5 "
                                       "fresh seeds) and -1.1 (exp-100, 1/5); 200 epochs, on top of LDAM-DRW: +1.4 ± "
                                       "2.1 (4/5 seeds, interval [-0.2, +3.0]; minor classes +4.6, 5/5), just short "
                                       "of the bar the CIFAR ResNet met (+1.9, [+0.1, +3.6]) (docs/RESULTS.md, "
                                       "'Families and fine-tuning')"),
    "MobileNetV3": MeasuredOutcome(False, "from scratch, 40 epochs: below the re-balancer alone, -1.6 pp (step-100, "
                                          "3/5 fresh seeds) and -3.3 (exp-100, 2/5); 200 epochs, on top of "
                                          "LDAM-DRW: +0.4 ± 2.4 (2/5 seeds), where the CIFAR ResNet gains +1.9 "
                                          "(docs/RESULTS.md, 'Families and fine-tuning')"),
    "RegNet": MeasuredOutcome(False, "from scratch, 40 epochs: level with the re-balancer alone on step-100 (+0.1 pp, "
                                     "3/5 fresh seeds), below it on exp-100 (-1.1, 1/5) (docs/RESULTS.md, 'Families "
                                     "and fine-tuning')"),
    "VisionTransformer": MeasuredOutcome(False, "from scratch (a 4-block ViT at 32 px), 40 epochs: below the "
                                                "re-balancer alone, -0.8 pp (step-100, 2/5 fresh seeds) and -3.1 "
                                                "(exp-100, 0/5) (docs/RESULTS.md, 'Families and fine-tuning')"),
}

# Fine-tuned from a balanced source onto step-100 digits (benchmarks/configs/finetune_digits.yaml), fresh seeds 3-7.
MEASURED_FINE_TUNING_OUTCOMES: Dict[str, MeasuredOutcome] = {
    "MobileNetV3": MeasuredOutcome(False, "fine-tuned: below logit adjustment alone, -1.6 pp (0/5 fresh seeds) "
                                          "(docs/RESULTS.md, 'Families and fine-tuning')"),
    "ConvNeXt": MeasuredOutcome(False, "fine-tuned: below logit adjustment alone, -1.5 pp (0/5 fresh seeds) "
                                       "(docs/RESULTS.md, 'Families and fine-tuning')"),
}

UNMEASURED_OUTCOME = MeasuredOutcome(
    False, "nothing for this family itself; on top of a re-balancing loss the weakening has beaten the loss alone only "
           "on the CIFAR ResNet in long training, not on the four other families trained from scratch (docs/RESULTS.md, "
           "'Families and fine-tuning')")
UNMEASURED_FINE_TUNING_OUTCOME = MeasuredOutcome(
    False, "nothing for this family itself in fine-tuning; on the families fine-tuned (MobileNetV3, ConvNeXt), the "
           "weakening on top of a re-balancing loss did not beat the loss alone (docs/RESULTS.md, 'Families and "
           "fine-tuning')")


def measured_outcome(backbone: nn.Module, fine_tuning: bool = False) -> MeasuredOutcome:
    """Whether the weakening on top of a re-balancing loss beat the loss alone for ``backbone``'s family, measured
    from scratch or (``fine_tuning``) from pretrained weights, with the numbers; a family never measured gets what the
    measured families say."""
    if fine_tuning:
        return MEASURED_FINE_TUNING_OUTCOMES.get(backbone_family(backbone), UNMEASURED_FINE_TUNING_OUTCOME)
    return MEASURED_OUTCOMES.get(backbone_family(backbone), UNMEASURED_OUTCOME)


def backbone_family(backbone: nn.Module) -> str:
    """The family a location was measured for: the timm model's class (``ConvNeXt``, ``VisionTransformer``, ...)."""
    return type(backbone).__name__


def auto_location(backbone: nn.Module, fine_tuning: bool = False) -> MeasuredLocation:
    """The measured location for ``backbone``'s family, else the documented rule: isotropic or hierarchical.

    ``fine_tuning``: the backbone starts from pretrained weights, whose early features already serve every class, so
    the locations measured in fine-tuning apply (both families measured want a deeper one than from scratch)."""
    if fine_tuning:
        measured = MEASURED_FINE_TUNING_LOCATIONS.get(backbone_family(backbone))
        return measured if measured is not None else fine_tuning_fallback(backbone)
    measured = MEASURED_LOCATIONS.get(backbone_family(backbone))
    if measured is not None:
        return measured
    reductions = feature_info_values(backbone, "reduction")
    if len(reductions) > 1 and len(set(reductions)) == 1:
        return ISOTROPIC_FALLBACK_LOCATION
    return FALLBACK_LOCATION


def feature_info_values(backbone: nn.Module, key: str) -> List[Any]:
    """``key`` (``module``, ``reduction``, ...) of each entry of timm's ``feature_info``; empty if the model has none."""
    info = getattr(backbone, "feature_info", None)
    if info is None:
        return []
    entries = info.info if hasattr(info, "module_name") else info  # a timm FeatureInfo object (features_only models)
    return [entry[key] for entry in entries if isinstance(entry, dict) and key in entry]


def fine_tuning_fallback(backbone: nn.Module) -> MeasuredLocation:
    """The rule for a fine-tuned family without a fine-tuning ablation of its own: ``pre_logits`` where the model has
    a classifier to weaken the input of, else (a headless model, ``num_classes=0``) the rule from scratch."""
    return FINE_TUNING_FALLBACK_LOCATION if classifier_modules(backbone) else auto_location(backbone)


def classifier_modules(backbone: nn.Module) -> List[nn.Module]:
    """The modules of timm's ``get_classifier()`` (two for distilled twin heads); none for a headless model."""
    classifier = backbone.get_classifier()
    heads = list(classifier) if isinstance(classifier, (tuple, list)) else [classifier]
    return [h for h in heads if isinstance(h, nn.Module) and not isinstance(h, nn.Identity)]
