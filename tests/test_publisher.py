"""Publishing while training (procrustean.hub.publisher) against a recording stand-in for HfApi: what is uploaded
where for each hub strategy, that failures never raise, and what the summary tells the user."""
import threading
from pathlib import Path

import pytest

from procrustean.errors import UsageError
from procrustean.hub.publisher import HubPublisher, check_hub_strategy


class RecordingApi:
    """Records create_repo / create_branch / upload_folder calls with the files each upload carried."""

    def __init__(self, fail_uploads=(), gate=None):
        self.calls, self.fail_uploads, self.gate = [], set(fail_uploads), gate
        self.token = "hf_test"
        self.started = threading.Event()  # set when the first upload begins

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs.get("private")))

    def create_branch(self, repo_id, branch, **kwargs):
        self.calls.append(("create_branch", repo_id, branch))

    def upload_folder(self, *, repo_id, folder_path, path_in_repo=None, delete_patterns=None, **kwargs):
        self.started.set()
        if self.gate is not None:
            self.gate.wait(timeout=30)
        files = sorted(p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file())
        self.calls.append(("upload_folder", path_in_repo or "", tuple(files), tuple(delete_patterns or ())))
        if len([c for c in self.calls if c[0] == "upload_folder"]) in self.fail_uploads:
            raise ConnectionError("the network is down (simulated)")
        return "https://huggingface.co/owner/model/commit/0"


def folder(path, *names):
    path.mkdir(parents=True, exist_ok=True)
    for name in names:
        (path / name).write_text(name)
    return path


@pytest.fixture()
def run_dir(tmp_path):
    export = folder(tmp_path / "export", "config.json", "model.safetensors", "README.md")
    checkpoints = [folder(tmp_path / "checkpoints" / f"step_{s:08d}", "model.safetensors", "run_state.json")
                   for s in (10, 20)]
    return tmp_path, export, checkpoints


def uploads(api):
    return [(where, files, deletes) for kind, where, files, deletes in
            (c if len(c) == 4 else (c[0], None, None, None) for c in api.calls) if kind == "upload_folder"]


@pytest.mark.parametrize("strategy, expected", [
    ("end", [""]),
    ("every_save", ["", "", ""]),
    ("checkpoint", ["", "last-checkpoint", "", "last-checkpoint", ""]),
    ("all_checkpoints", ["", "checkpoint-10", "", "checkpoint-20", ""]),
])
def test_each_strategy_uploads_what_transformers_trainer_would(run_dir, strategy, expected):
    tmp_path, export, (first, second) = run_dir
    api, warnings = RecordingApi(), []
    publisher = HubPublisher("owner/model", strategy, staging_dir=tmp_path / ".hub-staging", api=api,
                             private=True, warn=warnings.append)
    publisher.publish(10, export, first)
    publisher.wait()
    publisher.publish(20, export, second)
    publisher.wait()
    assert publisher.finish(export, last_checkpoint=second)
    assert api.calls[0] == ("create_repo", "owner/model", True)
    done = uploads(api)
    assert [where for where, _, _ in done] == expected
    for where, files, deletes in done:
        if where == "":
            assert files == ("README.md", "config.json", "model.safetensors")  # the export at the root
        else:
            assert files == ("model.safetensors", "run_state.json")
            assert deletes == (("*",) if where == "last-checkpoint" else ())  # last-checkpoint/ holds one state
    assert warnings == [] and all(u.status == "published" for u in publisher.uploads)
    assert not (tmp_path / ".hub-staging").exists() and export.exists() and first.exists()  # nothing local deleted


def test_a_newer_save_supersedes_a_queued_one_and_uploads_are_staged(run_dir):
    tmp_path, export, (first, second) = run_dir
    gate = threading.Event()
    api = RecordingApi(gate=gate)
    publisher = HubPublisher("owner/model", "checkpoint", staging_dir=tmp_path / ".hub-staging", api=api,
                             warn=lambda m: None)
    publisher.publish(10, export, first)          # in flight (the upload waits on the gate)
    assert api.started.wait(timeout=30)
    publisher.publish(20, export, second)         # queued
    third = folder(tmp_path / "checkpoints" / "step_00000030", "model.safetensors", "run_state.json")
    publisher.publish(30, export, third)          # replaces the queued save of step 20
    import shutil

    shutil.rmtree(first)                          # the run rotates its checkpoints meanwhile: the staged copy stays
    gate.set()
    assert publisher.finish(export, last_checkpoint=third)
    statuses = {u.what: u.status for u in publisher.uploads}
    assert statuses["checkpoint of step 10"] == "published"  # uploaded from its staged copy
    assert statuses["checkpoint of step 20"] == statuses["export at step 20"] == "superseded"
    assert statuses["checkpoint of step 30"] == "published"
    assert len(uploads(api)) == 5  # 10: export + checkpoint, 30: export + checkpoint, final export


def test_failures_warn_once_each_never_raise_and_the_summary_says_how_to_retry(run_dir, capsys):
    tmp_path, export, (first, second) = run_dir
    api, warnings = RecordingApi(fail_uploads={1, 2, 5}), []
    publisher = HubPublisher("owner/model", "checkpoint", staging_dir=tmp_path / ".hub-staging", api=api,
                             revision="dev", warn=warnings.append)
    publisher.publish(10, export, first)
    publisher.wait()
    publisher.publish(20, export, second)
    publisher.wait()
    assert not publisher.finish(export, last_checkpoint=second)  # the final export (upload 5) failed
    assert len(warnings) == 3 and all("network error" in w and "intact" in w for w in warnings)
    out = capsys.readouterr().err  # a summary with failures is an error report
    assert "failed      final export" in out and "published   checkpoint of step 20 -> last-checkpoint/" in out
    assert f"python -m procrustean.hub push {export} owner/model --revision dev" in out
    assert ("create_branch", "owner/model", "dev") in api.calls


def test_retrying_a_checkpoint_with_the_cli_targets_its_folder(run_dir, capsys):
    tmp_path, export, (first, second) = run_dir
    publisher = HubPublisher("owner/model", "checkpoint", staging_dir=tmp_path / ".hub-staging",
                             api=RecordingApi(fail_uploads={2, 4}), warn=lambda m: None)
    publisher.publish(20, export, second)          # uploads 1 (export) and 2 (checkpoint: fails)
    assert not publisher.finish(export, last_checkpoint=second)  # 3: final export; 4: the checkpoint again, fails
    out = capsys.readouterr().err
    assert f"python -m procrustean.hub push {second} owner/model --path_in_repo last-checkpoint" in out
    assert f"push {export} owner/model" not in out  # the final export went through: nothing to retry there


def test_all_checkpoints_final_push_names_the_step(run_dir):
    tmp_path, export, (first, second) = run_dir
    api = RecordingApi(fail_uploads={2})
    publisher = HubPublisher("owner/model", "all_checkpoints", staging_dir=tmp_path / ".hub-staging", api=api,
                             warn=lambda m: None)
    publisher.publish(20, export, second)
    assert publisher.finish(export, last_checkpoint=second)
    assert [where for where, _, _ in uploads(api)] == ["", "checkpoint-20", "", "checkpoint-20"]


def test_strategy_checks():
    check_hub_strategy("every_save", checkpointing=True)
    with pytest.raises(UsageError, match="not one of"):
        check_hub_strategy("sometimes")
    with pytest.raises(UsageError, match="--checkpointing_steps is 'no'"):
        check_hub_strategy("checkpoint", checkpointing=False)
