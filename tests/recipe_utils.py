"""Shared by the recipe tests: run recipes/train.py in a subprocess, make small image data."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "recipes" / "train.py")
FAULT_LAUNCHER = str(ROOT / "tests" / "fault_launcher.py")  # injects faults from outside the recipe
SMALL = ["--model", "resnet8_cifar", "--img_size", "16", "--batch_size", "8", "--eval_batch_size", "16",
         "--report_to", "none", "--warmup_epochs", "0", "--lr", "0.05", "--lr_scheduler", "constant"]


def run(args, launcher="accelerate", env_extra=None, check=True, faults=None):
    """Run the recipe; ``faults`` (flags of tests/fault_launcher.py) runs it through the fault launcher."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    script = [FAULT_LAUNCHER, *faults, "--"] if faults else [TRAIN]
    if launcher == "accelerate":
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", *script, *args]
    else:
        cmd = [sys.executable, *script, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-6000:]}")
    return proc


def pattern_image(label, size, rng, mode):
    img = (rng.random((size, size)) * 80).astype(np.uint8)
    img[:, label * 3:(label * 3) + 3] = 255  # a class-specific bright stripe
    if mode == "RGB":
        return Image.fromarray(np.stack([img, img[::-1], img.T], axis=-1), "RGB")
    return Image.fromarray(img, "L")


def make_imagefolder(root):
    """train/ (3 classes x 12) and test/ (3 x 4) of 12x12 RGB PNGs."""
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 12), ("test", 4)):
        for label, name in enumerate(["ant", "bee", "cat"]):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pattern_image(label, 12, rng, "RGB").save(folder / f"{i}.png")
    return root


def assert_same_weights(a_dir, b_dir):
    """The exports of two runs hold bit-identical weights (what an exact resume must give)."""
    import torch
    from safetensors.torch import load_file

    a, b = load_file(Path(a_dir) / "export" / "model.safetensors"), load_file(Path(b_dir) / "export" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def run_killed_and_resumed(args, full, broken, kill_after):
    """The same run twice: to the end in ``full``; in ``broken`` killed (SIGKILL) right after the checkpoint of
    step ``kill_after``, then resumed with ``--resume_from_checkpoint latest``."""
    run([*args, "--output_dir", str(full)], launcher="python")
    proc = run([*args, "--output_dir", str(broken)], launcher="python", check=False,
               faults=["--kill_after_checkpoint", str(kill_after)])
    assert proc.returncode != 0
    run([*args, "--output_dir", str(broken), "--resume_from_checkpoint", "latest"], launcher="python")
