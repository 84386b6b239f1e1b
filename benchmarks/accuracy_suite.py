"""The accuracy suite: every (method, profile, seed) cell through recipes/train.py, one JSON line per run.

    python benchmarks/accuracy_suite.py --spec benchmarks/configs/fmnist_lt_e40.yaml --suite main --seeds 0 1 2
    python benchmarks/accuracy_suite.py --spec benchmarks/configs/fmnist_lt_e40.yaml --suite ablations
    python benchmarks/accuracy_suite.py --suite main --only ce weakening --profiles step100 --dry_run

Resumable: a cell whose key is already in the results file is skipped, so the suite can be stopped
and started again (or run in the background: `nohup ... &`). Each line holds the exact command,
seed, wall time, machine, the final (last-epoch, never best-on-test) metrics and, for the
diagnosed cells, the per-epoch history used by `benchmarks/report.py`. Results go to
`benchmarks/results/<spec name>.jsonl` unless `--results` says otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import string
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List

import yaml

from procrustean.metrics import SCALAR_METRICS

ROOT = Path(__file__).resolve().parents[1]
FINAL_KEYS = (*(f"eval_{key}" for key, _ in SCALAR_METRICS), "train_image_averaged_accuracy",
              "train_class_averaged_accuracy")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=("main", "ablations"), default="main")
    parser.add_argument("--spec", default=str(ROOT / "benchmarks" / "configs" / "fmnist_lt_e40.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--profiles", nargs="+", default=None, help="default: all profiles of the suite")
    parser.add_argument("--only", nargs="+", default=None, help="only these cells")
    parser.add_argument("--results", default=None, help="default: benchmarks/results/<spec name>.jsonl")
    parser.add_argument("--runs_dir", default=str(ROOT / "benchmarks" / "runs"))
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: cores / jobs)")
    parser.add_argument("--by_seed", action="store_true", help="run profile by profile and seed by seed (every cell "
                        "of a seed before the next), instead of cell by cell")
    parser.add_argument("--var", nargs="+", default=[], metavar="NAME=VALUE",
                        help="values for the spec's ${NAME} placeholders (e.g. the fine-tuning suite's source and target)")
    parser.add_argument("--dry_run", action="store_true")
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.var):
        parser.error(f"--var takes NAME=VALUE, got {' '.join(args.var)}")
    return args


def substitute(options: Dict[str, Any], variables: Dict[str, str]) -> Dict[str, Any]:
    """``${NAME}`` in the spec's string options -> ``--var NAME=VALUE``; a placeholder left unset is an error."""
    resolved = {}
    for key, value in options.items():
        if isinstance(value, str):
            value = string.Template(value).safe_substitute(variables)
            if "${" in value:
                raise SystemExit(f"error: option {key}={value!r} needs --var for its placeholder")
        resolved[key] = value
    return resolved


def profile_options(spec: Dict[str, Any], profile: str) -> Dict[str, Any]:
    """A profile is a config, an imbalance and any further options (e.g. imbalance_class_order); ``family: NAME``
    adds the options of ``families[NAME]`` (a model and how it is trained), under the profile's own."""
    settings = spec["profiles"][profile]
    family = spec["families"][settings["family"]] if "family" in settings else {}
    return {**spec["base"], **family, **{k: v for k, v in settings.items() if k not in ("config", "family")}}


def plan(args: argparse.Namespace, spec: Dict[str, Any]) -> List[Dict[str, Any]]:
    cells = spec[args.suite]
    variables = dict(item.split("=", 1) for item in args.var)
    profiles = args.profiles or (spec["ablation_profiles"] if args.suite == "ablations" else list(spec["profiles"]))
    runs = []
    for name, cell in cells.items():
        if args.only and name not in args.only:
            continue
        for profile in profiles:
            if "profiles" in cell and profile not in cell["profiles"]:
                continue  # e.g. a stage the profile's model does not have
            for seed in args.seeds:
                options = profile_options(spec, profile)
                if args.suite == "ablations":
                    options.update(spec["ablation_base"])
                options.update(cell.get("overrides", {}))
                diagnose = bool(cell.get("diagnose")) and profile in spec.get("diagnose_profiles", spec["profiles"])
                if diagnose:
                    options.update(spec["diagnostics"])
                options = substitute(options, variables)
                options["seed"] = seed
                key = f"{args.suite}/{name}/{profile}/seed{seed}"
                options["output_dir"] = str(Path(args.runs_dir) / key)
                runs.append({"key": key, "suite": args.suite, "cell": name, "profile": profile, "seed": seed,
                             "config": spec["profiles"][profile]["config"], "options": options,
                             "diagnose": diagnose, "keep_history": diagnose or bool(spec.get("keep_history"))})
    if args.by_seed:  # every cell of a seed before the next seed: a suite cut short still leaves paired seeds
        runs.sort(key=lambda run: (profiles.index(run["profile"]), args.seeds.index(run["seed"])))
    return runs


def accelerator_name() -> str:
    """The GPU a run used (nvidia-smi's name), or 'cpu'."""
    try:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=30).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "cpu"
    return names[0].strip() or "cpu"


def code_commit() -> str:
    """The commit the suite runs from (``+dirty`` when tracked files differ from it): every line records it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def command_of(run: Dict[str, Any]) -> List[str]:
    cmd = [sys.executable, "recipes/train.py", "--config", run["config"], "--overwrite_output_dir", "true"]
    for key, value in run["options"].items():
        values = value if isinstance(value, list) else [value]
        cmd += [f"--{key}", *[str(v).lower() if isinstance(v, bool) else str(v) for v in values]]
    return cmd


def execute(run: Dict[str, Any], threads: int, accelerator: str, commit: str) -> Dict[str, Any]:
    cmd = command_of(run)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    start = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.time() - start
    out = Path(run["options"]["output_dir"])
    if proc.returncode != 0:
        raise RuntimeError(f"{run['key']} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    results = json.loads((out / "all_results.json").read_text())
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    record = {
        "key": run["key"], "suite": run["suite"], "cell": run["cell"], "profile": run["profile"], "seed": run["seed"],
        "command": "OMP_NUM_THREADS=%d " % threads + shlex.join(["python", *cmd[1:]]),
        "wall_seconds": round(wall, 1), "threads": threads,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "accelerator": accelerator, "commit": commit,
        "final": {k: results.get(k) for k in FINAL_KEYS}, "weakening_location": results.get("weakening_location"),
        "eval_per_class_accuracy": results.get("eval_per_class_accuracy"),
        "train_per_class_accuracy": results.get("train_per_class_accuracy"),
        "train_class_counts": results.get("train_class_counts"), "class_names": results.get("class_names"),
    }
    if run.get("keep_history", run["diagnose"]):
        record["history"] = history
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    shutil.rmtree(out / "export", ignore_errors=True)  # keep logs and metrics, not weights
    return record


def main(argv=None) -> None:
    args = parse_args(argv)
    spec = yaml.safe_load(Path(args.spec).read_text())
    results_path = Path(args.results or ROOT / "benchmarks" / "results" / f"{Path(args.spec).stem}.jsonl")
    results_path.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if results_path.exists():
        for line in results_path.read_text().splitlines():
            try:
                done.add(json.loads(line)["key"])
            except (ValueError, KeyError):  # a line cut short by a killed run: that cell runs again
                continue
    todo = [run for run in plan(args, spec) if run["key"] not in done]
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    print(f"{len(todo)} runs to do ({len(done)} already in {results_path}), {args.jobs} at a time, "
          f"{threads} thread(s) each", flush=True)
    if args.dry_run:
        for run in todo:
            print(shlex.join(command_of(run)))
        return

    accelerator, commit = accelerator_name(), code_commit()
    print(f"code: {commit}", flush=True)
    lock = threading.Lock()

    def one(run):
        record = execute(run, threads, accelerator, commit)
        with lock, open(results_path, "a") as f:  # one complete line per finished run
            f.write(json.dumps(record) + "\n")
        final = record["final"]
        print(f"{run['key']}: class-avg {final['eval_class_averaged_accuracy']:.4f}, image-avg "
              f"{final['eval_image_averaged_accuracy']:.4f}, {record['wall_seconds']:.0f} s", flush=True)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(one, run) for run in todo]:
            try:
                future.result()
            except RuntimeError as error:
                print(f"FAILED: {error}", flush=True)


if __name__ == "__main__":
    main()
