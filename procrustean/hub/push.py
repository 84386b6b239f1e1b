"""Publish an export folder (:func:`procrustean.hub.export_model`) to the Hugging Face Hub.

Publishing is a separate, retryable step on purpose: a training run must not lose its result because
the network, the token or the Hub failed at the end. The export is only read, never changed; every
failure becomes one :class:`HubPushError` whose one-line message says what failed, that the local
export is intact, and the exact command that retries the push::

    python -m procrustean.hub push EXPORT_DIR REPO_ID [--private] [--token T] [--commit_message M]

The upload itself is huggingface_hub's ``HfApi.create_repo(exist_ok=True)`` + ``upload_folder``.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

if TYPE_CHECKING:
    from huggingface_hub import HfApi

from ..errors import UsageError
from .export import MODEL_CARD_NAME, REQUIRED_FILES as EXPORT_FILES

REQUIRED_FILES = (*EXPORT_FILES, MODEL_CARD_NAME)  # a pushed model has its card
DEFAULT_COMMIT_MESSAGE = "Upload Procrustean-trained model"

__all__ = ["HubPushError", "check_export_dir", "check_repo_id", "describe_hub_error", "main", "push_export",
           "retry_command"]


class HubPushError(RuntimeError):
    """A push that did not happen; the message (one line) says why and how to retry."""


def retry_command(export_dir: Union[str, os.PathLike], repo_id: str, *, private: bool = False,
                  revision: Optional[str] = None, path_in_repo: Optional[str] = None) -> str:
    """The shell command that pushes ``export_dir`` (or a checkpoint folder) again (never includes the token)."""
    parts = ["python", "-m", "procrustean.hub", "push", os.fspath(export_dir), repo_id]
    if private:
        parts.append("--private")
    if revision:
        parts += ["--revision", revision]
    if path_in_repo:
        parts += ["--path_in_repo", path_in_repo]
    return " ".join(shlex.quote(p) for p in parts)


def check_export_dir(export_dir: Union[str, os.PathLike]) -> Path:
    """The export as an absolute path, or a HubPushError naming what is missing."""
    path = Path(export_dir).expanduser().absolute()
    if not path.is_dir():
        raise HubPushError(f"Export directory {path} does not exist (nothing was pushed); "
                           "write it first with procrustean.hub.export_model(...).")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        fix = (" (write a model card with procrustean.hub.render_model_card and pass it as "
               "export_model(..., model_card=...))" if missing == ["README.md"] else
               " (re-export with procrustean.hub.export_model)")
        raise HubPushError(f"Export directory {path} lacks {', '.join(missing)}; nothing was pushed{fix}.")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise HubPushError(f"{path / 'config.json'} is not valid JSON ({e}); nothing was pushed; "
                           "re-export with procrustean.hub.export_model.") from None
    if not isinstance(config, dict) or "architecture" not in config:
        raise HubPushError(f"{path / 'config.json'} is not a timm config (no 'architecture'); nothing was pushed; "
                           "re-export with procrustean.hub.export_model.")
    return path


def check_repo_id(repo_id: str) -> None:
    """Refuse a malformed repo id (UsageError) before anything is trained or uploaded."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        reason = str(e).strip().splitlines()[0]
        raise UsageError(f"Invalid repo id {repo_id!r}: {reason} Use 'owner/name' (letters, digits, '-', '_', "
                         "'.'); nothing was pushed.") from None


def describe_hub_error(error: BaseException) -> str:
    """What failed, in one line, with the fix where there is an obvious one."""
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    first = (str(error).strip().splitlines() or [""])[0][:300]
    if isinstance(error, OfflineModeIsEnabled):
        return "the Hugging Face Hub is in offline mode (HF_HUB_OFFLINE=1); unset it on a machine with network access"
    if isinstance(error, LocalTokenNotFoundError):
        return "no Hugging Face token; run `hf auth login`, set HF_TOKEN or pass --token"
    if isinstance(error, HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403):
            return (f"the Hub refused the token (HTTP {status}: {first}); use a token with write access "
                    "(`hf auth login`, HF_TOKEN or --token)")
        return f"the Hub answered HTTP {status}: {first}" if status else f"Hub error: {first}"
    http_client = type(error).__module__.split(".")[0] in ("httpx", "httpx2", "requests", "urllib3")
    if http_client or isinstance(error, (ConnectionError, TimeoutError, OSError)):
        return f"network error ({type(error).__name__}: {first}); check the connection and retry"
    return f"{type(error).__name__}: {first}"


def _check_checkpoint_dir(folder: Union[str, os.PathLike]) -> Path:
    path = Path(folder).expanduser().absolute()
    if not (path / "model.safetensors").is_file():
        raise HubPushError(f"{path} is not a training checkpoint (no model.safetensors); nothing was pushed.")
    return path


def push_export(export_dir: Union[str, os.PathLike], repo_id: str, *, token: Optional[str] = None,
                private: bool = False, revision: Optional[str] = None, commit_message: Optional[str] = None,
                path_in_repo: Optional[str] = None, api: Optional["HfApi"] = None) -> str:
    """Create ``repo_id`` if needed and upload the export folder (or, with ``path_in_repo``, a checkpoint folder
    into that folder of the repo, e.g. ``last-checkpoint``); return the commit URL.

    The folder and the repo id are checked before any network call. ``revision`` is a branch
    (created if missing). Raises :class:`HubPushError` on any failure.
    """
    path = _check_checkpoint_dir(export_dir) if path_in_repo else check_export_dir(export_dir)
    check_repo_id(repo_id)
    retry = retry_command(path, repo_id, private=private, revision=revision, path_in_repo=path_in_repo)

    def fail(reason: str) -> HubPushError:
        return HubPushError(f"Push of {path} to {repo_id} failed: {reason}. The local copy is intact at {path}. "
                            f"Retry with: {retry}")

    from huggingface_hub import HfApi, get_token

    api = api if api is not None else HfApi()
    if not (token or getattr(api, "token", None) or get_token()):
        raise fail("no Hugging Face token; run `hf auth login`, set HF_TOKEN or pass --token")
    try:
        api.create_repo(repo_id, token=token, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=path, token=token, revision=revision,
                                 path_in_repo=path_in_repo, delete_patterns=["*"] if path_in_repo else None,
                                 commit_message=commit_message or DEFAULT_COMMIT_MESSAGE)
    except Exception as e:  # noqa: BLE001 -- any failure: one clear error, the local folder stays as it is
        raise fail(describe_hub_error(e)) from None
    return str(getattr(info, "commit_url", None) or info)


# ----------------------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m procrustean.hub",
                                     description="Publish a procrustean export folder to the Hugging Face Hub.")
    commands = parser.add_subparsers(dest="command", required=True)
    push = commands.add_parser("push", help="create the repo if needed and upload the export folder")
    push.add_argument("export_dir", help="folder written by procrustean.hub.export_model")
    push.add_argument("repo_id", help="Hub model repo, 'owner/name'")
    push.add_argument("--private", action="store_true", help="create the repo as private")
    push.add_argument("--token", default=None,
                      help="Hub token with write access (default: HF_TOKEN or `hf auth login`)")
    push.add_argument("--revision", default=None, help="branch to push to (created if missing)")
    push.add_argument("--commit_message", "--commit-message", default=None, help="commit message")
    push.add_argument("--path_in_repo", default=None, help="push a training checkpoint folder into this folder of the "
                      "repo (e.g. last-checkpoint) instead of an export to the root")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console entry point; exit status 1 with a one-line message on failure.

    ``push`` may be left out (``procrustean-push EXPORT_DIR REPO_ID`` as a console script).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in ("push", "-h", "--help"):
        argv.insert(0, "push")
    args = _parser().parse_args(argv)
    try:
        url = push_export(args.export_dir, args.repo_id, token=args.token, private=args.private,
                          revision=args.revision, commit_message=args.commit_message, path_in_repo=args.path_in_repo)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except HubPushError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(url)
    return 0
