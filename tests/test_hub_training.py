"""The recipe and the Hub, offline: publishing during training that never costs it, resuming from a checkpoint
served by the HF cache, and checkpoints that cannot run code when loaded."""
import json
import os
import pickle
import shutil

import pytest

from recipe_utils import SMALL, assert_same_weights, run


def _args(imagefolder, out, *extra):
    return ["--dataset", str(imagefolder), "--imbalance", "none", "--epochs", "2", "--output_dir", str(out),
            "--checkpointing_steps", "3", "--seed", "6", "--verify_images", "false", *SMALL, *extra]


def test_every_save_offline_trains_to_the_end_keeps_everything_and_says_how_to_retry(imagefolder, tmp_path):
    out = tmp_path / "run"
    proc = run(_args(imagefolder, out, "--push_to_hub", "owner/name", "--hub_strategy", "every_save",
                     "--hub_token", "hf_secret_value"),
               launcher="python", check=False, env_extra={"HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_not_a_real_token"})
    assert proc.returncode == 1, proc.stderr[-3000:]  # the final publication failed ...
    assert "Traceback" not in proc.stderr
    results = json.loads((out / "all_results.json").read_text())
    assert results["epochs_completed"] == 2 and results["steps"] == 10  # ... but training ran to the end
    assert (out / "export" / "model.safetensors").exists() and len(list((out / "checkpoints").iterdir())) == 2
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("WARNING: upload of the")]
    assert warnings and all("offline mode" in w for w in warnings)  # one warning per failed upload
    assert "failed      final export" in proc.stderr
    assert f"python -m procrustean.hub push {out / 'export'} owner/name" in proc.stderr
    assert not (out / ".hub-staging").exists()
    written = [p for p in out.rglob("*") if p.is_file() and p.suffix in (".yaml", ".md", ".json", ".jsonl", ".csv")]
    assert written and not any("hf_secret_value" in p.read_text() for p in written)  # the token is never saved


def test_hub_options_are_checked_before_any_data_is_read(imagefolder, tmp_path):
    out = tmp_path / "run"
    for extra, message in ((["--hub_strategy", "checkpoint", "--checkpointing_steps", "no"], "--checkpointing_steps is 'no'"),
                           (["--hub_strategy", "sometimes"], "is not one of")):
        proc = run(_args(imagefolder, out, "--push_to_hub", "owner/name", *extra), launcher="python", check=False)
        assert proc.returncode == 2 and message in proc.stderr and not out.exists()


def _hf_cache_with(hf_home, repo_id, checkpoint):
    """What snapshot_download leaves in the HF cache for repo_id's last-checkpoint/ (offline, the cache serves it)."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(checkpoint, repo / "snapshots" / commit / "last-checkpoint")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


def test_resume_from_the_hub_cache_gives_the_uninterrupted_weights(imagefolder, tmp_path):
    full, first, resumed = tmp_path / "full", tmp_path / "first", tmp_path / "resumed"
    run(_args(imagefolder, full), launcher="python")
    proc = run(_args(imagefolder, first), launcher="python", check=False, faults=["--kill_after_checkpoint", "6"])
    assert proc.returncode != 0
    hf_home = tmp_path / "hf-home"
    _hf_cache_with(hf_home, "owner/name", first / "checkpoints" / "step_00000006")
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    run(_args(imagefolder, resumed, "--resume_from_checkpoint", "hf-hub:owner/name"), launcher="python", env_extra=env)
    assert_same_weights(full, resumed)
    proc = run(_args(imagefolder, tmp_path / "other", "--resume_from_checkpoint", "hf-hub:owner/missing"),
               launcher="python", check=False, env_extra=env)
    assert proc.returncode == 2 and "hf-hub:owner/missing" in proc.stderr and "Traceback" not in proc.stderr


class _Planted:
    """A pickle that would create a file when loaded with pickle's full (code-running) loader."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.mark.parametrize("victim", ["optimizer.bin", "random_states_0.pkl", "custom_checkpoint_0.pkl"])
def test_a_checkpoint_with_a_planted_pickle_is_refused_and_nothing_runs(imagefolder, tmp_path, victim):
    out = tmp_path / "run"
    run(_args(imagefolder, out, "--max_train_steps", "3"), launcher="python")
    checkpoint = out / "checkpoints" / "step_00000003"
    marker = tmp_path / "pwned"
    with open(checkpoint / victim, "wb") as handle:
        pickle.dump({"state": _Planted(marker)}, handle)
    proc = run(_args(imagefolder, out, "--resume_from_checkpoint", str(checkpoint)), launcher="python", check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"{victim} is not plain tensors and numbers" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()  # the planted code never ran
