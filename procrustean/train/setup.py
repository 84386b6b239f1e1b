"""Model, loss and optimiser for the recipe, from the config, using timm's and our factories."""
from __future__ import annotations

import json
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

from .config import TrainConfig
from ..errors import MissingInputError, UsageError
from ..losses import DeferredReweighting, create_loss
from ..models.factory import create_timm_model

_LOSS_KWARGS = {
    "logit_adjusted": {"tau": "loss_tau"}, "la": {"tau": "loss_tau"},
    "ldam": {"max_margin": "ldam_max_margin", "scale": "ldam_scale"},
    "cdt": {"gamma": "cdt_gamma"}, "focal": {"gamma": "focal_gamma"},
}


def build_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """``timm.create_model`` with the data's class count and channels (clear error for unknown names)."""
    kwargs: dict = dict(pretrained=config.pretrained, num_classes=num_classes, in_chans=config.in_chans,
                        drop_rate=config.drop_rate)
    if config.img_size and _fixed_input_size(config.model):
        kwargs["img_size"] = config.img_size
    if config.model_kwargs:
        kwargs.update(json.loads(config.model_kwargs))
    check_model_source(config.model)
    try:
        model = create_timm_model(config.model, **kwargs)
    except TypeError as error:  # a constructor refusing an argument: --model_kwargs (or in_chans, img_size)
        if "unexpected keyword argument" not in str(error):
            raise
        raise UsageError(f"--model {config.model} does not take an argument it was given ({error}). Check "
                         "--model_kwargs against the model's constructor.") from None
    except RuntimeError as error:  # timm: "No pretrained weights exist for ..."
        if "No pretrained weights exist" not in str(error):
            raise
        raise UsageError(f"--pretrained true: timm has no pretrained weights for {config.model}. Train from scratch "
                         "with --pretrained false, or pick a model with weights: timm.list_models(pretrained=True).") \
            from None
    except LocalEntryNotFoundError:  # offline (HF_HUB_OFFLINE) and not in the HF cache
        if config.model.startswith("hf-hub:"):
            fix = (f"download it once online (`hf download {config.model[len('hf-hub:'):]}`), or use a local export "
                   "with --model local-dir:PATH")
        else:
            fix = "download them once online, or train from scratch with --pretrained false"
        raise UsageError(f"--model {config.model}{' --pretrained true' if config.pretrained else ''}: its files are "
                         f"not in the local Hugging Face cache and the Hub cannot be reached (offline): {fix}.") \
            from None
    except RepositoryNotFoundError:
        raise UsageError(f"--model {config.model}: no such Hub repo (or it is private: pass a token with access, "
                         "HF_TOKEN or `hf auth login`). Check the name.") from None

    if config.reset_classifier:  # new classes: the source's head would only carry its old labels' meaning
        model.reset_classifier(num_classes)
    return model

# What torch says when an image is too small for a layer (a convolution or pooling window larger than the map)
_TOO_SMALL = ("Kernel size can't be greater than actual input size", "Output size is too small")


def check_input_size(backbone: nn.Module, config: TrainConfig) -> None:
    """One blank image of the training size through the backbone before any data is decoded: a model that cannot
    take the size (ConvNeXt's stride-2 downsampling below 32 px, say) is refused with the fix, not in the first step."""
    from ..data.transforms import model_data_config

    input_size = model_data_config(backbone, config.img_size)["input_size"]
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            backbone(torch.zeros(1, *input_size))
    except RuntimeError as error:
        if not any(marker in str(error) for marker in _TOO_SMALL):
            raise
        size = "x".join(str(d) for d in input_size[1:])
        raise UsageError(f"--model {config.model} cannot take {size} images: its feature maps shrink below a layer's "
                         f"window ({str(error).splitlines()[0]}). Pass a larger --img_size (32 or more for "
                         "a stride-32 network).") from None
    finally:
        backbone.train(was_training)


def check_model_source(model: str) -> None:
    """``local-dir:`` must be an export folder (with config.json), ``hf-hub:`` a well-formed repo id."""
    from pathlib import Path

    if model.startswith("local-dir:"):
        folder = Path(model[len("local-dir:"):]).expanduser()
        if not (folder / "config.json").is_file():
            raise MissingInputError(f"--model {model}: {folder} is not a model export (no config.json there). Point "
                                    "it at a folder written by export_model or timm's save_for_hf.")
    elif model.startswith("hf-hub:"):
        from ..hub.push import check_repo_id

        check_repo_id(model[len("hf-hub:"):].split("@")[0])


def model_constructor_args(config: TrainConfig) -> dict:
    """The architecture's constructor args beyond timm's defaults, for the export's ``model_args``: those of an
    ``hf-hub:`` / ``local-dir:`` source's config.json, overridden by ``--model_kwargs``. Without them an export of,
    say, a ViT built with ``depth=4`` would be rebuilt at the default depth."""
    from timm.models._hub import load_model_config_from_hf, load_model_config_from_path

    args: dict = {}
    if config.model.startswith("hf-hub:"):
        args.update(load_model_config_from_hf(config.model[len("hf-hub:"):])[2] or {})
    elif config.model.startswith("local-dir:"):
        args.update(load_model_config_from_path(config.model[len("local-dir:"):])[2] or {})
    if config.model_kwargs:
        args.update(json.loads(config.model_kwargs))
    args.pop("num_classes", None)  # config.json keeps it at the root
    return args


def _fixed_input_size(model_name: str) -> bool:
    """timm's pretrained config says whether an architecture fixes its input size at construction (ViT-like
    models: position embeddings), so that it must be built with ``img_size``; CNNs take any size."""
    import timm

    if not timm.is_model(model_name):  # hf-hub: / local-dir: checkpoints carry their img_size in model_args
        return False
    return bool(getattr(timm.models.get_pretrained_cfg(model_name), "fixed_input_size", False))


def build_loss_and_drw(config: TrainConfig, class_counts: Any) -> Tuple[nn.Module, Optional[DeferredReweighting]]:
    names = _LOSS_KWARGS.get(config.loss.lower().replace("-", "_"), {})
    loss = create_loss(config.loss, class_counts, **{k: getattr(config, v) for k, v in names.items()})
    drw = None
    if config.drw_epoch is not None:
        drw = DeferredReweighting(class_counts, beta=config.drw_beta, start_epoch=config.drw_epoch)
    return loss, drw


def build_optimizer_and_scheduler(config: TrainConfig, model: nn.Module, steps_per_epoch: int,
                                  num_epochs: int) -> Tuple[torch.optim.Optimizer, Any]:
    """timm's optimizer factory (no weight decay on norms and biases) and its per-step scheduler."""
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    kwargs = dict(momentum=config.momentum) if config.optimizer.lower() in ("sgd", "momentum", "nesterov") else {}
    optimizer = create_optimizer_v2(model, opt=config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
                                    **kwargs)
    # "constant" is timm's multistep schedule without milestones: warm-up, then the peak rate throughout
    sched = "multistep" if config.lr_scheduler == "constant" else config.lr_scheduler
    milestones = [] if config.lr_scheduler == "constant" else list(config.lr_decay_epochs)
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=sched, num_epochs=num_epochs, decay_epochs=max(1, num_epochs // 3),
        decay_milestones=milestones, decay_rate=config.lr_decay_rate, min_lr=config.min_lr,
        warmup_lr=config.lr * 0.01 if config.warmup_epochs else config.lr, warmup_epochs=config.warmup_epochs,
        step_on_epochs=False, updates_per_epoch=steps_per_epoch)
    return optimizer, scheduler


def build_mixup(config: TrainConfig, num_classes: int) -> Tuple[Optional[Any], Optional[nn.Module]]:
    """timm's Mixup / CutMix with mixed (soft) labels and its loss: the control that is *not* Procrustean."""
    if config.mixup_alpha <= 0 and config.cutmix_alpha <= 0:
        return None, None
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy

    mixup = Mixup(mixup_alpha=config.mixup_alpha, cutmix_alpha=config.cutmix_alpha, label_smoothing=0.0,
                  num_classes=num_classes)
    return mixup, SoftTargetCrossEntropy()


def compile_plugin(config: TrainConfig) -> Optional[Any]:
    """Accelerate's ``TorchDynamoPlugin`` for ``--torch_compile``: ``accelerator.prepare`` compiles the model (last,
    after any DDP wrapping) and ``save_state`` / ``unwrap_model`` see the plain one. None: Accelerate's own config
    decides (``accelerate launch --dynamo_backend``)."""
    if not config.torch_compile:
        return None
    from accelerate.utils import TorchDynamoPlugin

    return TorchDynamoPlugin(backend=config.torch_compile_backend or "inductor",
                             mode=config.torch_compile_mode or "default")


def mark_batch_dynamic(batch: Dict[str, Any]) -> None:
    """Compile one graph for every batch size from the first batch on (``--torch_compile``): left to Dynamo, the
    last, smaller batch of the first epoch switches the run to a second, dynamic-shape graph, whose kernels round
    differently, and a run resumed after that point would compile the static one first and end on other
    weights. Marked, the uninterrupted and the resumed run execute the same kernels (bit-identical weights)."""
    import torch._dynamo

    from ..policy import WeakeningDraws

    for value in batch.values():
        if isinstance(value, WeakeningDraws):
            tensors = [value.uniform, value.own_share, value.partner]
        else:
            tensors = [value] if torch.is_tensor(value) else []
        for tensor in tensors:
            if tensor.ndim and tensor.shape[0] > 1:  # a dimension of size 1 is specialised by Dynamo anyway
                torch._dynamo.maybe_mark_dynamic(tensor, 0)
