"""The tools the benchmarks stand on: the step clock times any loop from outside, and stops it; the fine-tuning chain."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_step_clock_stamps_every_optimizer_step_and_ends_the_script(tmp_path):
    script = tmp_path / "loop.py"
    script.write_text(
        "import torch\n"
        "w = torch.nn.Parameter(torch.zeros(3))\n"
        "opt = torch.optim.SGD([w], lr=0.1)\n"
        "for _ in range(100):\n"
        "    w.sum().backward(); opt.step(); opt.zero_grad()\n"
        "print('never reached')\n")
    stamps, profile = tmp_path / "stamps.json", tmp_path / "loop.prof"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "step_clock.py"), str(stamps), "7",
                           "--profile", str(profile), str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    times = json.loads(stamps.read_text())
    assert len(times) == 7 and times == sorted(times) and "never reached" not in proc.stdout
    assert profile.stat().st_size > 0


def test_step_clock_says_when_the_script_ends_too_early(tmp_path):
    script = tmp_path / "short.py"
    script.write_text("import torch\nw = torch.nn.Parameter(torch.zeros(1))\ntorch.optim.SGD([w], lr=1).step()\n")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "step_clock.py"), str(tmp_path / "s.json"), "5",
                           str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "ended after 1 optimizer steps, before the 5" in proc.stderr


def test_prepare_digits_splits_opencvs_sheet_into_a_balanced_test_set_and_a_disjoint_pool(tmp_path):
    """On a synthetic 2000x1000 sheet laid out like OpenCV's digits.png: every digit image carries its own index
    as its pixel value, so the split's disjointness and the class of each image can be read back."""
    import numpy as np
    from datasets import load_from_disk
    from PIL import Image

    index = np.arange(5000).reshape(50, 100)  # row r holds class r // 5, as in OpenCV's sheet
    cells = (index % 251).astype(np.uint8)[:, None, :, None] * np.ones((1, 20, 1, 20), np.uint8)
    sheet = cells.reshape(1000, 2000)
    Image.fromarray(sheet).save(tmp_path / "digits.png")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "prepare_digits.py"), "--digits_png",
                           str(tmp_path / "digits.png"), "--output_dir", str(tmp_path / "digits"),
                           "--test_per_class", "30", "--seed", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = load_from_disk(str(tmp_path / "digits"))
    assert len(data["test"]) == 300 and len(data["train"]) == 4700
    assert np.bincount(data["test"]["label"], minlength=10).tolist() == [30] * 10
    assert np.bincount(data["train"]["label"], minlength=10).tolist() == [470] * 10
    assert data["train"].features["label"].names == [str(d) for d in range(10)]
    first = np.asarray(data["train"][0]["image"])
    assert first.shape == (20, 20) and len(np.unique(first)) == 1
    wrong = tmp_path / "small.png"
    Image.fromarray(sheet[:500]).save(wrong)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "prepare_digits.py"), "--digits_png", str(wrong),
                           "--output_dir", str(tmp_path / "x")], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "not OpenCV's 2000x1000" in proc.stderr


def test_pretrain_source_resumes_an_interrupted_source_and_keeps_a_finished_one(imagefolder, tmp_path):
    """The fine-tuning chain resumes like the suites: an interrupted source goes on from its last epoch, a finished
    one is kept, and a finished one made by another command is never overwritten."""
    import shutil

    from procrustean.train.checkpoints import list_checkpoints

    out = tmp_path / "source"
    source = [sys.executable, str(ROOT / "benchmarks" / "pretrain_source.py"), "--family", "mobilenetv3",
              "--output_dir", str(out), "--dataset", str(imagefolder), "--max_per_class", "4", "--epochs", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(source, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads((out / "pretrain_source.json").read_text())
    assert "--imbalance none --max_per_class 4" in summary["command"] and (out / "export" / "model.safetensors").exists()
    assert json.loads((out / "all_results.json").read_text())["train_class_counts"] == [4, 4, 4]

    (out / "pretrain_source.json").unlink()  # as if killed during the last epoch: only epoch 1's checkpoint is left
    shutil.rmtree(list_checkpoints(out)[-1])
    resumed = subprocess.run(source, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stdout and "step_" in resumed.stdout
    assert json.loads((out / "pretrain_source.json").read_text()) == summary

    again = subprocess.run(source, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert again.returncode == 0 and "already pretrained" in again.stdout
    other = subprocess.run([*source, "--seed", "1"], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert other.returncode == 2 and "pretrained by another command" in other.stderr
