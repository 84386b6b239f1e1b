"""The fault matrix (docs/FAULTS.md): each fault, and an assertion that nothing was lost."""
import json
import os
import subprocess
import sys

import pytest
import torch

from recipe_utils import SMALL, assert_same_weights, run, run_killed_and_resumed


def _common(imagefolder):
    return ["--dataset", str(imagefolder), "--imbalance", "none", "--epochs", "2", "--checkpointing_steps", "2",
            "--seed", "7", "--verify_images", "false", *SMALL]


def test_kill_while_writing_a_checkpoint_keeps_the_last_good_one(imagefolder, tmp_path):
    full, broken = tmp_path / "full", tmp_path / "broken"
    run([*_common(imagefolder), "--output_dir", str(full)], launcher="python")
    proc = run([*_common(imagefolder), "--output_dir", str(broken)], launcher="python", check=False,
               faults=["--kill_in_checkpoint", "4"])
    assert proc.returncode != 0
    folder = broken / "checkpoints"
    assert (folder / ".tmp-step_00000004").is_dir()  # the half-written one stays aside ...
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["step_00000002"]
    run([*_common(imagefolder), "--output_dir", str(broken), "--resume_from_checkpoint", "latest"],
        launcher="python")  # ... and `latest` is the last complete one
    assert_same_weights(full, broken)
    assert not (folder / ".tmp-step_00000004").exists()  # rewritten when step 4 came round again


@pytest.fixture
def mounted(tmp_path):
    """A tmpfs mount (needs root, as in CI); skipped where mounting is not allowed."""
    mounts = []

    def mount(options):
        point = tmp_path / f"mnt{len(mounts)}"
        point.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", str(point)], check=False)


def test_read_only_output_dir_fails_before_training(imagefolder, mounted):
    read_only = mounted("ro,size=1m")
    proc = run([*_common(imagefolder), "--output_dir", str(read_only / "run")], launcher="python", check=False)
    assert proc.returncode == 2 and "not writable" in proc.stderr and "Traceback" not in proc.stderr


def test_full_output_dir_fails_before_training(imagefolder, mounted):
    small = mounted("size=2m")
    out = small / "run"
    proc = run([*_common(imagefolder), "--output_dir", str(out)], launcher="python", check=False)
    assert proc.returncode == 2 and "MiB free" in proc.stderr, proc.stderr[-2000:]
    assert not (out / "checkpoints").exists()


def test_non_finite_loss_stops_naming_step_batch_and_checkpoint(imagefolder, tmp_path):
    out = tmp_path / "run"
    args = [*_common(imagefolder), "--output_dir", str(out), "--lr", "1e30", "--checkpointing_steps", "1",
            "--lr_scheduler", "constant"]
    proc = run(args, launcher="python", check=False)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = proc.stdout + proc.stderr
    assert "the loss became" in text and "at step" in text and "batch" in text
    assert "Last good checkpoint: " + str(out / "checkpoints" / "step_00000001") in text
    assert (out / "checkpoints" / "step_00000001").is_dir() and not (out / "export").exists()


def test_failed_push_keeps_the_export_byte_for_byte(imagefolder, tmp_path):
    import hashlib

    out = tmp_path / "run"
    proc = run([*_common(imagefolder), "--output_dir", str(out), "--max_train_steps", "2",
                "--push_to_hub", "someone/model"], launcher="python", check=False,
               env_extra={"HF_TOKEN": "hf_not_a_real_token", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1 and f"python -m procrustean.hub push {out / 'export'} someone/model" in proc.stderr
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (out / "export").glob("*.*")}
    retry = subprocess.run([sys.executable, "-m", "procrustean.hub", "push", str(out / "export"), "someone/model"],
                           capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1",
                                                                "HF_TOKEN": "hf_not_a_real_token"})
    assert retry.returncode == 1 and "intact" in retry.stderr + retry.stdout
    assert digest == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (out / "export").glob("*.*")}
    assert json.loads((out / "export" / "config.json").read_text())["architecture"] == "resnet8_cifar"


def test_kill_right_after_the_last_step_of_an_epoch_resumes(imagefolder, tmp_path):
    # 36 images, batch 8 -> 5 steps per epoch: the checkpoint of step 5 is taken after the epoch's last batch,
    # before its end-of-epoch bookkeeping; the resumed run has no batch left in that epoch
    args = [*_common(imagefolder), "--checkpointing_steps", "5"]
    full, broken = tmp_path / "full", tmp_path / "broken"
    run_killed_and_resumed(args, full, broken, kill_after=5)
    assert_same_weights(full, broken)
    assert (full / "metrics.csv").read_text() == (broken / "metrics.csv").read_text()


def test_non_finite_watch_names_the_first_bad_micro_batch_without_syncing_each_step():
    from procrustean.train.distributed import NonFiniteWatch

    class OneProcess:
        num_processes = 1

    watch = NonFiniteWatch(OneProcess())
    assert watch.check() is None
    for batch, value in enumerate([1.0, 2.0, float("nan"), float("inf"), 3.0], start=1):
        watch.update(torch.tensor(value), 0, batch, batch)
    assert watch.check() == (0, 3, 3)  # the first of the two bad ones
    watch.update(torch.tensor(1.0), 0, 6, 6)
    assert watch.check() is None  # each check covers the micro-batches since the previous one
