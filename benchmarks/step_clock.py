"""Run a training script with a clock on its optimizer steps (the one clock of ``benchmarks/throughput.py``).

    python benchmarks/step_clock.py STAMPS.json STEPS [--profile PROFILE.out] SCRIPT.py [script arguments ...]

Every ``optimizer.step()`` the script makes, whichever loop makes it (the recipe through Accelerate,
timm's ``train.py``, a bare loop), appends ``time.perf_counter()`` through torch's global step
post-hook. After ``STEPS`` steps the stamps are written to ``STAMPS.json`` and the process ends, so
every contender is timed the same way, from outside, with no timing code in its loop, and none needs
an option to stop early. ``--profile`` also profiles the steps after the first one with cProfile
(written at the same moment). procrustean is imported first, so that timm knows its CIFAR ResNets.
"""
from __future__ import annotations

import cProfile
import json
import os
import runpy
import sys
import time
from pathlib import Path

from torch.optim.optimizer import register_optimizer_step_post_hook

import procrustean  # noqa: F401  (registers resnet8_cifar with timm, for timm's train.py)


def main() -> None:
    stamps_path, steps, *args = sys.argv[1:]
    profile_path = None
    if args[0] == "--profile":
        profile_path, args = args[1], args[2:]
    profiler = cProfile.Profile() if profile_path else None
    stamps = []

    def clock(optimizer, *_):
        stamps.append(time.perf_counter())
        if profiler is not None and len(stamps) == 1:
            profiler.enable()  # the profile covers the steps after the first one, as the stamps do
        if len(stamps) == int(steps):
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile_path)
            Path(stamps_path).write_text(json.dumps(stamps))
            sys.stdout.flush(), sys.stderr.flush()
            os._exit(0)  # the measurement is complete: skip the script's remaining epochs, outputs and clean-up

    register_optimizer_step_post_hook(clock)
    sys.argv = args
    sys.path.insert(0, str(Path(args[0]).resolve().parent))
    runpy.run_path(args[0], run_name="__main__")
    raise SystemExit(f"{args[0]} ended after {len(stamps)} optimizer steps, before the {steps} to time.")


if __name__ == "__main__":
    main()
