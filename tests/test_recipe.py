"""recipes/train.py end to end: accelerate launch in a subprocess on generated data, exact resume, export."""
import json

import numpy as np
import pytest
import torch

from recipe_utils import SMALL, assert_same_weights, pattern_image as _pattern, run


@pytest.fixture(scope="module")
def saved_dataset(tmp_path_factory):
    """A save_to_disk DatasetDict with other column names (img / fine), grey images, 4 classes."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features
    from datasets import Image as ImageFeature

    root = tmp_path_factory.mktemp("saved") / "ds"
    rng = np.random.default_rng(1)
    features = Features({"img": ImageFeature(), "fine": ClassLabel(names=["w", "x", "y", "z"])})

    def split(per_class):
        labels = [c for c in range(4) for _ in range(per_class)]
        return Dataset.from_dict({"img": [_pattern(c, 12, rng, "L") for c in labels], "fine": labels},
                                 features=features)

    DatasetDict({"train": split(10), "validation": split(3)}).save_to_disk(str(root))
    return root


def test_imagefolder_end_to_end_with_export_round_trip(imagefolder, tmp_path):
    out = tmp_path / "run"
    proc = run(["--dataset", str(imagefolder), "--imbalance", "exp:3", "--epochs", "2", "--output_dir", str(out),
                "--weakening_location", "random", "--seed", "1", *SMALL])
    assert "imbalance ratio" in proc.stdout and "prior p" in proc.stdout  # histogram + the progress rule's prior
    results = json.loads((out / "all_results.json").read_text())
    assert results["epochs_completed"] == 2 and results["class_names"] == ["ant", "bee", "cat"]
    assert results["weakening_location"] == "random"
    assert results["train_class_counts"] == [12, 6, 4]  # exp:3 of 12 per class
    for key in ("eval_image_averaged_accuracy", "eval_class_averaged_accuracy", "eval_per_class_accuracy",
                "train_per_class_accuracy"):
        assert results[key] is not None, key
    assert (out / "plots" / "per_class_accuracy.png").stat().st_size > 1000
    assert (out / "plots" / "training_progress.png").stat().st_size > 1000
    assert len((out / "metrics.csv").read_text().splitlines()) == 3
    assert (out / "training_config.yaml").exists() and (out / "checkpoints").is_dir()

    import timm
    from transformers import AutoModelForImageClassification

    import procrustean  # noqa: F401

    export = out / "export"
    for name in ("config.json", "model.safetensors", "README.md", "training_config.yaml", "all_results.json"):
        assert (export / name).exists(), name
    x = torch.randn(2, 3, 16, 16)
    timm_model = timm.create_model(f"local-dir:{export}", pretrained=True).eval()
    hf_model = AutoModelForImageClassification.from_pretrained(str(export)).eval()
    with torch.no_grad():
        assert torch.equal(timm_model(x), hf_model(pixel_values=x).logits)
    assert hf_model.config.id2label[2] == "cat"
    card = (export / "README.md").read_text()
    assert card.startswith("---") and "procrustean" in card and "exp:3" in card


def test_saved_dataset_other_columns_grey_plain_python_and_failed_push(saved_dataset, tmp_path):
    out = tmp_path / "run"
    proc = run(["--dataset", str(saved_dataset), "--image_column", "img", "--label_column", "fine", "--in_chans", "1",
                "--imbalance", "step:2", "--epochs", "1", "--max_train_steps", "6", "--output_dir", str(out),
                "--verify_images", "false",
                "--push_to_hub", "someone/fmnist-lt", *SMALL], launcher="python", check=False,
               env_extra={"HF_TOKEN": "hf_not_a_real_token", "HF_HUB_OFFLINE": "1"})
    # the Hub is unreachable (offline): one clear message, the retry command, and the export kept
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f"python -m procrustean.hub push {out / 'export'} someone/fmnist-lt" in proc.stderr
    assert "Traceback" not in proc.stderr
    results = json.loads((out / "all_results.json").read_text())
    # 30 images, batch 8 -> 4 steps per epoch: --max_train_steps 6 overrides --epochs 1 (2 epochs, 6 steps)
    assert results["steps"] == 6 and results["epochs_completed"] == 2
    assert results["train_class_counts"] == [10, 10, 5, 5]
    # --weakening_location auto (the default), resolved for the CIFAR ResNet: in the results and on the card
    assert results["weakening_location"] == "stage:1"
    assert "stage:1 (auto)" in (out / "export" / "README.md").read_text()
    # and what the weakening measured for the family: it helped the CIFAR ResNet, so no advice to switch it off
    assert "Measured for CifarResNet: from scratch, 200 epochs, on top of LDAM-DRW: +1.9 pp" in proc.stdout
    assert "--weakening false" not in proc.stdout
    config = json.loads((out / "export" / "config.json").read_text())
    assert config["label_names"] == ["w", "x", "y", "z"] and config["model_args"]["in_chans"] == 1
    assert (out / "export" / "model.safetensors").stat().st_size > 10_000


def test_kill_and_resume_mid_epoch_gives_identical_weights(imagefolder, tmp_path):
    # 36 images, batch 8 -> 5 steps per epoch; 2 epochs; checkpoints every 2 steps; killed (SIGKILL) after step 6's
    common = ["--dataset", str(imagefolder), "--imbalance", "none", "--epochs", "2", "--checkpointing_steps", "2",
              "--weakening_location", "random", "--seed", "3", "--verify_images", "false", *SMALL]
    full = tmp_path / "full"
    run([*common, "--output_dir", str(full)])
    broken = tmp_path / "broken"
    proc = run([*common, "--output_dir", str(broken)], faults=["--kill_after_checkpoint", "6"], check=False)
    assert proc.returncode != 0 and not (broken / "export").exists()
    checkpoints = sorted(p.name for p in (broken / "checkpoints").iterdir())
    assert checkpoints[-1] == "step_00000006"  # the last complete checkpoint, mid-epoch 2
    run([*common, "--output_dir", str(broken), "--resume_from_checkpoint", "latest"])
    assert_same_weights(full, broken)
    full_rows = (full / "metrics.csv").read_text().splitlines()
    assert full_rows == (broken / "metrics.csv").read_text().splitlines()  # same history, written once


# ------------------------------------------------------------------------------------- bad input
def _error_of(args, tmp_path):
    proc = run(["--imbalance", "none", *SMALL, *args, "--output_dir", str(tmp_path / "bad-run")], launcher="python",
               check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "error: " in proc.stderr
    return proc.stderr + proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--label_column", "labelz"], "--label_column"),
    (["--image_column", "picture"], "--image_column"),
    (["--imbalance", "exp"], "'exp:<ratio>'"),
    (["--checkpointing_steps", "sometimes"], "--checkpointing_steps"),
    (["--imbalance", "step:1000"], "0 samples"),
    (["--model", "resnet8_cifarr"], "Unknown timm model"),
    (["--resume_from_checkpoint", "/nonexistent/ckpt"], "not a checkpoint"),
    (["--weakening_location", "stage:9"], "supported"),
])
def test_bad_input_fails_before_training_with_the_fix(imagefolder, tmp_path, args, message):
    text = _error_of(["--dataset", str(imagefolder), "--epochs", "1", *args], tmp_path)
    assert message in text, text[-3000:]
    assert not (tmp_path / "bad-run" / "checkpoints").exists()


def test_output_dir_holding_another_run_is_refused(imagefolder, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "training_config.yaml").write_text("epochs: 1\n")
    proc = run(["--dataset", str(imagefolder), "--output_dir", str(out), *SMALL], launcher="python", check=False)
    assert proc.returncode != 0 and "--overwrite_output_dir" in proc.stderr
    assert (out / "training_config.yaml").read_text() == "epochs: 1\n"


def test_corrupt_image_is_named_with_index_and_path(imagefolder, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(imagefolder, root)
    bad = root / "train" / "bee" / "3.png"
    bad.write_bytes(bad.read_bytes()[:40])
    text = _error_of(["--dataset", str(root), "--epochs", "1"], tmp_path)
    assert "3.png" in text and "index" in text.lower()


def test_eval_labels_out_of_range(tmp_path):
    from datasets import Dataset, DatasetDict

    rng = np.random.default_rng(0)
    imgs = [_pattern(0, 12, rng, "L") for _ in range(6)]
    ds = DatasetDict({"train": Dataset.from_dict({"image": imgs, "label": [0, 1, 0, 1, 0, 1]}),
                      "test": Dataset.from_dict({"image": imgs[:2], "label": [0, 5]})})
    ds.save_to_disk(str(tmp_path / "ds"))
    text = _error_of(["--dataset", str(tmp_path / "ds"), "--epochs", "1"], tmp_path)
    assert "[0, 2)" in text


def test_mixup_control_and_diagnostics_are_logged(imagefolder, tmp_path):
    out = tmp_path / "run"
    run(["--dataset", str(imagefolder), "--imbalance", "exp:3", "--epochs", "3", "--output_dir", str(out),
         "--mixup_alpha", "0.4", "--log_feature_gradients", "true", "--eval_train_accuracy", "true",
         "--eval_every_epochs", "2", "--verify_images", "false", *SMALL], launcher="python")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert rows[0]["eval_per_class_accuracy"] is None and rows[1]["eval_per_class_accuracy"] is not None
    assert rows[2]["eval_per_class_accuracy"] is not None  # the last epoch is always evaluated
    assert all(r["weakening"] is False for r in rows)  # mixup replaces the weakening
    assert "baseline without weakening" in (out / "export" / "README.md").read_text()
    assert len(rows[2]["train_feature_gradient_norm"]) == 3 and all(g > 0 for g in rows[2]["train_feature_gradient_norm"])
    assert len(rows[1]["train_clean_per_class_accuracy"]) == 3
    import csv

    with open(out / "metrics.csv") as f:
        table = list(csv.DictReader(f))  # one header for all epochs, eval cells empty where not evaluated
    assert [r["eval_class_averaged_accuracy"] == "" for r in table] == [True, False, False]
    assert float(table[1]["eval_class_averaged_accuracy"]) == rows[1]["eval_class_averaged_accuracy"]


def test_data_without_a_held_out_split_still_exports_and_max_per_class_caps_a_balanced_set(imagefolder, tmp_path):
    import shutil

    root = tmp_path / "only-train"
    shutil.copytree(imagefolder / "train", root / "train")
    out = tmp_path / "run"
    run(["--dataset", str(root), "--imbalance", "none", "--max_per_class", "5", "--epochs", "1",
         "--output_dir", str(out), "--verify_images", "false", *SMALL], launcher="python")
    assert json.loads((out / "all_results.json").read_text())["train_class_counts"] == [5, 5, 5]  # balanced subset
    card = (out / "export" / "README.md").read_text()
    assert "No held-out split was evaluated" in card and (out / "export" / "model.safetensors").exists()
