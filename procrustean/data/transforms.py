"""Images -> model tensors, from timm's resolved data config, so any timm model gets its own size / mean / std.

``train_crop="pad4"`` adds the CIFAR protocol (random crop with 4-pixel padding + flip), which timm's
``create_transform`` cannot express (its crops are RandomResizedCrop or resize-keep-ratio variants).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import datasets
import numpy as np
from torch import nn

from ..models.factory import inner_timm_model, model_in_chans
from .verification import require_column
from ..errors import UsageError


def fit_channels(values: Sequence[float], in_chans: int, name: str) -> Tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) == in_chans:
        return values
    if len(values) == 1:
        return values * in_chans
    if in_chans == 1:
        return (sum(values) / len(values),)  # grey input: the channel average
    raise UsageError(f"Normalisation {name} has {len(values)} values but the model takes {in_chans} channels; "
                     f"pass {name} with 1 or {in_chans} values.")


def model_data_config(model: nn.Module, img_size: Optional[int] = None, **overrides: Any) -> Dict[str, Any]:
    """timm's data config for `model`, with `in_chans` taken from the model and mean / std fitted to it."""
    from timm.data import resolve_data_config as timm_resolve

    in_chans = model_in_chans(model)
    args = {"in_chans": in_chans, "img_size": img_size, **{k: v for k, v in overrides.items() if v is not None}}
    config = timm_resolve(args, model=inner_timm_model(model))
    config["input_size"] = (in_chans, *config["input_size"][1:])
    config["mean"] = fit_channels(config["mean"], in_chans, "mean")
    config["std"] = fit_channels(config["std"], in_chans, "std")
    return config


def build_transforms(model: nn.Module, *, is_training: bool, img_size: Optional[int] = None,
                     train_crop: str = "pad4", hflip: float = 0.5, scale: Optional[Tuple[float, float]] = None,
                     color_jitter: float = 0.0, auto_augment: Optional[str] = None, re_prob: float = 0.0,
                     interpolation: Optional[str] = None, crop_pct: Optional[float] = None,
                     mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None) -> Callable:
    """PIL image -> normalised tensor, from timm's config for `model` (size, interpolation, mean / std).

    Eval: timm's eval transform (resize to ``img_size / crop_pct``, centre crop). Training:
    - ``train_crop="pad4"`` (CIFAR protocol): the eval geometry, then ``RandomCrop(img_size, padding=4)``
      and a horizontal flip; timm's own crops cannot pad-and-translate, so this one is composed here;
    - ``train_crop="rrc"``: timm's ImageNet training transform (RandomResizedCrop with `scale`, flip,
      `color_jitter`, `auto_augment`, random erasing `re_prob`).
    """
    from timm.data import create_transform
    from torchvision import transforms as T

    if train_crop not in ("pad4", "rrc"):
        raise UsageError(f"train_crop must be 'pad4' (random crop with 4-pixel padding + flip) or 'rrc' (timm's "
                         f"RandomResizedCrop), got {train_crop!r}.")
    config = model_data_config(model, img_size, interpolation=interpolation, crop_pct=crop_pct, mean=mean, std=std)
    if not is_training:
        return create_transform(**config, is_training=False)
    if train_crop == "rrc":
        return create_transform(**config, is_training=True, scale=scale, hflip=hflip, color_jitter=color_jitter or None,
                                auto_augment=auto_augment, re_prob=re_prob)
    rrc_only = {"scale": scale, "auto_augment": auto_augment, "color_jitter": color_jitter or None,
                "re_prob": re_prob or None}
    given = [k for k, v in rrc_only.items() if v is not None]
    if given:
        raise UsageError(f"{given} apply to train_crop='rrc' only; with train_crop='pad4' the augmentation is "
                         "random crop (padding 4) + horizontal flip. Drop them or use --train_crop rrc.")
    geometry, rest = _eval_geometry_and_rest(config)
    augment = [T.RandomCrop(config["input_size"][1:], padding=4)]
    if hflip > 0:
        augment.append(T.RandomHorizontalFlip(p=hflip))
    return T.Compose(geometry + augment + rest)


def _eval_geometry_and_rest(config: Dict[str, Any]) -> Tuple[List[Callable], List[Callable]]:
    """timm's eval transform split at the tensor conversion: the PIL geometry (resize, centre crop), then the rest."""
    from timm.data import create_transform
    from timm.data.transforms import MaybePILToTensor, MaybeToTensor
    from torchvision import transforms as T

    steps = list(create_transform(**config, is_training=False).transforms)
    to_tensor = next((i for i, t in enumerate(steps) if isinstance(t, (MaybeToTensor, MaybePILToTensor, T.ToTensor))),
                     None)
    if to_tensor is None:  # guards against a timm change of its eval pipeline
        raise RuntimeError(f"Cannot find the tensor conversion in timm's eval transform {steps}; use train_crop='rrc'.")
    return steps[:to_tensor], steps[to_tensor:]


def in_memory_pipeline(model: nn.Module, *, img_size: Optional[int] = None, mean: Optional[Sequence[float]] = None,
                       std: Optional[Sequence[float]] = None, crop_pct: Optional[float] = None,
                       interpolation: Optional[str] = None) -> Tuple[Callable, Tuple[float, ...], Tuple[float, ...]]:
    """What ``train_crop="pad4"`` does, split for the in-memory path: the deterministic PIL geometry (applied once,
    when decoding) and the normalisation (applied on the device after the random crop and flip)."""
    from torchvision import transforms as T

    config = model_data_config(model, img_size, mean=mean, std=std, crop_pct=crop_pct, interpolation=interpolation)
    geometry, _ = _eval_geometry_and_rest(config)
    return T.Compose(geometry), tuple(config["mean"]), tuple(config["std"])


# --------------------------------------------------------------------------- dataset -> model inputs
def _to_pil(value: Any, mode: str) -> Any:
    from PIL import Image

    if isinstance(value, Image.Image):
        return value if value.mode == mode else value.convert(mode)
    array = np.asarray(value)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # CHW -> HWC
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3):
        raise UsageError(f"Cannot read an image from an array of shape {array.shape}; expected HxW, HxWxC or CxHxW.")
    if array.dtype != np.uint8:
        if array.dtype.kind == "f" and array.size and array.max() <= 1.0:
            array = array * 255.0  # floats in [0, 1]
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    return Image.fromarray(array).convert(mode)


class _ImageTransform:
    """Batched ``with_transform`` function (a class, so DataLoader workers can pickle it). ``feature``: the image
    column's ``datasets.Image``, when the column is read undecoded and decoded here (naming a file that fails)."""

    def __init__(self, transform: Callable, image_column: str, label_column: str, mode: str,
                 feature: Optional[datasets.Image] = None):
        self.transform, self.image_column, self.label_column, self.mode = transform, image_column, label_column, mode
        self.feature = feature

    def __call__(self, batch: Dict[str, List[Any]]) -> Dict[str, List[Any]]:
        from .decoding import decode_image

        images = batch[self.image_column]
        if self.feature is not None:
            images = [decode_image(x, self.feature) for x in images]
        return {"pixel_values": [self.transform(_to_pil(x, self.mode)) for x in images],
                "labels": [int(y) for y in batch[self.label_column]]}


def with_image_transform(dataset: datasets.Dataset, transform: Callable, image_column: str, label_column: str,
                         in_chans: int) -> datasets.Dataset:
    """A view of `dataset` yielding ``{"pixel_values", "labels"}`` (the ProcrusteanCollator's keys).

    Images become "L" for a 1-channel model and "RGB" otherwise, so grey and colour datasets both work
    with any model; array-stored pixels are converted too. Only the two columns are decoded; an image that
    cannot be decoded raises :class:`~procrustean.errors.UnreadableImageError` naming its file.
    """
    if in_chans not in (1, 3):
        raise UsageError(f"in_chans must be 1 (grey) or 3 (RGB), got {in_chans}.")
    for column, role in ((image_column, "image"), (label_column, "label")):
        require_column(dataset, column, str(dataset.split or "?"), role)
    feature = dataset.features[image_column]
    if isinstance(feature, datasets.Image) and feature.decode:  # decoded in the transform, naming a file that fails
        dataset = dataset.cast_column(image_column, datasets.Image(mode=feature.mode, decode=False))
    else:
        feature = None
    fn = _ImageTransform(transform, image_column, label_column, "L" if in_chans == 1 else "RGB", feature)
    return dataset.with_transform(fn, columns=[image_column, label_column])
