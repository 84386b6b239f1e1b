"""A real 2-process gloo DDP run of the recipe on CPU (accelerate launch, ACCELERATE_USE_CPU=1)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
CPU_2PROC = ROOT / "recipes" / "accelerate" / "cpu_2proc.yaml"


def launch(args, tmp_path, check=True, port=29517, faults=()):
    """2 processes; every run goes through the tests' fault launcher (tests/fault_launcher.py)."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_2PROC),
           "--main_process_port", str(port), str(ROOT / "tests" / "fault_launcher.py"), *faults, "--", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """train: 4 classes x 10 (odd sizes after exp:3), test: 13 images (not divisible by 2 processes x batch)."""
    root = tmp_path_factory.mktemp("ddp-data")
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 10), ("test", 3)):
        for label in range(4):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(per_class + (1 if split == "test" and label == 0 else 0)):
                img = (rng.random((12, 12)) * 60).astype(np.uint8)
                img[label * 3:label * 3 + 3] = 255
                Image.fromarray(img, "L").save(folder / f"{i}.png")
    return root


COMMON = ["--imbalance", "exp:3", "--model", "resnet8_cifar", "--img_size", "16", "--batch_size", "4",
          "--eval_batch_size", "4", "--report_to", "none", "--warmup_epochs", "0", "--lr", "0.05",
          "--lr_scheduler", "constant", "--weakening_location", "random", "--weakening_gamma", "0",
          "--verify_images", "false", "--seed", "5",
          "--weakening_rule", "progress", "--progress_interval", "2"]  # plus the progress statistics: global, resumed


def test_two_processes_agree_and_gather_exactly(data, tmp_path):
    out, reports = tmp_path / "run", tmp_path / "reports"
    proc = launch(["--dataset", str(data), "--epochs", "2", "--output_dir", str(out), *COMMON], tmp_path,
                  faults=["--rank_report", str(reports)])
    ranks = [json.loads((reports / f"rank{i}.json").read_text()) for i in range(2)]
    assert [r["num_processes"] for r in ranks] == [2, 2], "the two processes did not form one DDP group"
    assert ranks[0]["parameter_digest"] == ranks[1]["parameter_digest"]  # synchronised training
    assert ranks[0]["class_counts"] == ranks[1]["class_counts"] == [10, 6, 4, 3]  # global, not per shard
    assert ranks[0]["probabilities"] == ranks[1]["probabilities"]  # progress rule: from all-reduced statistics
    assert ranks[0]["progress_seen"] == ranks[1]["progress_seen"] and sum(ranks[0]["progress_seen"]) > 0
    for r in ranks:  # partners come from the local batch (4 per process), never the global one
        assert r["max_plan_batch"] == 4 and 0 <= r["max_partner"] < 4
        assert r["eval_num_samples"] == [13, 13]  # exactly the eval set: no padding duplicates
    assert ranks[0]["train_accuracy_history"] == ranks[1]["train_accuracy_history"]  # reduced across ranks
    # written once, by the main process
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3
    assert len(list((out / "checkpoints").iterdir())) == 2 and (out / "export" / "model.safetensors").exists()
    assert proc.stdout.count("Results:") == 1


def test_two_process_kill_and_resume_matches_uninterrupted(data, tmp_path):
    args = ["--dataset", str(data), "--epochs", "2", "--checkpointing_steps", "2", *COMMON]
    full, broken = tmp_path / "full", tmp_path / "broken"
    launch([*args, "--output_dir", str(full)], tmp_path, port=29518)
    # 23 images / (2 x 4) -> 3 steps per epoch; kill both processes after the checkpoint of step 4 (mid epoch 2)
    proc = launch([*args, "--output_dir", str(broken)], tmp_path, check=False, port=29519,
                  faults=["--kill_after_checkpoint", "4"])
    assert proc.returncode != 0 and not (broken / "export").exists()
    assert sorted(p.name for p in (broken / "checkpoints").iterdir())[-1] == "step_00000004"
    launch([*args, "--output_dir", str(broken), "--resume_from_checkpoint", "latest"], tmp_path, port=29520)
    a, b = load_file(full / "export" / "model.safetensors"), load_file(broken / "export" / "model.safetensors")
    for key in a:
        assert torch.equal(a[key], b[key]), key
