"""Imbalance builders: LDAM-DRW golden counts, exact selection, histograms and every error path."""
import json
import math

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image

from procrustean.data.imbalance import (ClassHistogram, class_histogram, imbalanced_counts, make_imbalanced,
                                   parse_imbalance)

CIFAR10_EXP100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


# ---------------------------------------------------------------- counts
def test_cifar10_golden_counts():
    exp = imbalanced_counts("exp", 100, 5000, 10)
    assert exp == CIFAR10_EXP100 and sum(exp) == 12406
    step = imbalanced_counts("step", 100, 5000, 10)
    assert step == [5000] * 5 + [50] * 5 and sum(step) == 25250
    # Other published sizes: CIFAR-10-LT(10) has 20,431 images, CIFAR-100-LT(100) 10,847.
    assert sum(imbalanced_counts("exp", 10, 5000, 10)) == 20431
    assert sum(imbalanced_counts("exp", 100, 500, 100)) == 10847


def test_fashion_mnist_counts_follow_the_formulas():
    exp = imbalanced_counts("exp", 100, 6000, 10)
    assert exp == [int(6000 * (1 / 100) ** (i / 9)) for i in range(10)]
    assert exp == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    assert imbalanced_counts("step", 100, 6000, 10) == [6000] * 5 + [60] * 5


def test_none_float_ratio_and_minor_fraction():
    assert imbalanced_counts("none", 1, 7, 3) == [7, 7, 7]
    assert imbalanced_counts("exp", 100.5, 5000, 10)[-1] == int(5000 / 100.5)
    assert imbalanced_counts("exp", 1, 10, 4) == [10] * 4
    # mu = 0.5 keeps LDAM's `C // 2` major classes, also for odd C.
    assert imbalanced_counts("step", 10, 100, 11) == [100] * 5 + [10] * 6
    assert imbalanced_counts("step", 10, 100, 10, minor_fraction=0.3) == [100] * 7 + [10] * 3
    assert imbalanced_counts("step", 10, 100, 10, minor_fraction=0.9) == [100] + [10] * 9


@pytest.mark.parametrize("args, match", [
    (("exp", 100, 50, 10), r"0 samples.*ratio"),
    (("step", 1000, 500, 10), r"0 samples"),
    (("exp", 10, 100, 1), r"at least 2 classes"),
    (("zipf", 10, 100, 10), r"Unknown imbalance profile"),
    (("exp", 0.5, 100, 10), r">= 1"),
    (("exp", 10, 0, 10), r"n_max"),
    (("exp", 10, 100, 0), r"num_classes"),
])
def test_imbalanced_counts_errors(args, match):
    with pytest.raises(ValueError, match=match):
        imbalanced_counts(*args)


def test_step_minor_fraction_errors():
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        imbalanced_counts("step", 10, 100, 10, minor_fraction=1.0)
    with pytest.raises(ValueError, match="at least one of each"):
        imbalanced_counts("step", 10, 100, 10, minor_fraction=0.99)


# ---------------------------------------------------------------- spec parsing
@pytest.mark.parametrize("spec, expected", [
    ("exp:100", ("exp", 100.0)), ("step:10", ("step", 10.0)), ("none", ("none", 1.0)),
    ("exp:100.5", ("exp", 100.5)), (" EXP:50 ", ("exp", 50.0)), ("step:1", ("step", 1.0)),
])
def test_parse_imbalance(spec, expected):
    assert parse_imbalance(spec) == expected


@pytest.mark.parametrize("spec", ["exp", "step:0.5", "foo:10", "exp:abc", "exp:", "", "exp:inf",
                                  "exp:nan", "none:3", "step:-10"])
def test_parse_imbalance_rejects_malformed(spec):
    with pytest.raises(ValueError, match="exp:100"):
        parse_imbalance(spec)


# ---------------------------------------------------------------- make_imbalanced
def _dataset(per_class=(60, 60, 60, 60, 60), seed=0, names=None, num_classes=None):
    """Labels in a shuffled order; the image column holds bytes that cannot be decoded."""
    labels = np.repeat(np.arange(len(per_class)), per_class)
    np.random.RandomState(seed).shuffle(labels)
    names = names or [f"c{i}" for i in range(num_classes or len(per_class))]
    features = Features({"image": Image(), "label": ClassLabel(names=names)})
    return Dataset.from_dict({"image": [{"bytes": b"not an image", "path": None}] * len(labels),
                              "label": labels.tolist()}, features=features)


def _ldam_selection(labels, img_num_per_cls, seed):
    """Literal copy of LDAM-DRW's IMBALANCECIFAR10.gen_imbalanced_data index selection."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        targets_np = np.array(labels, dtype=np.int64)
        classes = np.unique(targets_np)
        new_idx = []
        for the_class, the_img_num in zip(classes, img_num_per_cls):
            idx = np.where(targets_np == the_class)[0]
            np.random.shuffle(idx)
            selec_idx = idx[:the_img_num]
            new_idx.extend(selec_idx.tolist())
        return new_idx
    finally:
        np.random.set_state(state)


def test_selection_reproduces_ldam_loop_and_never_decodes_images():
    ds = _dataset()
    with pytest.raises(Exception):  # proves any decode would fail
        ds[0]["image"]
    labels = ds.with_format("numpy")["label"][:]
    for spec, seed in [("exp:10", 0), ("step:5", 3), ("exp:2.5", 123)]:
        out = make_imbalanced(ds, spec, seed=seed)
        targets = imbalanced_counts(*parse_imbalance(spec), 60, 5)
        expected = sorted(_ldam_selection(labels, targets, seed))
        assert out._indices.column(0).to_pylist() == expected  # rows kept in original order
        assert class_histogram(out).counts == targets


def test_seed_determinism_and_profile_forms():
    ds = _dataset()
    a = make_imbalanced(ds, "exp:10", seed=1)
    b = make_imbalanced(ds, "exp", 10, seed=1)
    c = make_imbalanced(ds, "exp:10", seed=2)
    ia, ib, ic = (d._indices.column(0).to_pylist() for d in (a, b, c))
    assert ia == ib and ia != ic
    assert class_histogram(a).counts == class_histogram(c).counts == [60, 33, 18, 10, 6]
    assert len(make_imbalanced(ds, "none")) == len(ds)


def test_max_per_class_and_uneven_input():
    ds = _dataset(per_class=(80, 40, 70, 30, 50))
    out = make_imbalanced(ds, "step:4", max_per_class=40)
    assert class_histogram(out).counts == [40, 40, 10, 10, 10]
    assert out.features == ds.features


def test_labels_read_without_a_set_transform():
    ds = _dataset().with_transform(lambda batch: {"pixels": [0] * len(batch["image"])})
    out = make_imbalanced(ds, "exp:10")
    assert class_histogram(out).counts == [60, 33, 18, 10, 6]


def test_make_imbalanced_errors():
    ds = _dataset()
    with pytest.raises(KeyError, match=r"available columns: \['image', 'label'\]"):
        make_imbalanced(ds, "exp:10", label_column="target")
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        make_imbalanced(ds, "exp:10", num_classes=3)
    with pytest.raises(ValueError, match=r"class 0 needs 61 but has 60.*max_per_class=60"):
        make_imbalanced(ds, "exp:10", max_per_class=61)
    with pytest.raises(ValueError, match=r"1 of 6 classes have no training samples: 5"):
        make_imbalanced(_dataset(num_classes=6), "exp:10")
    with pytest.raises(ValueError, match="Give the ratio once"):
        make_imbalanced(ds, "exp:10", ratio=10)
    with pytest.raises(ValueError, match="needs a ratio"):
        make_imbalanced(ds, "step")
    with pytest.raises(ValueError, match="Unknown imbalance profile"):
        make_imbalanced(ds, "zipf", 10)
    with pytest.raises(ValueError, match="0 samples"):
        make_imbalanced(ds, "exp:100")
    with pytest.raises(ValueError, match="max_per_class must be a positive integer"):
        make_imbalanced(ds, "exp:10", max_per_class=0)


def test_shortage_suggests_the_largest_fitting_n_max():
    ds = _dataset(per_class=(100, 100, 100, 100, 5))
    with pytest.raises(ValueError, match=r"class 4 needs 10 but has 5.*max_per_class=59") as info:
        make_imbalanced(ds, "exp:10")
    fits = int(str(info.value).split("max_per_class=")[1].split(" ")[0])
    assert class_histogram(make_imbalanced(ds, "exp:10", max_per_class=fits)).counts[-1] == 5


# ---------------------------------------------------------------- histogram
def test_class_histogram_from_dataset_and_labels():
    hist = class_histogram(make_imbalanced(_dataset(), "exp:10"))
    assert hist.counts == [60, 33, 18, 10, 6] and hist.num_samples == 127
    assert hist.class_names == ["c0", "c1", "c2", "c3", "c4"]
    assert hist.imbalance_ratio == 10.0
    text = hist.format(width=20)
    rows = text.splitlines()
    assert len(rows) == 1 + 5 + 1 and "c0" in rows[1] and "#" * 20 in rows[1] and "47.24%" in rows[1]
    assert "imbalance ratio" in rows[-1]
    assert json.loads(json.dumps(hist.to_dict()))["counts"] == hist.counts
    assert class_histogram([0, 0, 1], class_names=["x", "y"]).class_names == ["x", "y"]
    assert class_histogram(torch.tensor([2, 2, 0])).counts == [1, 0, 2]


def test_empty_class_gives_infinite_ratio():
    hist = class_histogram([0, 0, 2], num_classes=4)
    assert hist.counts == [2, 0, 1, 0] and hist.empty_classes == [1, 3]
    assert math.isinf(hist.imbalance_ratio)
    assert hist.to_dict()["imbalance_ratio"] is None
    assert "(empty)" in hist.format() and "inf" in str(hist)


def test_class_histogram_errors():
    with pytest.raises(ValueError, match="one name per class"):
        ClassHistogram(counts=[1, 2], class_names=["a"])
    with pytest.raises(ValueError, match="non-negative"):
        ClassHistogram(counts=[1, -2])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        class_histogram([0, 3], num_classes=2)
    with pytest.raises(KeyError, match="available columns"):
        class_histogram(_dataset(), label_column="y")


def test_class_order_moves_the_imbalance_onto_other_classes():
    ds = _dataset()
    natural = make_imbalanced(ds, "step:10", seed=4)
    assert make_imbalanced(ds, "step:10", seed=4, class_order=[0, 1, 2, 3, 4])._indices.column(0).to_pylist() \
        == natural._indices.column(0).to_pylist()  # label order is the default
    moved = make_imbalanced(ds, "step:10", seed=4, class_order=[3, 0, 4, 1, 2])
    assert class_histogram(moved).counts == [60, 6, 6, 60, 6]  # classes 3 and 0 take the major counts
    labels = ds.with_format("numpy")["label"][:]

    def rows_of(subset, c):
        return [i for i in subset._indices.column(0).to_pylist() if labels[i] == c]

    assert rows_of(moved, 2) == rows_of(natural, 2)  # a class keeps its own seeded shuffle: same rows at the same count
    for bad in ([0, 1, 2, 3], [0, 0, 1, 2, 3], [1, 2, 3, 4, 5]):
        with pytest.raises(ValueError, match="permutation"):
            make_imbalanced(ds, "step:10", class_order=bad)


def test_errors_about_many_classes_stay_short():
    """A thousand-class data set that cannot take the profile gets an error of a few lines, not every class."""
    import datasets

    from procrustean.errors import UsageError

    features = datasets.Features({"label": datasets.ClassLabel(num_classes=1000)})
    data = datasets.Dataset.from_dict({"label": [c % 1000 for c in range(5000)]}, features=features)
    with pytest.raises(UsageError, match=r"\.\.\. \(\d+ classes\)") as error:
        make_imbalanced(data, "exp:100", seed=0)
    assert len(str(error.value)) < 600
    with pytest.raises(UsageError, match=r"\.\.\. \(\d+ classes short\)") as error:
        make_imbalanced(data, "exp:2", seed=0, max_per_class=9)
    assert len(str(error.value)) < 800
