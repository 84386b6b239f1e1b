"""Writing so that a crash never leaves half a file or folder where a reader would find it.

One rule for the run's files (metrics, results), its checkpoints and its export: build the new
version next to the final path, flush it to disk, then rename it into place.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a hidden sibling, then rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_tree(path: Path) -> None:
    """Flush every file under ``path`` to disk (before the rename that publishes it)."""
    for file in Path(path).rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())


def swap_in_directory(tmp: Path, final: Path) -> None:
    """Rename the finished folder ``tmp`` to ``final``; an old ``final`` is moved aside first and removed last.

    POSIX cannot rename a directory over a non-empty one, so for a moment the complete old folder sits
    at ``.<name>.old-*`` next to ``final`` (and is restored if the second rename fails).
    """
    tmp, final = Path(tmp), Path(final)
    if not final.exists():
        os.replace(tmp, final)
        return
    backup = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(final, backup)
    try:
        os.replace(tmp, final)
    except BaseException:
        os.replace(backup, final)
        raise
    shutil.rmtree(backup, ignore_errors=True)
