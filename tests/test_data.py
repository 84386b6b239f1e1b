"""procrustean.data (sources, verification, transforms, Fashion-MNIST), on tiny data built here (offline; see conftest.py)."""
import gzip
import os
import random
import struct
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
import timm
import torch
from PIL import Image

import procrustean  # noqa: F401  (registers resnet*_cifar)
from procrustean import ProcrusteanCollator
from procrustean.data import (ImageData, build_transforms, check_no_empty_classes, load_image_dataset, verify_images,
                              with_image_transform)
from procrustean.models import model_in_chans
from procrustean.data.fashion_mnist import CLASS_NAMES, DEFAULT_DIR, load_fashion_mnist, main, read_idx

NAMES = ["cat", "dog", "fox"]


def _pixels(i, mode="L", size=8):
    shape = (size, size) if mode == "L" else (size, size, 3)
    return np.full(shape, (37 * i) % 256, dtype=np.uint8)


def _dataset(labels, mode="L", names=NAMES, image_column="image", label_column="label"):
    label_feature = datasets.ClassLabel(names=names) if names else datasets.Value("int64")
    if labels and isinstance(labels[0], str):
        label_feature = datasets.Value("string")
    features = datasets.Features({image_column: datasets.Image(), label_column: label_feature})
    return datasets.Dataset.from_dict({image_column: [_pixels(i, mode) for i in range(len(labels))],
                                       label_column: list(labels)}, features=features)


TRAIN_LABELS = [0, 1, 2, 0, 1, 2, 0]


def _imagefolder(root, splits=("train", "test"), classes=("cat", "dog"), per_class=2, mode="RGB"):
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(_pixels(i, mode)).save(root / split / c / f"{i}.png")
    return root


# --------------------------------------------------------------------------- sources
def test_save_to_disk_dataset_is_the_training_split(tmp_path):
    _dataset(TRAIN_LABELS).save_to_disk(str(tmp_path / "ds"))
    with pytest.warns(UserWarning, match="no 'validation' or 'test' split"):
        data = load_image_dataset(str(tmp_path / "ds"))
    assert isinstance(data, ImageData)
    assert (data.source, data.eval, data.eval_split) == ("save_to_disk", None, None)
    assert (data.class_names, data.num_classes, len(data.train)) == (NAMES, 3, 7)


def test_save_to_disk_dataset_dict_prefers_validation(tmp_path):
    datasets.DatasetDict({"train": _dataset(TRAIN_LABELS), "validation": _dataset([2, 1]),
                          "test": _dataset([0])}).save_to_disk(str(tmp_path / "dd"))
    data = load_image_dataset(str(tmp_path / "dd"))
    assert (data.eval_split, len(data.eval)) == ("validation", 2)
    data = load_image_dataset(str(tmp_path / "dd"), eval_split="test")
    assert (data.eval_split, len(data.eval)) == ("test", 1)


def test_parquet_file_glob_and_folder(tmp_path):
    _dataset(TRAIN_LABELS).to_parquet(str(tmp_path / "one.parquet"))
    with pytest.warns(UserWarning):
        data = load_image_dataset(str(tmp_path / "one.parquet"))
    assert (data.source, len(data.train), data.class_names) == ("parquet", 7, NAMES)
    with pytest.warns(UserWarning):
        assert len(load_image_dataset(str(tmp_path / "*.parquet")).train) == 7

    folder = tmp_path / "pq"
    folder.mkdir()
    _dataset(TRAIN_LABELS).to_parquet(str(folder / "train-00000.parquet"))
    _dataset([1, 2]).to_parquet(str(folder / "test-00000.parquet"))
    data = load_image_dataset(str(folder))
    assert (data.source, len(data.train), data.eval_split, len(data.eval)) == ("parquet", 7, "test", 2)
    assert data.train[0]["image"].size == (8, 8)


def test_imagefolder_tree_with_test_split(tmp_path):
    data = load_image_dataset(str(_imagefolder(tmp_path / "tree")))
    assert (data.source, data.class_names, data.eval_split) == ("imagefolder", ["cat", "dog"], "test")
    assert (len(data.train), len(data.eval), data.train[0]["image"].mode) == (4, 4, "RGB")
    assert verify_images(data.train, "image", "train") == 4
    transformed = with_image_transform(data.train, lambda im: torch.zeros(1), "image", "label", 3)
    assert verify_images(transformed, "image", "train") == 4  # checks the stored files, not the transform


def test_string_labels_share_one_mapping(tmp_path):
    datasets.DatasetDict({"train": _dataset(["dog", "cat", "fox", "dog"]),
                          "test": _dataset(["fox", "dog"])}).save_to_disk(str(tmp_path / "s"))
    data = load_image_dataset(str(tmp_path / "s"))
    assert data.class_names == ["cat", "dog", "fox"]
    assert data.train["label"] == [1, 0, 2, 1] and data.eval["label"] == [2, 1]

    datasets.DatasetDict({"train": _dataset(["dog", "cat"]),
                          "test": _dataset(["fox"])}).save_to_disk(str(tmp_path / "u"))
    with pytest.raises(ValueError, match=r"classes not in the training split: \['fox'\]"):
        load_image_dataset(str(tmp_path / "u"))


def test_eval_classlabel_in_another_order_is_aligned(tmp_path):
    datasets.DatasetDict({"train": _dataset(TRAIN_LABELS),
                          "test": _dataset([0, 2], names=["fox", "dog", "cat"])}).save_to_disk(str(tmp_path / "a"))
    data = load_image_dataset(str(tmp_path / "a"))
    assert data.eval["label"] == [2, 0]  # fox, cat in the training order cat, dog, fox


def test_int_labels_without_classlabel_and_other_columns(tmp_path):
    dd = datasets.DatasetDict({"train": _dataset([0, 2, 1, 2], names=None, image_column="img", label_column="y"),
                               "validation": _dataset([1], names=None, image_column="img", label_column="y")})
    dd.save_to_disk(str(tmp_path / "i"))
    data = load_image_dataset(str(tmp_path / "i"), image_column="img", label_column="y")
    assert (data.class_names, data.num_classes, data.image_column, data.label_column) == (["0", "1", "2"], 3, "img", "y")

    dd["validation"] = _dataset([1, 3], names=None, image_column="img", label_column="y")
    dd.save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(ValueError, match=r"Split 'validation'.*\[0, 3\).*\[3\]"):
        load_image_dataset(str(tmp_path / "bad"), image_column="img", label_column="y")


def test_unlabelled_rows_are_refused(tmp_path):
    datasets.DatasetDict({"train": _dataset(TRAIN_LABELS), "test": _dataset([0, -1])}).save_to_disk(str(tmp_path / "n"))
    with pytest.raises(ValueError, match=r"Split 'test'.*\[0, 3\).*\[-1\]"):
        load_image_dataset(str(tmp_path / "n"))
    datasets.DatasetDict({"train": _dataset(TRAIN_LABELS + [-1]), "test": _dataset([0])}).save_to_disk(str(tmp_path / "t"))
    with pytest.raises(ValueError, match=r"Split 'train'.*\[0, 3\)"):
        load_image_dataset(str(tmp_path / "t"))


def test_eval_class_names_against_a_train_classlabel(tmp_path):
    datasets.DatasetDict({"train": _dataset(TRAIN_LABELS), "test": _dataset(["fox", "cat"])}).save_to_disk(str(tmp_path / "s"))
    assert load_image_dataset(str(tmp_path / "s")).eval["label"] == [2, 0]


# --------------------------------------------------------------------------- errors
@pytest.mark.filterwarnings("ignore:.*held-out")
def test_missing_columns_list_available_ones_and_name_the_flag(tmp_path):
    _dataset(TRAIN_LABELS, image_column="img", label_column="y").save_to_disk(str(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"Image column 'image'.*\['img', 'y'\].*--image_column"):
        load_image_dataset(str(tmp_path / "c"), label_column="y")
    with pytest.raises(ValueError, match=r"Label column 'label'.*\['img', 'y'\].*--label_column"):
        load_image_dataset(str(tmp_path / "c"), image_column="img")


def test_missing_splits_are_listed(tmp_path):
    datasets.DatasetDict({"training": _dataset(TRAIN_LABELS), "test": _dataset([0])}).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(ValueError, match=r"No split 'train'.*\['test', 'training'\].*--train_split"):
        load_image_dataset(str(tmp_path / "d"))
    with pytest.raises(ValueError, match=r"No split 'val'.*--eval_split"):
        load_image_dataset(str(tmp_path / "d"), train_split="training", eval_split="val")


@pytest.mark.filterwarnings("ignore:.*held-out")
def test_empty_class_is_refused(tmp_path):
    _dataset([0, 2, 0]).save_to_disk(str(tmp_path / "e"))
    with pytest.raises(ValueError, match=r"1 of 3 classes have no training samples: 1 \('dog'\)"):
        load_image_dataset(str(tmp_path / "e"))
    check_no_empty_classes([3, 1, 2], NAMES)
    with pytest.raises(ValueError, match=r"classes have no training samples: 0, 2"):
        check_no_empty_classes(torch.tensor([0, 5, 0]))


def test_hub_name_offline_fails_fast_and_clearly(tmp_path):
    start = time.time()
    with pytest.raises(FileNotFoundError, match=r"Hub is unreachable.*local path"):
        load_image_dataset("someone/not-a-real-dataset")
    assert time.time() - start < 5
    with pytest.raises(FileNotFoundError, match="No such file or folder"):
        load_image_dataset(str(tmp_path / "missing" / "data.parquet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no save_to_disk dataset"):
        load_image_dataset(str(tmp_path / "empty"))


def test_corrupt_image_is_reported_with_index_and_path(tmp_path):
    root = _imagefolder(tmp_path / "tree", splits=("train",))
    bad = root / "train" / "dog" / "1.png"
    bad.write_bytes(bad.read_bytes()[:30])
    with pytest.warns(UserWarning):
        data = load_image_dataset(str(root))
    index = [Path(e["path"]).name for e in data.train.cast_column("image", datasets.Image(decode=False))["image"]
             ].index("1.png", 2)
    with pytest.raises(ValueError, match=rf"(?s)1 of 4 images.*index {index} \({bad}\): \w+"):
        verify_images(data.train, "image", "train")

    raw = _dataset(TRAIN_LABELS).cast_column("image", datasets.Image(decode=False))
    entries = list(raw["image"])
    entries[3] = {"bytes": b"not an image", "path": None}
    broken = datasets.Dataset.from_dict({"image": entries, "label": TRAIN_LABELS},
                                        features=_dataset(TRAIN_LABELS).features)
    with pytest.raises(ValueError, match=r"(?s)'train': 1 of 7 images.*index 3: UnidentifiedImageError"):
        verify_images(broken, "image", "train")


# --------------------------------------------------------------------------- transforms
@pytest.fixture(scope="module")
def models():
    return {1: timm.create_model("resnet8_cifar", in_chans=1, num_classes=3),
            3: timm.create_model("test_resnet", num_classes=3)}


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_transforms_match_the_model_channels(models, in_chans, mode):
    model = models[in_chans]
    assert model_in_chans(model) == model_in_chans(procrustean.ProcrusteanModel(model)) == in_chans
    data = _dataset(TRAIN_LABELS, mode=mode)
    for is_training, train_crop in ((True, "pad4"), (True, "rrc"), (False, "pad4")):
        transform = build_transforms(model, is_training=is_training, img_size=16, train_crop=train_crop)
        ds = with_image_transform(data, transform, "image", "label", in_chans)
        example = ds[0]
        assert set(example) == {"pixel_values", "labels"}
        assert example["pixel_values"].shape == (in_chans, 16, 16) and example["labels"] == 0
    batch = ProcrusteanCollator()([ds[i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, in_chans, 16, 16) and batch["labels"].tolist() == [0, 1, 2, 0]
    with torch.no_grad():
        assert model(batch["pixel_values"]).shape == (4, 3)


def test_pad4_is_random_crop_with_padding_and_flip(models):
    transform = build_transforms(models[1], is_training=True)  # the model's own size: 32
    names = [type(t).__name__ for t in transform.transforms]
    assert names.index("RandomCrop") < names.index("RandomHorizontalFlip") < names.index("MaybeToTensor")
    crop = transform.transforms[names.index("RandomCrop")]
    assert (crop.size, crop.padding) == ((32, 32), 4)
    normalize = transform.transforms[-1]
    assert normalize.mean.numel() == 1  # 3-channel CIFAR mean averaged for the grey model
    with pytest.raises(ValueError, match="apply to train_crop='rrc' only"):
        build_transforms(models[1], is_training=True, color_jitter=0.4)
    with pytest.raises(ValueError, match="train_crop must be"):
        build_transforms(models[1], is_training=True, train_crop="center")


def test_array_stored_images(models):
    arrays = datasets.Dataset.from_dict(
        {"image": [_pixels(i, "RGB") for i in range(3)], "label": [0, 1, 2]},
        features=datasets.Features({"image": datasets.Array3D((8, 8, 3), "uint8"),
                                    "label": datasets.ClassLabel(names=NAMES)}))
    assert verify_images(arrays, "image", "train") == 0  # nothing encoded to verify
    transform = build_transforms(models[1], is_training=False, img_size=8)
    assert with_image_transform(arrays, transform, "image", "label", 1)[2]["pixel_values"].shape == (1, 8, 8)


# --------------------------------------------------------------------------- Fashion-MNIST
def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_fashion_mnist(folder, n_train=20, n_test=10):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = rng.randint(0, 256, (n, 28, 28)).astype(np.uint8), np.arange(n) % 10
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
        arrays[prefix] = (images, labels)
    return arrays


def test_fashion_mnist_from_idx_files_and_cache(tmp_path):
    arrays = _fake_fashion_mnist(tmp_path / "fm")
    dd = load_fashion_mnist(str(tmp_path / "fm"), cache_dir=str(tmp_path / "cache"))
    assert {k: len(v) for k, v in dd.items()} == {"train": 20, "test": 10}
    assert dd["train"].features["label"].names == CLASS_NAMES
    image = dd["train"][3]["image"]
    assert (image.mode, image.size) == ("L", (28, 28))
    assert np.array_equal(np.asarray(image), arrays["train"][0][3])
    assert dd["test"]["label"] == arrays["t10k"][1].tolist()
    assert (tmp_path / "cache" / "dataset_dict.json").is_file()
    again = load_fashion_mnist(str(tmp_path / "fm"), cache_dir=str(tmp_path / "cache"))
    assert again["train"].cache_files[0]["filename"].startswith(str(tmp_path / "cache"))

    _fake_fashion_mnist(tmp_path / "fm", n_train=30)  # other files -> the cache is rebuilt
    assert len(load_fashion_mnist(str(tmp_path / "fm"), cache_dir=str(tmp_path / "cache"))["train"]) == 30


def test_fashion_mnist_locations_cli_and_recipe_name(tmp_path, monkeypatch):
    _fake_fashion_mnist(tmp_path / "root" / "usr/share/datasets/fashion-mnist")  # a `dpkg -x` root
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "root"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert len(load_fashion_mnist()["train"]) == 20
    assert (tmp_path / "hf" / "procrustean" / "fashion_mnist" / "dataset_dict.json").is_file()
    data = load_image_dataset("fashion_mnist")
    assert (data.source, data.eval_split, data.num_classes, data.class_names[9]) == ("fashion_mnist", "test", 10,
                                                                                     "Ankle boot")
    main(["--save_to_disk", str(tmp_path / "saved")])
    assert load_image_dataset(str(tmp_path / "saved")).source == "save_to_disk"


def test_fashion_mnist_missing_or_corrupt_files(tmp_path, monkeypatch):
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"(?s)not found in .*apt-get install -y dataset-fashion-mnist.*dpkg -x"):
        load_fashion_mnist(str(tmp_path / "nowhere"))
    if not os.path.isdir(DEFAULT_DIR):  # offline + nothing installed: no Hub fallback
        with pytest.raises(FileNotFoundError, match="cannot be used offline"):
            load_fashion_mnist()

    _fake_fashion_mnist(tmp_path / "fm")
    labels = tmp_path / "fm" / "train-labels-idx1-ubyte.gz"
    with gzip.open(labels, "wb") as f:
        f.write(b"\x08\x03\x00\x00" + bytes(20))
    with pytest.raises(ValueError, match="Corrupt IDX file .*bad magic"):
        load_fashion_mnist(str(tmp_path / "fm"), use_cache=False)
    with gzip.open(labels, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 20) + bytes(5))
    with pytest.raises(ValueError, match=r"Corrupt IDX file .*need 20 data bytes, found 5"):
        read_idx(labels)
    labels.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(ValueError, match="Corrupt IDX file .*cannot read it"):
        read_idx(labels)


@pytest.mark.skipif(not os.path.isfile(os.path.join(DEFAULT_DIR, "train-labels-idx1-ubyte.gz")),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_files():
    labels = read_idx(os.path.join(DEFAULT_DIR, "train-labels-idx1-ubyte.gz"))
    images = read_idx(os.path.join(DEFAULT_DIR, "t10k-images-idx3-ubyte.gz"))
    assert labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert np.bincount(labels).tolist() == [6000] * 10
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(read_idx(os.path.join(DEFAULT_DIR, "t10k-labels-idx1-ubyte.gz"))).tolist() == [1000] * 10


@pytest.mark.skipif(not os.path.isfile(os.path.join(DEFAULT_DIR, "train-labels-idx1-ubyte.gz")),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_dataset(tmp_path):  # the full 70k build: ~3 s
    dd = load_fashion_mnist(cache_dir=str(tmp_path / "cache"))
    train = dd["train"]
    assert (len(train), len(dd["test"])) == (60000, 10000)
    assert train["label"][:10] == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert np.bincount(train["label"]).tolist() == [6000] * 10
    images = read_idx(os.path.join(DEFAULT_DIR, "train-images-idx3-ubyte.gz"))
    for i in (0, 59999):
        assert np.array_equal(np.asarray(train[i]["image"]), images[i])


def test_the_old_fashion_mnist_module_still_works_with_a_warning():
    import importlib
    import sys

    sys.modules.pop("procrustean.fashion_mnist", None)
    with pytest.warns(FutureWarning, match="procrustean.data.fashion_mnist"):
        old = importlib.import_module("procrustean.fashion_mnist")
    assert old.load_fashion_mnist is load_fashion_mnist and old.main is main


def _randomly_transformed(n, calls):
    """An HF data set whose (batched) transform draws one random number per row, counting its calls."""
    def transform(batch):
        calls.append(len(batch["label"]))
        return {"value": [float(torch.rand(())) + random.random() for _ in batch["label"]], "label": batch["label"]}

    return datasets.Dataset.from_dict({"label": list(range(n))}).with_transform(transform)


def test_seeded_augmentation_reads_a_batch_at_once_and_depends_only_on_seed_epoch_and_indices():
    from procrustean.data import SampleSeededDataset

    calls = []
    data = SampleSeededDataset(_randomly_transformed(20, calls), seed=7)
    batch = data.__getitems__([3, 1, 4])
    assert calls == [3]  # one read and one transform call for the batch, not one per row
    torch.manual_seed(123), random.seed(5)  # the caller's RNG states play no part, and are left as they were
    state = torch.get_rng_state()
    assert data.__getitems__([3, 1, 4]) == batch and torch.equal(torch.get_rng_state(), state)
    assert data.__getitems__([5]) == [data[5]]  # a batch of one is seeded as the single read
    data.set_epoch(1)
    assert data.epoch == 1 and data.__getitems__([3, 1, 4]) != batch


def test_the_epoch_reaches_persistent_workers():
    from torch.utils.data import DataLoader

    from procrustean.data import SampleSeededDataset

    def epochs(workers, persistent):
        data = SampleSeededDataset(_randomly_transformed(12, []), seed=0)
        loader = DataLoader(data, batch_size=4, num_workers=workers, persistent_workers=persistent,
                            collate_fn=lambda rows: [r["value"] for r in rows])
        values = []
        for epoch in range(3):
            data.set_epoch(epoch)
            values.append([v for batch in loader for v in batch])
        return values

    reference = epochs(0, False)
    assert reference[0] != reference[1] != reference[2]
    assert epochs(2, True) == reference


def test_loader_settings_fit_the_machine(monkeypatch):
    from procrustean.train.loaders import MAX_AUTO_WORKERS, available_cpus, loader_settings

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert loader_settings(None, "pil", cpu) == {"num_workers": 0, "pin_memory": False, "persistent_workers": False}
    assert loader_settings(None, "in_memory", gpu)["num_workers"] == 0
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    on_gpu = loader_settings(None, "pil", gpu)
    assert on_gpu["pin_memory"] and on_gpu["persistent_workers"]
    assert on_gpu["num_workers"] == min(MAX_AUTO_WORKERS, max(1, available_cpus() - 1))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(10 * available_cpus()))  # more processes than cores: one each
    assert loader_settings(None, "pil", gpu)["num_workers"] == 1
    assert loader_settings(3, "pil", cpu) == {"num_workers": 3, "pin_memory": False, "persistent_workers": True}


def test_freed_host_memory_is_kept_on_glibc():
    import platform

    from procrustean.train.memory import keep_freed_memory

    assert keep_freed_memory() is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
