"""Long-tail accuracy: hand-computed values, group conventions, errors, and offline `evaluate.load`."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from procrustean.metrics import (LONG_TAIL_ACCURACY_PATH, LongTailAccuracy, compute_long_tail_accuracy,
                                 load_long_tail_accuracy)

REPO = Path(__file__).resolve().parents[1]


def test_hand_computed_example():
    # class 0: 3/4 right, class 1: 1/2, class 2: 0/1, class 3: no eval samples.
    preds = [0, 0, 0, 1, 1, 0, 1]
    refs = [0, 0, 0, 0, 1, 1, 2]
    r = compute_long_tail_accuracy(preds, refs, num_classes=4)
    assert r["image_averaged_accuracy"] == pytest.approx(4 / 7)
    assert r["per_class_accuracy"] == [0.75, 0.5, 0.0, None]
    assert r["per_class_count"] == [4, 2, 1, 0]
    assert r["class_averaged_accuracy"] == pytest.approx((0.75 + 0.5 + 0.0) / 3)
    assert "many_shot_accuracy" not in r and "major_class_accuracy" not in r


def test_balanced_eval_set_image_average_equals_class_average():
    rng = np.random.RandomState(0)
    refs = np.repeat(np.arange(10), 30)
    preds = np.where(rng.rand(refs.size) < 0.6, refs, rng.randint(0, 10, refs.size))
    r = compute_long_tail_accuracy(preds, refs)
    assert r["image_averaged_accuracy"] == pytest.approx(r["class_averaged_accuracy"])


def test_imbalanced_eval_set_averages_differ():
    refs = [0] * 8 + [1] * 2
    preds = [0] * 8 + [0] * 2  # always predicts the major class
    r = compute_long_tail_accuracy(preds, refs)
    assert r["image_averaged_accuracy"] == pytest.approx(0.8)
    assert r["class_averaged_accuracy"] == pytest.approx(0.5)


def test_shot_groups_and_boundaries():
    train = [500, 101, 100, 20, 19, 5]
    refs = [0, 1, 2, 3, 4, 5, 0, 4]
    preds = [0, 1, 2, 0, 4, 0, 0, 0]  # per class: 1, 1, 1, 0, 0.5, 0
    r = compute_long_tail_accuracy(preds, refs, train_class_counts=train)
    assert (r["many_shot_classes"], r["medium_shot_classes"], r["few_shot_classes"]) == ([0, 1], [2, 3], [4, 5])
    assert r["many_shot_accuracy"] == 1.0
    assert r["medium_shot_accuracy"] == pytest.approx(0.5)
    assert r["few_shot_accuracy"] == pytest.approx(0.25)
    # median of train = (100 + 20) / 2 = 60: major = counts strictly above it.
    assert r["major_classes"] == [0, 1, 2] and r["minor_classes"] == [3, 4, 5]
    assert r["major_class_accuracy"] == 1.0
    assert r["minor_class_accuracy"] == pytest.approx(0.5 / 3)
    r = compute_long_tail_accuracy(preds, refs, train_class_counts=train, many_shot_threshold=200,
                                   few_shot_threshold=5)
    assert (r["many_shot_classes"], r["medium_shot_classes"], r["few_shot_classes"]) == ([0], [1, 2, 3, 4, 5], [])
    assert r["few_shot_accuracy"] is None


def test_group_without_eval_samples_is_none():
    r = compute_long_tail_accuracy([0, 0], [0, 0], train_class_counts=[500, 5])
    assert r["few_shot_classes"] == [1] and r["few_shot_accuracy"] is None
    assert r["medium_shot_accuracy"] is None
    assert r["per_class_accuracy"] == [1.0, None]


def test_major_minor_step_and_explicit():
    train = [5000] * 5 + [50] * 5
    refs = list(range(10))
    preds = [0, 1, 2, 3, 4, 0, 0, 0, 8, 9]
    r = compute_long_tail_accuracy(preds, refs, train_class_counts=train)
    assert r["major_classes"] == [0, 1, 2, 3, 4] and r["minor_classes"] == [5, 6, 7, 8, 9]
    assert (r["major_class_accuracy"], r["minor_class_accuracy"]) == (1.0, pytest.approx(0.4))
    # Equal training counts: nobody is above the median.
    r = compute_long_tail_accuracy(preds, refs, train_class_counts=[10] * 10)
    assert r["major_classes"] == [] and r["major_class_accuracy"] is None
    # Explicit major classes work without training counts too.
    r = compute_long_tail_accuracy(preds, refs, major_classes=[5, 0])
    assert r["major_classes"] == [0, 5] and r["major_class_accuracy"] == pytest.approx(0.5)
    assert "many_shot_accuracy" not in r


def test_num_classes_defaults():
    assert len(compute_long_tail_accuracy([1], [1], train_class_counts=[3, 2, 1])["per_class_count"]) == 3
    assert len(compute_long_tail_accuracy([4], [1])["per_class_count"]) == 5
    assert compute_long_tail_accuracy(np.array([1.0, 0.0]), np.array([1, 0]))["image_averaged_accuracy"] == 1.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(predictions=[0, 1], references=[0]), "same length"),
    (dict(predictions=[0, 3], references=[0, 1], num_classes=3), r"predictions must lie in \[0, 3\)"),
    (dict(predictions=[0, 1], references=[0, -1]), r"references must lie in \[0, 2\)"),
    (dict(predictions=[0, 2], references=[0, 1], train_class_counts=[5, 5]), r"\[0, 2\)"),
    (dict(predictions=[0], references=[0], many_shot_threshold=10, few_shot_threshold=20),
     "few_shot_threshold <= many_shot_threshold"),
    (dict(predictions=[0], references=[0], train_class_counts=[5, 5], num_classes=3), "one training count"),
    (dict(predictions=[0], references=[0], train_class_counts=[5, -1]), "non-negative"),
    (dict(predictions=[[0.1, 0.9]], references=[1]), "argmax"),
    (dict(predictions=[0.5], references=[0]), "integer class ids"),
    (dict(predictions=[], references=[]), "empty"),
    (dict(predictions=[0], references=[0], num_classes=2, major_classes=[2]), r"major_classes.*\[0, 2\)"),
])
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        compute_long_tail_accuracy(**kwargs)


def test_metric_class_in_process(tmp_path):
    metric = LongTailAccuracy(cache_dir=str(tmp_path))
    metric.add_batch(predictions=[0, 0, 0], references=[0, 0, 1])
    metric.add_batch(predictions=np.array([1, 2]), references=np.array([1, 1]))
    r = metric.compute(train_class_counts=[100, 10, 1])
    assert r["per_class_accuracy"] == [1.0, 1 / 3, None]
    assert r["image_averaged_accuracy"] == pytest.approx(0.6)
    assert "class-averaged" in metric.description and "Large-Scale Long-Tailed" in metric.citation


def test_path_points_at_the_script():
    assert os.path.isabs(LONG_TAIL_ACCURACY_PATH)
    assert os.path.isfile(os.path.join(LONG_TAIL_ACCURACY_PATH, "long_tail_accuracy.py"))
    assert callable(load_long_tail_accuracy)


_OFFLINE_SCRIPT = textwrap.dedent("""
    import json, os, evaluate
    from procrustean.metrics import LONG_TAIL_ACCURACY_PATH, load_long_tail_accuracy
    out = {}
    metric = load_long_tail_accuracy()
    for p, r in [([0, 0, 0], [0, 0, 0]), ([0, 1, 0], [0, 1, 2])]:
        metric.add_batch(predictions=p, references=r)
    out["dir"] = metric.compute(train_class_counts=[500, 50, 5])
    by_file = evaluate.load(os.path.join(LONG_TAIL_ACCURACY_PATH, "long_tail_accuracy.py"))
    out["file"] = by_file.compute(predictions=[0, 1], references=[0, 0])
    out["module"] = type(metric).__module__
    print(json.dumps(out))
""")


def test_evaluate_load_offline_fresh_hf_home(tmp_path):
    """evaluate reads HF_HOME at import time, hence a fresh interpreter with the offline env set first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_EVALUATE_OFFLINE="1", PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _OFFLINE_SCRIPT], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    r = out["dir"]
    assert r["per_class_count"] == [4, 1, 1] and r["per_class_accuracy"] == [1.0, 1.0, 0.0]
    assert r["image_averaged_accuracy"] == pytest.approx(5 / 6)
    assert r["class_averaged_accuracy"] == pytest.approx(2 / 3)
    assert (r["many_shot_accuracy"], r["medium_shot_accuracy"], r["few_shot_accuracy"]) == (1.0, 1.0, 0.0)
    assert (r["major_classes"], r["minor_class_accuracy"]) == ([0], 0.5)
    assert out["file"]["image_averaged_accuracy"] == 0.5
    assert out["module"].startswith("evaluate_modules.metrics.long_tail_accuracy")
    assert list((tmp_path / "hf" / "modules").rglob("long_tail_accuracy.py")), "not copied under HF_HOME"
