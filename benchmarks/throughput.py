"""Training throughput of the recipe against a bare PyTorch loop and timm's own train.py, in one run.

    python benchmarks/throughput.py --steps 40 [--rounds 5] [--weakening_off] [--json results.json]

The same data, model, batch, optimizer and augmentation for every contender: Fashion-MNIST-LT step-100
with an n_max just large enough for the timed steps to stay inside the first epoch (what an epoch
boundary costs is measured by ``benchmarks/scaling.py``), CIFAR ResNet-8 with 1 channel at 28 px,
batch 128, SGD with momentum, pad-4 random crop + horizontal flip + normalisation, no DataLoader workers
(the recipe's default on the CPU). Contenders, each a fresh process:

* bare loop, PIL: torchvision transforms per sample in the DataLoader (``benchmarks/bare_loop.py``);
* bare loop, in memory: uint8 images indexed, cropped, flipped and normalised per batch by hand;
* timm's ``train.py`` (``benchmarks/third_party/timm_train.py``, on an imagefolder export of the
  same split; timm has no pad-and-crop, so it crops with RandomResizedCrop at scale 1, ratio 1);
* the recipe (``recipes/train.py --config recipes/configs/fmnist_lt_step100.yaml``) with weakening
  on, on each data path (``--data_path pil``, and ``in_memory``, the config's default); with
  ``--weakening_off`` also with weakening off. The config's method: the progress rule + logit adjustment
  (the profile also names the progress rule's statistics, for configs that use it).

Every contender is timed by the same clock from outside (``benchmarks/step_clock.py``: the time of
each optimizer step): samples per second over ``--steps`` steps after ``--warmup`` steps. Each round
runs every contender once, in an order rotated from round to round; ratios are taken within a round
(paired) and their median over the rounds is reported. Then two more runs of the recipe under cProfile
shows where its step goes.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
MEAN, STD = "0.2860", "0.3530"
BARE_PIL, BARE_MEMORY, TIMM = "bare loop, PIL", "bare loop, in memory", "timm train.py"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="timed optimizer steps per contender and round")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--max_per_class", type=int, default=None,
                        help="n_max of the split (default: just enough images for the timed steps in one epoch)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--weakening_location", default="stage:1")
    parser.add_argument("--weakening_off", action="store_true",
                        help="also time the recipe with weakening off (its cost alone: benchmarks/overhead.py)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    needed = (args.warmup + args.steps + 1) * args.batch_size  # step-100: 5 classes of n_max + 5 of n_max / 100
    args.max_per_class = args.max_per_class or min(6000, 100 * math.ceil(needed / 5.05 / 100))
    if 5.05 * args.max_per_class < needed:
        parser.error(f"{args.warmup + args.steps} steps of {args.batch_size} do not fit in one epoch of n_max "
                     f"{args.max_per_class}: fewer --steps or a smaller --batch_size.")
    return args


def build_data(args, workdir: Path) -> None:
    """The split (save_to_disk, for the recipe and the bare loops) and its imagefolder export (for timm)."""
    import datasets

    import procrustean
    from procrustean.data.fashion_mnist import load_fashion_mnist

    datasets.disable_progress_bars()
    data = load_fashion_mnist()
    train = procrustean.make_imbalanced(data["train"], "step:100", label_column="label", seed=0,
                                        max_per_class=args.max_per_class)
    datasets.DatasetDict({"train": train, "test": data["test"].select(range(200))}).save_to_disk(str(workdir / "ds"))
    names = train.features["label"].names
    for split, rows in (("train", train), ("validation", data["test"].select(range(20)))):
        for i, example in enumerate(rows):
            target = workdir / "imagefolder" / split / f"{example['label']}_{names[example['label']].replace('/', '-')}"
            target.mkdir(parents=True, exist_ok=True)
            example["image"].save(target / f"{i}.png")


def commands(args, workdir: Path) -> Dict[str, List[str]]:
    data = str(workdir / "ds")
    bare = [str(BENCH / "bare_loop.py"), "--dataset", data, "--batch_size", str(args.batch_size),
            "--steps", str(args.warmup + args.steps)]
    timm = [str(BENCH / "third_party" / "timm_train.py"), "--data-dir", str(workdir / "imagefolder"),
            "--train-split", "train", "--val-split", "validation", "--model", "resnet8_cifar", "--num-classes", "10",
            "--in-chans", "1", "--input-img-mode", "L", "--input-size", "1", "28", "28", "--mean", MEAN,
            "--std", STD, "-b", str(args.batch_size), "--epochs", "1", "--lr", "0.1", "--opt", "sgd",
            "--momentum", "0.9", "--weight-decay", "2e-4", "--sched", "step", "--warmup-epochs", "0",
            "--workers", "0", "--device", "cpu", "--no-prefetcher", "--hflip", "0.5", "--scale", "1", "1",
            "--ratio", "1", "1", "--color-jitter", "0", "--smoothing", "0", "--log-interval", "50",
            "--output", str(workdir / "timm-out")]
    result = {BARE_PIL: bare + ["--data_path", "pil"], BARE_MEMORY: bare + ["--data_path", "in_memory"], TIMM: timm}
    for data_path in ("pil", "in_memory"):
        for weakening in (("off", "on") if args.weakening_off else ("on",)):
            result[recipe_name(data_path, weakening)] = [
                "recipes/train.py", "--config", "recipes/configs/fmnist_lt_step100.yaml", "--dataset", data,
                "--imbalance", "none", "--data_path", data_path, "--weakening", str(weakening == "on").lower(),
                "--weakening_location", args.weakening_location, "--batch_size", str(args.batch_size),
                "--epochs", "1000", "--warmup_epochs", "0", "--checkpointing_steps", "no", "--report_to", "none",
                "--verify_images", "false", "--eval_every_epochs", "1000",
                "--output_dir", str(workdir / f"recipe-{data_path}-{weakening}"), "--overwrite_output_dir", "true"]
    return result


def recipe_name(data_path: str, weakening: str) -> str:
    return f"recipe, {'PIL' if data_path == 'pil' else 'in memory'}, weakening {weakening}"


def timed_run(args, workdir: Path, command: List[str], profile: Path = None) -> List[float]:
    """The optimizer step times of one fresh process."""
    stamps = workdir / "stamps.json"
    clock = [sys.executable, str(BENCH / "step_clock.py"), str(stamps), str(args.warmup + args.steps)]
    if profile is not None:
        clock += ["--profile", str(profile)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(clock + command, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} ... failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(stamps.read_text())


def samples_per_second(args, stamps: List[float]) -> float:
    return args.steps * args.batch_size / (stamps[-1] - stamps[args.warmup - 1])


PROFILE_ROWS: List[Tuple[str, List[Tuple[str, str]]]] = [
    ("data: DataLoader (read, transforms, collation)", [("torch/utils/data/dataloader.py", "__next__")]),
    ("  of which the weakening draws (collator)", [("procrustean/policy.py", "draw"),
                                                  ("procrustean/policy.py", "batch_generator")]),
    ("data: augmentation on the device (in memory)", [("procrustean/data/in_memory.py", "forward")]),
    ("forward (model + loss)", [("procrustean/model.py", "forward")]),
    ("  of which the weakening (resolve + mix)", [("procrustean/policy.py", "resolve"),
                                                 ("procrustean/policy.py", "apply")]),
    ("  of which the progress rule's statistics", [("procrustean/progress.py", "update")]),
    ("  of which the loss", [("procrustean/losses/logit_adjusted.py", "forward"),
                             ("procrustean/losses/cross_entropy.py", "forward")]),
    ("backward", [("accelerate/accelerator.py", "backward")]),
    ("  of which the mix's backward", [("procrustean/policy.py", "backward")]),
    ("optimizer step + zero_grad", [("accelerate/optimizer.py", "step"), ("accelerate/optimizer.py", "zero_grad")]),
    ("bookkeeping: per-class accuracy", [("procrustean/metrics/per_class.py", "update")]),
    ("bookkeeping: non-finite watch", [("procrustean/train/distributed.py", "update"),
                                       ("procrustean/train/distributed.py", "check")]),
    ("bookkeeping: lr schedule", [("timm/scheduler/scheduler.py", "step_update")]),
    ("bookkeeping: progress bar", [("procrustean/train/progress_log.py", "update"),
                                   ("procrustean/train/progress_log.py", "log")]),
    ("bookkeeping: gradient accumulation context", [("accelerate/accelerator.py", "accumulate")]),
]


def profile_table(profile: Path, loop_seconds: float, steps: int) -> List[Tuple[str, float, float]]:
    """(row, ms per step, share of the loop) from cProfile's cumulative times of the functions of each row."""
    stats = pstats.Stats(str(profile)).stats
    rows, top_level = [], 0.0
    for label, functions in PROFILE_ROWS:
        seconds = sum(cumulative for (path, _, name), (_, _, _, cumulative, _) in stats.items()
                      for suffix, function in functions if path.endswith(suffix) and name == function)
        rows.append((label, 1000 * seconds / steps, seconds / loop_seconds))
        if not label.startswith(" "):
            top_level += seconds
    rows.append(("rest of the loop (Python, Accelerate's loader wrapper, ...)", 1000 * (loop_seconds - top_level) / steps,
                 (loop_seconds - top_level) / loop_seconds))
    return rows


def main(argv=None) -> None:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="procrustean-throughput-"))
    print(f"command: python benchmarks/throughput.py {' '.join(sys.argv[1:])}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {args.threads} threads per process; "
          f"{args.steps} timed steps of batch {args.batch_size} after {args.warmup} warm-up steps, "
          f"{args.rounds} rounds")
    try:
        build_data(args, workdir)
        runs = commands(args, workdir)
        names = list(runs)
        rates: Dict[str, List[float]] = {name: [] for name in names}
        for round_ in range(args.rounds):
            shift = (round_ * 3) % len(names)
            for name in names[shift:] + names[:shift]:
                rates[name].append(samples_per_second(args, timed_run(args, workdir, runs[name])))
            print(f"round {round_ + 1}: " + ", ".join(f"{n} {rates[n][-1]:.0f}" for n in names), flush=True)

        def paired(name: str, reference: str) -> float:
            return statistics.median(a / b for a, b in zip(rates[name], rates[reference]))

        same_path = {name: BARE_MEMORY if "in memory" in name else BARE_PIL for name in names}  # timm: PIL
        print(f"\n{'contender':<34} {'samples/s':>10} {'vs bare loop, same data path':>29} {'vs bare, PIL':>13} "
              f"{'vs timm':>8}")
        table = {}
        for name in names:
            table[name] = {"samples_per_second": statistics.median(rates[name]), "per_round": rates[name],
                           "vs_bare_same_path": paired(name, same_path[name]), "vs_bare_pil": paired(name, BARE_PIL),
                           "vs_timm": paired(name, TIMM)}
            row = table[name]
            print(f"{name:<34} {row['samples_per_second']:>10.0f} {row['vs_bare_same_path']:>29.3f} "
                  f"{row['vs_bare_pil']:>13.3f} {row['vs_timm']:>8.3f}")

        # where the recipe's step goes, on each data path, weakening on, under cProfile
        profiles = {}
        for data_path in ("pil", "in_memory"):
            profile = workdir / f"recipe-{data_path}.prof"
            stamps = timed_run(args, workdir, runs[recipe_name(data_path, "on")], profile=profile)
            profiles[data_path] = profile_table(profile, stamps[-1] - stamps[0], len(stamps) - 1)
        print(f"\nprofile of the recipe, weakening on, under cProfile (steps 2 to {args.warmup + args.steps}; cProfile "
              "slows Python-heavy code, so read the shares):")
        print(f"{'':<62} {'PIL path':>18} {'in-memory path':>18}")
        for i, (label, *_) in enumerate(profiles["pil"]):
            cells = [f"{profiles[p][i][1]:>7.2f} ms {100 * profiles[p][i][2]:>5.1f}%" for p in ("pil", "in_memory")]
            print(f"{label:<62} {cells[0]:>18} {cells[1]:>18}")
        if args.json:
            Path(args.json).write_text(json.dumps({"command": sys.argv, "results": table, "profile": profiles}, indent=2))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
