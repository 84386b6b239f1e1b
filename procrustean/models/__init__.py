"""Backbones registered in timm's model registry on import.

``import procrustean`` (or ``import procrustean.models``) registers the CIFAR ResNets
``resnet{8,20,32,44,56,110}_cifar`` so that ``timm.create_model`` / ``timm.list_models("*cifar*")``,
``local-dir:`` checkpoints and transformers' ``TimmWrapper`` can find them.
"""
from .cifar_resnet import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR_RESNET_DEPTHS,
    CifarBasicBlock,
    CifarResNet,
    NormedLinear,
    ShortcutA,
    hf_model_args,
    resnet8_cifar,
    resnet20_cifar,
    resnet32_cifar,
    resnet44_cifar,
    resnet56_cifar,
    resnet110_cifar,
)

from .factory import check_timm_model_name, create_timm_model, inner_timm_model, model_in_chans

CIFAR_RESNET_NAMES = tuple(f"resnet{d}_cifar" for d in CIFAR_RESNET_DEPTHS)

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR_RESNET_DEPTHS",
    "CIFAR_RESNET_NAMES",
    "CifarBasicBlock",
    "CifarResNet",
    "NormedLinear",
    "ShortcutA",
    "check_timm_model_name",
    "create_timm_model",
    "hf_model_args",
    "inner_timm_model",
    "model_in_chans",
    "resnet8_cifar",
    "resnet20_cifar",
    "resnet32_cifar",
    "resnet44_cifar",
    "resnet56_cifar",
    "resnet110_cifar",
]
