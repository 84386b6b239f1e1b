"""Publishing while training, with ``transformers.Trainer``'s hub strategies, so that a run's checkpoints leave the machine.

=================  ===================================================================================
``end``            the final export, once, at the end of training
``every_save``     the export (weights, config.json, model card with the latest metrics) at the repo's
                   root each time the run saves a checkpoint, and at the end
``checkpoint``     as ``every_save``, plus the latest full training state in ``last-checkpoint/``
                   (``--resume_from_checkpoint hf-hub:owner/repo`` resumes from it)
``all_checkpoints`` as ``checkpoint``, but every checkpoint in its own ``checkpoint-<step>/``
=================  ===================================================================================

Training never waits on the network: one background thread uploads (huggingface_hub's
``HfApi.upload_folder``), at most one save is in flight, and a newer save replaces a queued one.
What is queued is a staged copy (hard links) of the folders, so the run can rotate its checkpoints
and rewrite its export meanwhile. A failed upload (no network, no token, the Hub refusing) is one
warning; training goes on, nothing local is touched, and :meth:`HubPublisher.finish` waits for the
queue, reports every upload's outcome and gives the exact command that retries the ones that failed.
"""
from __future__ import annotations

import os
import shutil
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Optional

from ..errors import UsageError
from .push import describe_hub_error, retry_command

if TYPE_CHECKING:
    from huggingface_hub import HfApi

HUB_STRATEGIES = ("end", "every_save", "checkpoint", "all_checkpoints")
CHECKPOINT_STRATEGIES = ("checkpoint", "all_checkpoints")
LAST_CHECKPOINT = "last-checkpoint"


def _step_of(checkpoint_dir: Path) -> int:
    """The step of a checkpoint folder named ``step_<N>``."""
    return int(Path(checkpoint_dir).name.rsplit("_", 1)[-1])


def check_hub_strategy(strategy: str, checkpointing: bool = True) -> None:
    """Refuse an unknown strategy, or a checkpoint strategy in a run that writes no checkpoints."""
    if strategy not in HUB_STRATEGIES:
        raise UsageError(f"--hub_strategy {strategy!r} is not one of {list(HUB_STRATEGIES)} (transformers' meanings).")
    if strategy != "end" and not checkpointing:
        raise UsageError(f"--hub_strategy {strategy} publishes at every checkpoint, but --checkpointing_steps is 'no': "
                         "save checkpoints ('epoch' or a number of steps) or use --hub_strategy end.")


@dataclass
class Upload:
    """One folder to one place in the repo, and how it went."""

    what: str  # e.g. "export at step 120"
    source: Path  # the local folder (what a retry pushes)
    path_in_repo: str  # "" for the repo's root
    final: bool = False
    staged: Optional[Path] = None
    status: str = "queued"  # queued | published | failed | superseded
    detail: str = ""

    def retry(self, repo_id: str, private: bool, revision: Optional[str]) -> str:
        return retry_command(self.source, repo_id, private=private, revision=revision,
                             path_in_repo=self.path_in_repo or None)


@dataclass
class _Save:
    uploads: List[Upload] = field(default_factory=list)


class HubPublisher:
    """Background uploads of a run's saves to ``repo_id`` (main process only)."""

    def __init__(self, repo_id: str, strategy: str, *, staging_dir: Path, token: Optional[str] = None,
                 private: bool = False, revision: Optional[str] = None, api: Optional["HfApi"] = None,
                 warn: Optional[Callable[[str], None]] = None):
        check_hub_strategy(strategy)
        if api is None:
            from huggingface_hub import HfApi

            api = HfApi(token=token)
        self.repo_id, self.strategy, self.token, self.private, self.revision = repo_id, strategy, token, private, revision
        self.api, self.staging_dir = api, Path(staging_dir)
        self.warn = warn or (lambda message: print(f"WARNING: {message}", file=sys.stderr, flush=True))
        self.uploads: List[Upload] = []
        self._pending: Optional[_Save] = None
        self._closing = False
        self._busy = False
        self._repo_ready = False
        self._condition = threading.Condition()
        self._worker = threading.Thread(target=self._run, name="hub-publisher", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------------------------------- queueing
    def publish(self, step: int, export_dir: Path, checkpoint_dir: Optional[Path] = None) -> None:
        """Queue the uploads of one save and return at once (nothing for the ``end`` strategy)."""
        if self.strategy == "end":
            return
        uploads = [Upload(f"export at step {step}", Path(export_dir), "")]
        if self.strategy in CHECKPOINT_STRATEGIES and checkpoint_dir is not None:
            where = LAST_CHECKPOINT if self.strategy == "checkpoint" else f"checkpoint-{step}"
            uploads.append(Upload(f"checkpoint of step {step}", Path(checkpoint_dir), where))
        self._queue(uploads)

    def finish(self, export_dir: Path, last_checkpoint: Optional[Path] = None) -> bool:
        """Queue the final export (and, for the checkpoint strategies, the last checkpoint if it is not yet
        on the Hub), wait for every upload, print what was and was not published; True if the final ones were."""
        self.wait()  # the saves already queued go first: the final uploads must not supersede them
        uploads = [Upload("final export", Path(export_dir), "", final=True)]
        if self.strategy in CHECKPOINT_STRATEGIES and last_checkpoint is not None:
            published = {u.source for u in self.uploads if u.status == "published" and u.path_in_repo}
            if Path(last_checkpoint) not in published:
                where = LAST_CHECKPOINT if self.strategy == "checkpoint" else f"checkpoint-{_step_of(last_checkpoint)}"
                uploads.append(Upload("last checkpoint", Path(last_checkpoint), where, final=True))
        self._queue(uploads)
        return self.close()

    def close(self) -> bool:
        """Wait for the queued uploads, stop the worker, print the summary; True if every final upload went through
        (also what a run that stops early calls, so that what it already queued is not lost)."""
        with self._condition:
            self._closing = True
            self._condition.notify_all()
        self._worker.join()
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        published = all(u.status == "published" for u in self.uploads if u.final)
        failures = any(u.status == "failed" for u in self.uploads)
        print(self.summary(), file=sys.stderr if failures else sys.stdout, flush=True)
        return published

    def wait(self) -> None:
        """Block until every queued upload has been attempted (training does not need to: ``finish`` does it)."""
        with self._condition:
            while self._pending is not None or self._busy:
                self._condition.wait()

    def summary(self) -> str:
        lines = [f"Hub publication to {self.repo_id} (--hub_strategy {self.strategy}):"]
        for upload in self.uploads:
            where = f"{upload.path_in_repo}/" if upload.path_in_repo else "the repo's root"
            lines.append(f"  {upload.status:<11} {upload.what} -> {where}" + (f": {upload.detail}" if upload.detail else ""))
        latest = {}  # per place in the repo, the last attempt: retry it if it failed (never an older state)
        for upload in self.uploads:
            if upload.status != "superseded":
                latest[upload.path_in_repo] = upload
        retries = [u for u in latest.values() if u.status == "failed" and u.source.exists()]
        if retries:
            lines.append("Nothing local was changed. Retry what failed with:")
            lines += [f"  {u.retry(self.repo_id, self.private, self.revision)}" for u in retries]
        return "\n".join(lines)

    def _queue(self, uploads: List[Upload]) -> None:
        for upload in uploads:
            upload.staged = self._stage(upload.source)
        with self._condition:
            if self._pending is not None:  # a newer save replaces the queued one (the newest state is what counts)
                for old in self._pending.uploads:
                    old.status, old.detail = "superseded", "a newer save replaced it before it was uploaded"
                    shutil.rmtree(old.staged, ignore_errors=True)
            self._pending = _Save(list(uploads))
            self.uploads.extend(uploads)
            self._condition.notify_all()

    def _stage(self, folder: Path) -> Path:
        """A copy of ``folder`` made of hard links (a full copy across file systems) that the run cannot change."""
        target = self.staging_dir / f"{folder.name}-{uuid.uuid4().hex[:8]}"
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copytree(folder, target, copy_function=os.link)
        except OSError:  # hard links impossible here (another file system): copy
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(folder, target)
        return target

    # ------------------------------------------------------------------------------------------- the worker
    def _run(self) -> None:
        while True:
            with self._condition:
                while self._pending is None and not self._closing:
                    self._condition.wait()
                if self._pending is None:
                    return
                save, self._pending, self._busy = self._pending, None, True
            for upload in save.uploads:
                self._upload(upload)
                shutil.rmtree(upload.staged, ignore_errors=True)
            with self._condition:
                self._busy = False
                self._condition.notify_all()

    def _upload(self, upload: Upload) -> None:
        try:  # any failure of the network, the token or the Hub is reported, never raised: training goes on
            if not self._repo_ready:
                self.api.create_repo(self.repo_id, token=self.token, private=self.private, exist_ok=True)
                if self.revision:
                    self.api.create_branch(self.repo_id, branch=self.revision, token=self.token, exist_ok=True)
                self._repo_ready = True
            self.api.upload_folder(repo_id=self.repo_id, folder_path=upload.staged, path_in_repo=upload.path_in_repo or None,
                                   token=self.token, revision=self.revision, commit_message=f"Upload {upload.what}",
                                   delete_patterns=["*"] if upload.path_in_repo == LAST_CHECKPOINT else None,
                                   ignore_patterns=[".*"])
            upload.status = "published"
        except Exception as error:  # noqa: BLE001 -- see above: a failed upload must not stop training
            upload.status, upload.detail = "failed", describe_hub_error(error)
            self.warn(f"upload of the {upload.what} to {self.repo_id} failed: {upload.detail}. Training goes on; "
                      f"the local copy is intact at {upload.source}.")
