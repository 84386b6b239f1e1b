"""CIFAR-style ResNets (ResNet-8/20/32/44/56/110) as first-class timm models.

Architecture: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
Sec. 4.2 (the CIFAR-10 networks): a 3x3 convolution with 16 filters, then 3 stages of ``n`` basic
blocks with 16, 32 and 64 filters (the first block of stages 2 and 3 has stride 2), global average
pooling and a linear classifier, ``6n + 2`` weighted layers in all. The shortcuts are the
parameter-free "option A" of the paper: identity, or, where the shape changes, a spatial subsample
(``x[:, :, ::2, ::2]``) with zero-padded extra channels.

Implementation details follow the reference code of LDAM-DRW (Cao, Wei, Gaidon, Arechiga, Ma,
"Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss", NeurIPS 2019,
``models/resnet_cifar.py`` in github.com/kaidic/LDAM-DRW), the backbone of the CIFAR protocol of the
imbalanced-learning literature including Procrustean training: ``LambdaLayer`` option-A shortcut
(``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))``), ``kaiming_normal_`` (PyTorch
defaults: fan-in, gain sqrt(2)) on every ``Conv2d`` and ``Linear`` weight, default BN / bias init, and
an optional ``NormedLinear`` (cosine) classifier as used there with the LDAM loss. ResNet-32 with 10
classes has 464,154 parameters, as in the reference.

What is ours (timm conventions, so that the generic timm / transformers APIs work): module names
``conv1/bn1/act1/layer1..3/global_pool/fc``, ``feature_info``, ``forward_features`` /
``forward_head(pre_logits=...)`` / ``forward_intermediates``, ``reset_classifier``, ``group_matcher``,
gradient checkpointing, ``drop_rate`` (dropout before the classifier) and ``drop_path_rate``
(stochastic depth on the residual branch; both 0 by default, as in the reference), and default
pretrained configs with CIFAR-10 normalisation. No pretrained weights are published: the configs
carry no ``url`` / ``hf_hub_id``; ``pretrained=True`` works with ``local-dir:`` / ``hf-hub:``
checkpoints written by :func:`timm.models.save_for_hf` (see :func:`hf_model_args`).
"""
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, create_classifier
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq

__all__ = [
    "CifarResNet",
    "CifarBasicBlock",
    "ShortcutA",
    "NormedLinear",
    "CIFAR_RESNET_DEPTHS",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "hf_model_args",
]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

# depth -> blocks per stage (depth = 6n + 2)
CIFAR_RESNET_DEPTHS = {8: 1, 20: 3, 32: 5, 44: 7, 56: 9, 110: 18}


def _init_weights(m: nn.Module) -> None:
    """LDAM-DRW's ``_weights_init``: kaiming-normal (PyTorch defaults) on Conv2d / Linear weights."""
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.kaiming_normal_(m.weight)


class ShortcutA(nn.Module):
    """Option-A shortcut (parameter-free): subsample spatially by ``stride``, zero-pad channels.

    With ``out_chs == 2 * in_chs`` the padding is ``out_chs // 4`` on each side, exactly LDAM-DRW's
    ``LambdaLayer``; an odd difference puts the extra channel at the end.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 2):
        super().__init__()
        assert out_chs >= in_chs, "option-A shortcut can only add channels"
        self.stride = stride
        self.pad_lo = (out_chs - in_chs) // 2
        self.pad_hi = out_chs - in_chs - self.pad_lo

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_lo, self.pad_hi), "constant", 0.0)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_lo}, {self.pad_hi})"


class CifarBasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus shortcut, then ReLU (He et al. 2016)."""

    expansion = 1

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, drop_path: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_chs, out_chs, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.act2 = nn.ReLU(inplace=True)
        if stride != 1 or in_chs != out_chs:
            self.shortcut = ShortcutA(in_chs, out_chs, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        x = self.drop_path(x) + shortcut
        return self.act2(x)


class NormedLinear(nn.Module):
    """Cosine classifier of LDAM-DRW (``use_norm=True``): logits = <x/|x|, w_c/|w_c|> in [-1, 1].

    No bias. The weight is stored as ``(num_classes, in_features)`` like ``nn.Linear`` (LDAM-DRW
    stores the transpose); init: uniform(-1, 1), then every class vector rescaled to unit norm.
    Scale the logits in the loss (LDAM uses s = 30).
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.uniform_(-1, 1).renorm_(2, 0, 1e-5).mul_(1e5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class CifarResNet(nn.Module):
    """CIFAR ResNet (He et al. 2016; LDAM-DRW's ``ResNet_s``) with timm's model interface.

    Args:
        layers: blocks per stage (3 stages), e.g. ``(5, 5, 5)`` for ResNet-32.
        channels: stage widths (3 stages).
        num_classes: classifier outputs; 0 gives an ``nn.Identity`` classifier.
        in_chans: input channels.
        global_pool: timm pool type (``'avg'`` like the reference; ``''`` disables pooling).
        drop_rate: dropout before the classifier (0 = none, as in the reference).
        drop_path_rate: stochastic depth, linearly increasing over the blocks (0 = none).
        stem_width: stem conv width (16 in the reference; must not exceed ``channels[0]``).
        normed_head: use LDAM-DRW's cosine classifier ``NormedLinear`` instead of ``nn.Linear``.
    """

    def __init__(
            self,
            layers: Tuple[int, ...] = (5, 5, 5),
            channels: Tuple[int, ...] = (16, 32, 64),
            num_classes: int = 10,
            in_chans: int = 3,
            global_pool: str = "avg",
            drop_rate: float = 0.0,
            drop_path_rate: float = 0.0,
            stem_width: int = 16,
            normed_head: bool = False,
    ):
        super().__init__()
        assert len(layers) == len(channels) == 3, "CIFAR ResNets have 3 stages"
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.normed_head = normed_head
        self.grad_checkpointing = False

        self.conv1 = nn.Conv2d(in_chans, stem_width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.act1 = nn.ReLU(inplace=True)
        self.feature_info = [dict(num_chs=stem_width, reduction=1, module="act1")]

        total_blocks = sum(layers)
        block_idx = 0
        in_chs = stem_width
        reduction = 1
        self.stage_names = []
        for stage_idx, (n, chs) in enumerate(zip(layers, channels)):
            stride = 1 if stage_idx == 0 else 2
            reduction *= stride
            blocks = []
            for i in range(n):
                dpr = drop_path_rate * block_idx / max(total_blocks - 1, 1)
                blocks.append(CifarBasicBlock(in_chs, chs, stride if i == 0 else 1, drop_path=dpr))
                in_chs = chs
                block_idx += 1
            name = f"layer{stage_idx + 1}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=name))

        self.num_features = self.head_hidden_size = in_chs
        self.global_pool, self.fc = self._make_head(num_classes, global_pool)
        self.apply(_init_weights)

    def _make_head(self, num_classes: int, global_pool: str) -> Tuple[nn.Module, nn.Module]:
        if self.normed_head and num_classes > 0:
            pool, _ = create_classifier(self.num_features, 0, pool_type=global_pool)
            return pool, NormedLinear(self.num_features, num_classes)
        return create_classifier(self.num_features, num_classes, pool_type=global_pool)

    # ----------------------------------------------------------------- timm model API
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, str]:
        return dict(stem=r"^conv1|bn1", blocks=r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        # The reference decays every parameter (SGD weight_decay on model.parameters()).
        return set()

    @torch.jit.ignore
    def get_classifier(self, name_only: bool = False) -> Union[str, nn.Module]:
        return "fc" if name_only else self.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """New classifier (fresh init like the reference) for ``num_classes`` (0: Identity)."""
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.num_classes = num_classes
        device = self.conv1.weight.device
        self.global_pool, self.fc = self._make_head(num_classes, global_pool)
        self.fc.apply(_init_weights)
        self.global_pool.to(device).train(self.training)
        self.fc.to(device).train(self.training)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Features of the ``feature_info`` levels (stem act, layer1..3), timm's convention."""
        assert output_fmt in ("NCHW",), "Output shape must be NCHW."
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        x = self.act1(self.bn1(self.conv1(x)))
        if 0 in take_indices:
            intermediates.append(x)
        stage_names = self.stage_names[:max_index] if stop_early else self.stage_names
        for feat_idx, name in enumerate(stage_names, start=1):
            x = getattr(self, name)(x)
            if feat_idx in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        for name in self.stage_names[max_index:]:
            setattr(self, name, nn.Identity())
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq([self.layer1, self.layer2, self.layer3], x, flatten=True)
        else:
            x = self.layer1(x)
            x = self.layer2(x)
            x = self.layer3(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate:
            x = F.dropout(x, p=float(self.drop_rate), training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def hf_model_args(model: nn.Module) -> Dict[str, Any]:
    """``model_args`` to pass to :func:`timm.models.save_for_hf` so a checkpoint rebuilds as saved.

    ``save_for_hf`` stores ``num_classes`` at the root of config.json (that is what both
    ``timm.create_model("local-dir:...", pretrained=True)`` and transformers' ``TimmWrapper`` read),
    but not ``in_chans``: timm would rebuild a 3-channel stem, and ``TimmWrapper`` (which calls
    ``timm.create_model(architecture, pretrained=False, num_classes=..., **model_args)``) fails on
    the conv1 shape. So ``in_chans`` (when not 3) and our ``normed_head`` go in ``model_args``.
    ``num_classes`` must NOT (transformers 5.x passes it itself: "got multiple values for keyword
    argument 'num_classes'"). Works for any timm model with a ``first_conv`` entry in its
    ``pretrained_cfg``::

        timm.models.save_for_hf(model, d, safe_serialization=True, model_args=hf_model_args(model))
    """
    from .factory import model_in_chans

    args: Dict[str, Any] = {}
    in_chans = model_in_chans(model)
    if in_chans != 3:
        args["in_chans"] = int(in_chans)
    if getattr(model, "normed_head", False):
        args["normed_head"] = True
    return args


# --------------------------------------------------------------------------- registry
def _cfg(**kwargs: Any) -> Dict[str, Any]:
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (8, 8),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
        "first_conv": "conv1",
        "classifier": "fc",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({f"resnet{d}_cifar": _cfg() for d in CIFAR_RESNET_DEPTHS})


def _create_cifar_resnet(variant: str, pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    return build_model_with_cfg(
        CifarResNet,
        variant,
        pretrained,
        # 4 feature levels (stem act, layer1..3); timm's default out_indices (0..4) assumes 5.
        feature_cfg=dict(out_indices=(0, 1, 2, 3)),
        **kwargs,
    )


def _make(depth: int, pretrained: bool, kwargs: Dict[str, Any]) -> CifarResNet:
    n = CIFAR_RESNET_DEPTHS[depth]
    model_args = dict(layers=(n, n, n), channels=(16, 32, 64))
    return _create_cifar_resnet(f"resnet{depth}_cifar", pretrained, **dict(model_args, **kwargs))


@register_model
def resnet8_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-8 (1 block per stage): the small, CPU-fast variant."""
    return _make(8, pretrained, kwargs)


@register_model
def resnet20_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-20 (3 blocks per stage)."""
    return _make(20, pretrained, kwargs)


@register_model
def resnet32_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-32 (5 blocks per stage): the backbone of the CIFAR imbalanced benchmarks."""
    return _make(32, pretrained, kwargs)


@register_model
def resnet44_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-44 (7 blocks per stage)."""
    return _make(44, pretrained, kwargs)


@register_model
def resnet56_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-56 (9 blocks per stage)."""
    return _make(56, pretrained, kwargs)


@register_model
def resnet110_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-110 (18 blocks per stage)."""
    return _make(110, pretrained, kwargs)
