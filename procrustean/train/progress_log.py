"""Training progress that suits where stderr goes: a live bar on a terminal, one line per logging step in a file.

Under SLURM, ``nohup`` or CI, stderr is a file; a tqdm bar there writes a carriage-return update several times a
second (tens of MB over a long run). So when stderr is not a terminal, each ``--logging_steps`` optimizer step
writes one plain line instead, through the main process only:

    step 50/390 (12.8%) | epoch 1 | loss 1.2345 | lr 0.1 | 2345.6 samples/s | elapsed 00:21 | ETA 02:25

The log grows with the number of logging steps, never with time; ``--progress_display bar`` / ``lines`` force
either.
"""
from __future__ import annotations

import sys
import time
import weakref
from typing import IO, Optional

from tqdm.auto import tqdm

MODES = ("auto", "bar", "lines")
_open: "weakref.WeakSet[TrainingProgress]" = weakref.WeakSet()


def close_all() -> None:
    """End every open progress display (a bar's line), so that an error printed next starts on its own line."""
    for progress in list(_open):
        progress.close()


class TrainingProgress:
    """Optimizer steps ``initial..total``: :meth:`update` every step, :meth:`log` on the logging steps (``samples``:
    training samples seen so far, all processes; ``initial_samples`` at ``initial``)."""

    def __init__(self, total: int, initial: int = 0, *, initial_samples: int = 0, mode: str = "auto",
                 enabled: bool = True, stream: Optional[IO[str]] = None, desc: str = "train"):
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r} is not one of {list(MODES)}")
        self.stream = stream if stream is not None else sys.stderr
        self.lines = mode == "lines" or mode == "auto" and not _is_terminal(self.stream)
        self.enabled, self.total, self.initial = enabled, int(total), int(initial)
        self.bar = tqdm(total=total, initial=initial, desc=desc, file=self.stream,
                        disable=not enabled or self.lines)
        self._start = self._last_time = time.perf_counter()
        self._last_samples = int(initial_samples)  # samples/s: over the steps since the previous line
        _open.add(self)

    def update(self, steps: int = 1) -> None:
        """Every optimizer step: moves the bar (no device synchronisation, no output in line mode)."""
        self.bar.update(steps)

    def log(self, step: int, epoch: int, loss: float, lr: float, samples: int) -> None:
        """On a logging step: the loss on the bar, or one line with the rates since the previous line."""
        if not self.enabled:
            return
        if not self.lines:
            self.bar.set_postfix(loss=f"{loss:.3f}", epoch=epoch)
            return
        now = time.perf_counter()
        elapsed, window = now - self._start, now - self._last_time
        done = step - self.initial  # steps this process trained: the ETA assumes their pace (evaluation included)
        eta = tqdm.format_interval(elapsed / done * (self.total - step)) if done > 0 else "-"
        rate = f"{(samples - self._last_samples) / window:.1f} samples/s" if window > 0 else "- samples/s"
        fields = [f"step {step}/{self.total} ({100 * step / self.total:.1f}%)", f"epoch {epoch}", f"loss {loss:.4f}",
                  f"lr {lr:.4g}", rate, f"elapsed {tqdm.format_interval(elapsed)}",
                  f"ETA {eta}"]
        print(" | ".join(fields), file=self.stream, flush=True)
        self._last_samples, self._last_time = samples, now

    def close(self) -> None:
        self.bar.close()
        _open.discard(self)

    def __enter__(self) -> "TrainingProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
