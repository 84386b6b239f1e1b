"""Where the images come from: any image-classification source -> HF ``Dataset`` splits with one label space.

Sources (detected in this order): the name ``fashion_mnist``; a local ``save_to_disk`` folder; parquet (a
file, a glob, or a folder with ``train*/test*/validation*`` files or split subfolders); an
``imagefolder`` tree (``train/<class>/*.png`` plus optional ``validation/`` or ``test/``); else a Hub
dataset name. Loading validates what a long run would otherwise trip over late -- columns, the label
mapping across splits, label ranges, empty classes (``procrustean.data.verification``).
"""
from __future__ import annotations

import glob
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import datasets
import numpy as np

from .counts import dataset_label_column
from .verification import check_label_range, check_no_empty_classes, require_column
from ..errors import MissingInputError, UsageError

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
        raise MissingInputError(
            f"Cannot load dataset {name!r}: it is not a local file or folder, and as a Hub dataset the Hub is "
            f"unreachable or has no such dataset ({type(err).__name__}: {err}). Pass a local path instead: a "
            "save_to_disk folder, a .parquet file / glob / folder, an imagefolder tree (train/<class>/*.png), "
            "or 'fashion_mnist'.") from err


def _load_source(dataset: str, dataset_config: Optional[str], cache_dir: Optional[str]) -> Tuple[Any, str]:
    """Load `dataset` as a Dataset or DatasetDict and say which kind of source it was."""
    def local_only() -> None:
        if dataset_config is not None:
            raise UsageError(f"dataset_config={dataset_config!r} applies to Hub datasets only, but {dataset!r} "
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
            raise MissingInputError(f"The glob {dataset!r} matches no files.")
        return datasets.load_dataset("parquet", data_files={"train": files}, split="train",
                                     cache_dir=cache_dir), "parquet"
    if path.is_file():
        local_only()
        if path.suffix.lower() != ".parquet":
            raise UsageError(f"{dataset!r} is a file but not .parquet. Pass a .parquet file or glob, a "
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
        raise UsageError(f"Folder {dataset!r} holds no save_to_disk dataset (dataset_dict.json / state.json), no "
                         ".parquet files and no images. Expected one of those, e.g. train/<class>/*.png.")
    if _looks_like_path(dataset):
        raise MissingInputError(f"No such file or folder: {dataset!r}.")
    return _load_hub(dataset, dataset_config, cache_dir), "hub"


# --------------------------------------------------------------------------- columns and labels
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
    raise UsageError(f"Image column {column!r} of split {split!r} holds {feature}, not images. Pass the image "
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
    raise UsageError(f"Label column {column!r} holds {feature}; expected class indices (ints / ClassLabel) or "
                     "class names (strings). Pass the right one with --label_column.")


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
    check_label_range(train, column, train_split, len(class_names))
    if eval_ds is None:
        return train, None, class_names

    eval_kind = _label_kind(eval_ds, column)
    if eval_kind == "string":
        if not isinstance(feature, datasets.ClassLabel):
            raise UsageError(f"Split {eval_split!r} labels are class names but the training labels are bare "
                             "indices with no names; store both the same way.")
        unknown = sorted(set(eval_ds.unique(column)) - set(class_names))
        if unknown:
            raise UsageError(f"Split {eval_split!r} has classes not in the training split: {unknown[:10]}. "
                             f"Training classes: {class_names}.")
        eval_ds = eval_ds.cast_column(column, feature)
    elif eval_kind == "classlabel" and isinstance(feature, datasets.ClassLabel):
        eval_names = list(eval_ds.features[column].names)
        if eval_names != class_names:
            unknown = sorted(set(eval_names) - set(class_names))
            if unknown:
                raise UsageError(f"Split {eval_split!r} declares classes not in the training split: {unknown[:10]}."
                                 f" Training classes: {class_names}.")
            eval_ds = eval_ds.align_labels_with_mapping({n: i for i, n in enumerate(class_names)}, column)
    check_label_range(eval_ds, column, eval_split, len(class_names))
    return train, eval_ds, class_names


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
        raise UsageError(f"No split {train_split!r} in {dataset!r}; available splits: {sorted(splits)}. Pass one "
                         "with --train_split.")
    if eval_split is None:
        eval_split = next((s for s in EVAL_SPLIT_PREFERENCE if s in splits and s != train_split), None)
        if eval_split is None:
            warnings.warn(f"{dataset!r} has no 'validation' or 'test' split (splits: {sorted(splits)}): training "
                          "without a held-out evaluation. Pass --eval_split to pick one.", stacklevel=2)
    elif eval_split not in splits:
        raise UsageError(f"No split {eval_split!r} in {dataset!r}; available splits: {sorted(splits)}. Pass one "
                         "with --eval_split.")

    train, eval_ds = splits[train_split], splits[eval_split] if eval_split else None
    if len(train) == 0:
        raise UsageError(f"The training split {train_split!r} of {dataset!r} is empty.")
    for ds, name in ((train, train_split), (eval_ds, eval_split)):
        if ds is not None:
            require_column(ds, image_column, name, "image")
            require_column(ds, label_column, name, "label")
    train = _prepare_image_column(train, image_column, train_split)
    if eval_ds is not None:
        eval_ds = _prepare_image_column(eval_ds, image_column, eval_split)
    train, eval_ds, class_names = _encode_labels(train, eval_ds, label_column, train_split, eval_split)
    counts = np.bincount(dataset_label_column(train, label_column).astype(np.int64), minlength=len(class_names))
    check_no_empty_classes(counts, class_names)
    return ImageData(train=train, eval=eval_ds, eval_split=eval_split, class_names=class_names,
                     num_classes=len(class_names), image_column=image_column, label_column=label_column,
                     source=source)
