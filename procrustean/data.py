"""The data side of the recipe: any image-classification source -> HF ``Dataset`` splits -> model tensors.

Sources (detected in this order): the name ``fashion_mnist``; a local ``save_to_disk`` folder; parquet (a
file, a glob, or a folder with ``train*/test*/validation*`` files or split subfolders); an
``imagefolder`` tree (``train/<class>/*.png`` plus optional ``validation/`` or ``test/``); else a Hub
dataset name. Loading validates everything a long run would otherwise trip over late -- columns, label
mapping across splits, label ranges, empty classes -- and :func:`verify_images` opens every image once,
cheaply, so a corrupt file fails the run before training rather than hours into it.

Transforms come from timm's resolved data config, so any timm model gets its own size / mean / std;
``train_crop="pad4"`` adds the CIFAR protocol (random crop with 4-pixel padding + flip), which timm's
``create_transform`` cannot express (its crops are RandomResizedCrop or resize-keep-ratio variants).
"""
from __future__ import annotations

import glob
import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import datasets
import numpy as np
import torch
from torch import nn

from ._counts import dataset_label_column

from ._timm import inner_timm_model, model_in_chans  # noqa: F401  (model_in_chans: part of this module's API)

FASHION_MNIST_NAMES = ("fashion_mnist", "fashion-mnist")
EVAL_SPLIT_PREFERENCE = ("validation", "test")


@dataclass
class ImageData:
    """What the recipe trains and evaluates on, with the label space shared by both splits."""

    train: datasets.Dataset
    eval: Optional[datasets.Dataset]
    eval_split: Optional[str]
    class_names: List[str]
    num_classes: int
    image_column: str
    label_column: str
    source: str  # "fashion_mnist" | "save_to_disk" | "parquet" | "imagefolder" | "hub"


# --------------------------------------------------------------------------- sources
def _is_save_to_disk(folder: Path) -> bool:
    return ((folder / datasets.config.DATASETDICT_JSON_FILENAME).is_file()
            or (folder / datasets.config.DATASET_STATE_JSON_FILENAME).is_file())


def _folder_kind(folder: Path) -> Optional[str]:
    """"parquet" or "imagefolder" from the first data file met (stops early: big trees are not walked)."""
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    image_suffixes = {s.lower() for s in ImageFolder.EXTENSIONS}
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            suffix = os.path.splitext(name)[1].lower()
            if suffix == ".parquet":
                return "parquet"
            if suffix in image_suffixes:
                return "imagefolder"
    return None


def _looks_like_path(name: str) -> bool:
    """Hub ids are "name" or "owner/name"; anything else path-like is a missing local path."""
    return (name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1
            or name.lower().endswith((".parquet", ".arrow")))


def _load_hub(name: str, config: Optional[str], cache_dir: Optional[str]) -> Any:
    try:
        return datasets.load_dataset(name, config, cache_dir=cache_dir)
    except (ConnectionError, FileNotFoundError) as err:  # offline mode, no network, or no such repo
        raise FileNotFoundError(
            f"Cannot load dataset {name!r}: it is not a local file or folder, and as a Hub dataset the Hub is "
            f"unreachable or has no such dataset ({type(err).__name__}: {err}). Pass a local path instead: a "
            "save_to_disk folder, a .parquet file / glob / folder, an imagefolder tree (train/<class>/*.png), "
            "or 'fashion_mnist'.") from err


def _load_source(dataset: str, dataset_config: Optional[str], cache_dir: Optional[str]) -> Tuple[Any, str]:
    """Load `dataset` as a Dataset or DatasetDict and say which kind of source it was."""
    def local_only() -> None:
        if dataset_config is not None:
            raise ValueError(f"dataset_config={dataset_config!r} applies to Hub datasets only, but {dataset!r} "
                             "is a local source. Drop --dataset_config.")

    if dataset in FASHION_MNIST_NAMES:
        from .fashion_mnist import load_fashion_mnist

        local_only()
        fm_cache = os.path.join(cache_dir, "procrustean", "fashion_mnist") if cache_dir else None
        return load_fashion_mnist(cache_dir=fm_cache), "fashion_mnist"
    path = Path(dataset).expanduser()
    if any(ch in dataset for ch in "*?["):
        local_only()
        files = sorted(glob.glob(str(path), recursive=True))
        if not files:
            raise FileNotFoundError(f"The glob {dataset!r} matches no files.")
        return datasets.load_dataset("parquet", data_files={"train": files}, split="train",
                                     cache_dir=cache_dir), "parquet"
    if path.is_file():
        local_only()
        if path.suffix.lower() != ".parquet":
            raise ValueError(f"{dataset!r} is a file but not .parquet. Pass a .parquet file or glob, a "
                             "save_to_disk folder, or an imagefolder tree (a folder, not an image file).")
        return datasets.load_dataset("parquet", data_files={"train": str(path)}, split="train",
                                     cache_dir=cache_dir), "parquet"
    if path.is_dir():
        local_only()
        if _is_save_to_disk(path):
            return datasets.load_from_disk(str(path)), "save_to_disk"
        kind = _folder_kind(path)
        if kind is not None:  # datasets maps train*/test*/validation* files or split folders to splits
            return datasets.load_dataset(kind, data_dir=str(path), cache_dir=cache_dir), kind
        raise ValueError(f"Folder {dataset!r} holds no save_to_disk dataset (dataset_dict.json / state.json), no "
                         ".parquet files and no images. Expected one of those, e.g. train/<class>/*.png.")
    if _looks_like_path(dataset):
        raise FileNotFoundError(f"No such file or folder: {dataset!r}.")
    return _load_hub(dataset, dataset_config, cache_dir), "hub"


# --------------------------------------------------------------------------- columns and labels
def _require_column(ds: datasets.Dataset, column: str, split: str, role: str) -> None:
    if column not in ds.column_names:
        raise ValueError(f"{role.capitalize()} column {column!r} not found in split {split!r}; available columns: "
                         f"{ds.column_names}. Pass the right one with --{role}_column.")


def _prepare_image_column(ds: datasets.Dataset, column: str, split: str) -> datasets.Dataset:
    """Make the column decode to PIL images (paths, bytes and {bytes, path} structs are cast); arrays stay."""
    feature = ds.features[column]
    if isinstance(feature, datasets.Image):
        return ds if feature.decode else ds.cast_column(column, datasets.Image())
    if isinstance(feature, (datasets.Array2D, datasets.Array3D, datasets.Sequence, datasets.List, list)):
        return ds  # pixels stored as arrays: converted in with_image_transform
    is_struct = isinstance(feature, dict) and "bytes" in feature
    if is_struct or (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string", "binary",
                                                                               "large_binary")):
        return ds.cast_column(column, datasets.Image())
    raise ValueError(f"Image column {column!r} of split {split!r} holds {feature}, not images. Pass the image "
                     "column with --image_column.")


def _label_kind(ds: datasets.Dataset, column: str) -> str:
    feature = ds.features[column]
    if isinstance(feature, datasets.ClassLabel):
        return "classlabel"
    dtype = getattr(feature, "dtype", None)
    if dtype in ("string", "large_string"):
        return "string"
    if isinstance(dtype, str) and dtype.startswith(("int", "uint")):
        return "int"
    raise ValueError(f"Label column {column!r} holds {feature}; expected class indices (ints / ClassLabel) or "
                     "class names (strings). Pass the right one with --label_column.")


def _check_label_range(ds: datasets.Dataset, column: str, split: str, num_classes: int) -> None:
    labels = dataset_label_column(ds, column)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise ValueError(f"Split {split!r}: labels in column {column!r} must lie in [0, {num_classes}) (the "
                         f"training classes), found {bad.size} outside, e.g. {sorted(set(bad.tolist()))[:5]}. "
                         "Unlabelled rows (-1) and classes unknown to training cannot be used: pick another "
                         "split (--train_split / --eval_split) or fix the labels.")


def _encode_labels(train: datasets.Dataset, eval_ds: Optional[datasets.Dataset], column: str, train_split: str,
                   eval_split: Optional[str]) -> Tuple[datasets.Dataset, Optional[datasets.Dataset], List[str]]:
    """One label mapping for both splits: the training split defines the classes."""
    if _label_kind(train, column) == "string":
        train = train.class_encode_column(column)
    feature = train.features[column]
    if isinstance(feature, datasets.ClassLabel):
        class_names = list(feature.names)
    else:  # bare ints: classes 0..max
        class_names = [str(i) for i in range(max(int(dataset_label_column(train, column).max()), 0) + 1)]
    _check_label_range(train, column, train_split, len(class_names))
    if eval_ds is None:
        return train, None, class_names

    eval_kind = _label_kind(eval_ds, column)
    if eval_kind == "string":
        if not isinstance(feature, datasets.ClassLabel):
            raise ValueError(f"Split {eval_split!r} labels are class names but the training labels are bare "
                             "indices with no names; store both the same way.")
        unknown = sorted(set(eval_ds.unique(column)) - set(class_names))
        if unknown:
            raise ValueError(f"Split {eval_split!r} has classes not in the training split: {unknown[:10]}. "
                             f"Training classes: {class_names}.")
        eval_ds = eval_ds.cast_column(column, feature)
    elif eval_kind == "classlabel" and isinstance(feature, datasets.ClassLabel):
        eval_names = list(eval_ds.features[column].names)
        if eval_names != class_names:
            unknown = sorted(set(eval_names) - set(class_names))
            if unknown:
                raise ValueError(f"Split {eval_split!r} declares classes not in the training split: {unknown[:10]}."
                                 f" Training classes: {class_names}.")
            eval_ds = eval_ds.align_labels_with_mapping({n: i for i, n in enumerate(class_names)}, column)
    _check_label_range(eval_ds, column, eval_split, len(class_names))
    return train, eval_ds, class_names


def check_no_empty_classes(counts: Union[Sequence[int], np.ndarray, torch.Tensor],
                           class_names: Optional[Sequence[str]] = None) -> None:
    """Refuse a training set where some class has no samples: nothing could be learnt or weighted for it."""
    counts = np.asarray(counts.detach().cpu().numpy() if torch.is_tensor(counts) else counts).reshape(-1)
    empty = [int(c) for c in np.flatnonzero(counts == 0)]
    if empty:
        named = ", ".join(f"{c} ({class_names[c]!r})" if class_names is not None else str(c) for c in empty[:20])
        raise ValueError(f"{len(empty)} of {counts.size} classes have no training samples: {named}. Every class "
                         "needs at least one training image: fix the split or label column, drop those classes, "
                         "or use a milder imbalance profile.")


def load_image_dataset(dataset: str, *, dataset_config: Optional[str] = None, image_column: str = "image",
                       label_column: str = "label", train_split: str = "train", eval_split: Optional[str] = None,
                       cache_dir: Optional[str] = None) -> ImageData:
    """Load a train (and held-out) split from any supported source, with validated columns and labels.

    `eval_split=None` picks "validation", else "test", else none (with a warning). A single-split
    source (one Dataset, a parquet file or glob) is the training split. Labels: a ClassLabel keeps its
    names; strings are encoded (sorted) with one mapping for both splits; bare ints give classes
    ``0..max`` named "0".."C-1".
    """
    loaded, source = _load_source(dataset, dataset_config, cache_dir)
    splits: Dict[str, datasets.Dataset] = ({train_split: loaded} if isinstance(loaded, datasets.Dataset)
                                           else dict(loaded))
    if train_split not in splits:
        raise ValueError(f"No split {train_split!r} in {dataset!r}; available splits: {sorted(splits)}. Pass one "
                         "with --train_split.")
    if eval_split is None:
        eval_split = next((s for s in EVAL_SPLIT_PREFERENCE if s in splits and s != train_split), None)
        if eval_split is None:
            warnings.warn(f"{dataset!r} has no 'validation' or 'test' split (splits: {sorted(splits)}): training "
                          "without a held-out evaluation. Pass --eval_split to pick one.", stacklevel=2)
    elif eval_split not in splits:
        raise ValueError(f"No split {eval_split!r} in {dataset!r}; available splits: {sorted(splits)}. Pass one "
                         "with --eval_split.")

    train, eval_ds = splits[train_split], splits[eval_split] if eval_split else None
    if len(train) == 0:
        raise ValueError(f"The training split {train_split!r} of {dataset!r} is empty.")
    for ds, name in ((train, train_split), (eval_ds, eval_split)):
        if ds is not None:
            _require_column(ds, image_column, name, "image")
            _require_column(ds, label_column, name, "label")
    train = _prepare_image_column(train, image_column, train_split)
    if eval_ds is not None:
        eval_ds = _prepare_image_column(eval_ds, image_column, eval_split)
    train, eval_ds, class_names = _encode_labels(train, eval_ds, label_column, train_split, eval_split)
    counts = np.bincount(dataset_label_column(train, label_column).astype(np.int64), minlength=len(class_names))
    check_no_empty_classes(counts, class_names)
    return ImageData(train=train, eval=eval_ds, eval_split=eval_split, class_names=class_names,
                     num_classes=len(class_names), image_column=image_column, label_column=label_column,
                     source=source)


# --------------------------------------------------------------------------- image verification
def _verify_one(entry: Optional[Dict[str, Any]]) -> Optional[str]:
    """None if the encoded image opens and verifies, else the error text."""
    from PIL import Image

    if entry is None:
        return "missing image (null)"
    try:
        source = io.BytesIO(entry["bytes"]) if entry.get("bytes") is not None else entry.get("path")
        if source is None:
            return "neither bytes nor a path"
        with Image.open(source) as image:
            image.verify()
    except Exception as err:  # PIL raises many types (SyntaxError, OSError, ValueError, ...)
        return f"{type(err).__name__}: {err}"
    return None


def verify_images(dataset: datasets.Dataset, image_column: str, split_name: str, max_errors: int = 5,
                  batch_size: int = 1000, num_threads: int = 8) -> int:
    """Open every image once (no decoding: PIL ``verify``) and raise one error listing the first bad ones.

    Returns the number of images checked (0 for array-stored pixels, which have nothing to verify).
    Images stored only as paths are checked in a thread pool (file I/O); bytes in the main thread.
    """
    feature = dataset.features[image_column]
    if not isinstance(feature, datasets.Image):
        return 0
    # Raw {bytes, path} entries: no decoding, and no user transform (with_format(None) drops it).
    view = dataset.with_format(None).select_columns([image_column]).cast_column(image_column,
                                                                                 datasets.Image(decode=False))
    bad: List[Tuple[int, Optional[str], str]] = []
    num_bad, offset = 0, 0
    pool = ThreadPoolExecutor(max_workers=num_threads)
    try:
        for batch in view.iter(batch_size=batch_size):
            entries = batch[image_column]
            by_path = any(e is not None and e.get("bytes") is None for e in entries)
            if by_path:  # one task per thread and batch: per-future overhead would cost more than a check
                step = -(-len(entries) // num_threads)
                chunks = pool.map(lambda part: [_verify_one(e) for e in part],
                                  [entries[i:i + step] for i in range(0, len(entries), step)])
                results = [error for chunk in chunks for error in chunk]
            else:
                results = map(_verify_one, entries)
            for i, (entry, error) in enumerate(zip(entries, results)):
                if error is not None:
                    num_bad += 1
                    if len(bad) < max_errors:
                        bad.append((offset + i, (entry or {}).get("path"), error))
            offset += len(entries)
    finally:
        pool.shutdown()
    if num_bad:
        lines = "\n".join(f"  index {i}{f' ({path})' if path else ''}: {error}" for i, path, error in bad)
        raise ValueError(f"Split {split_name!r}: {num_bad} of {offset} images in column {image_column!r} cannot be "
                         f"opened (first {len(bad)} shown):\n{lines}\nFix or remove these images (e.g. "
                         "dataset.filter, or delete the files) and rerun.")
    return offset


# --------------------------------------------------------------------------- transforms
def _fit_channels(values: Sequence[float], in_chans: int, name: str) -> Tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) == in_chans:
        return values
    if len(values) == 1:
        return values * in_chans
    if in_chans == 1:
        return (sum(values) / len(values),)  # grey input: the channel average
    raise ValueError(f"Normalisation {name} has {len(values)} values but the model takes {in_chans} channels; "
                     f"pass {name} with 1 or {in_chans} values.")


def model_data_config(model: nn.Module, img_size: Optional[int] = None, **overrides: Any) -> Dict[str, Any]:
    """timm's data config for `model`, with `in_chans` taken from the model and mean / std fitted to it."""
    from timm.data import resolve_data_config as timm_resolve

    in_chans = model_in_chans(model)
    args = {"in_chans": in_chans, "img_size": img_size, **{k: v for k, v in overrides.items() if v is not None}}
    config = timm_resolve(args, model=inner_timm_model(model))
    config["input_size"] = (in_chans, *config["input_size"][1:])
    config["mean"] = _fit_channels(config["mean"], in_chans, "mean")
    config["std"] = _fit_channels(config["std"], in_chans, "std")
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
    from timm.data.transforms import MaybePILToTensor, MaybeToTensor
    from torchvision import transforms as T

    if train_crop not in ("pad4", "rrc"):
        raise ValueError(f"train_crop must be 'pad4' (random crop with 4-pixel padding + flip) or 'rrc' (timm's "
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
        raise ValueError(f"{given} apply to train_crop='rrc' only; with train_crop='pad4' the augmentation is "
                         "random crop (padding 4) + horizontal flip. Drop them or use --train_crop rrc.")
    steps = list(create_transform(**config, is_training=False).transforms)
    to_tensor = next((i for i, t in enumerate(steps) if isinstance(t, (MaybeToTensor, MaybePILToTensor, T.ToTensor))),
                     None)
    if to_tensor is None:  # guards against a timm change of its eval pipeline
        raise RuntimeError(f"Cannot find the tensor conversion in timm's eval transform {steps}; use train_crop='rrc'.")
    augment = [T.RandomCrop(config["input_size"][1:], padding=4)]
    if hflip > 0:
        augment.append(T.RandomHorizontalFlip(p=hflip))
    return T.Compose(steps[:to_tensor] + augment + steps[to_tensor:])


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
        raise ValueError(f"Cannot read an image from an array of shape {array.shape}; expected HxW, HxWxC or CxHxW.")
    if array.dtype != np.uint8:
        if array.dtype.kind == "f" and array.size and array.max() <= 1.0:
            array = array * 255.0  # floats in [0, 1]
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    return Image.fromarray(array).convert(mode)


class _ImageTransform:
    """Batched ``with_transform`` function (a class, so DataLoader workers can pickle it)."""

    def __init__(self, transform: Callable, image_column: str, label_column: str, mode: str):
        self.transform, self.image_column, self.label_column, self.mode = transform, image_column, label_column, mode

    def __call__(self, batch: Dict[str, List[Any]]) -> Dict[str, List[Any]]:
        return {"pixel_values": [self.transform(_to_pil(x, self.mode)) for x in batch[self.image_column]],
                "labels": [int(y) for y in batch[self.label_column]]}


def with_image_transform(dataset: datasets.Dataset, transform: Callable, image_column: str, label_column: str,
                         in_chans: int) -> datasets.Dataset:
    """A view of `dataset` yielding ``{"pixel_values", "labels"}`` (the ProcrusteanCollator's keys).

    Images become "L" for a 1-channel model and "RGB" otherwise, so grey and colour datasets both work
    with any model; array-stored pixels are converted too. Only the two columns are decoded.
    """
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 (grey) or 3 (RGB), got {in_chans}.")
    for column, role in ((image_column, "image"), (label_column, "label")):
        _require_column(dataset, column, str(dataset.split or "?"), role)
    fn = _ImageTransform(transform, image_column, label_column, "L" if in_chans == 1 else "RGB")
    return dataset.with_transform(fn, columns=[image_column, label_column])
