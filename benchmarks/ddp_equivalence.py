"""1 process vs. 2 processes (gloo DDP on the CPU) at the same global batch: same accuracy, and how fast.

    python benchmarks/ddp_equivalence.py --seeds 0 1 2 --epochs 20

Fashion-MNIST-LT step-100 (n_max 500), CIFAR ResNet-8 with weakening at pre_logits. One process trains
with batch B and 2 threads; two processes train with batch B/2 each and 1 thread each (the same global
batch and the same cores). Prints class-averaged / minor-class accuracy as mean ± std over seeds for
both, the per-seed differences, and the training-loop throughput ratio (2 processes / 1 process).
Results are appended as JSON lines to benchmarks/results/ddp_equivalence.jsonl (resumable).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--global_batch_size", type=int, default=128)
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "ddp_equivalence.jsonl"))
    parser.add_argument("--runs_dir", default=str(ROOT / "benchmarks" / "runs" / "ddp_equivalence"))
    return parser.parse_args(argv)


def run(args, processes: int, seed: int) -> dict:
    out = Path(args.runs_dir) / f"p{processes}-seed{seed}"
    recipe = ["recipes/train.py", "--config", "recipes/configs/fmnist_lt_step100.yaml", "--max_per_class", "500",
              "--epochs", str(args.epochs), "--lr_decay_epochs", str(int(args.epochs * 0.75)),
              str(int(args.epochs * 0.9)), "--lr_decay_rate", "0.1", "--batch_size",
              str(args.global_batch_size // processes), "--eval_every_epochs", str(args.epochs),
              "--checkpointing_steps", "no", "--report_to", "none", "--verify_images", "false",
              "--weakening_location", "pre_logits",  # as measured (results/ddp_equivalence.jsonl), with
              "--weakening_rule", "power", "--loss", "ce",  # the method of then (the configs' loss changed since)
              "--seed", str(seed), "--output_dir", str(out), "--overwrite_output_dir", "true"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if processes == 1:
        cmd = [sys.executable, *recipe]
        env["OMP_NUM_THREADS"] = str(os.cpu_count() or 1)
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               "recipes/accelerate/cpu_2proc.yaml", "--num_processes", str(processes), *recipe]
        env.update(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // processes)))
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    results = json.loads((out / "all_results.json").read_text())
    return {"processes": processes, "seed": seed, "epochs": args.epochs,
            "command": shlex.join(["python" if c == sys.executable else c for c in cmd]),
            "class_averaged_accuracy": results["eval_class_averaged_accuracy"],
            "minor_class_accuracy": results["eval_minor_class_accuracy"],
            "train_samples_per_second": results["train_samples_per_second"]}


def summary(values):
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 \
        else f"{100 * values[0]:.1f}"


def main(argv=None) -> None:
    args = parse_args(argv)
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    done = {(r["processes"], r["seed"], r["epochs"]) for r in records}
    for seed in args.seeds:
        for processes in (1, 2):
            if (processes, seed, args.epochs) not in done:
                record = run(args, processes, seed)
                with open(path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                records.append(record)
                print(json.dumps(record), flush=True)
    rows = {p: [r for r in records if r["processes"] == p and r["epochs"] == args.epochs and r["seed"] in args.seeds]
            for p in (1, 2)}
    print(f"\nglobal batch {args.global_batch_size}, {args.epochs} epochs, seeds {args.seeds}")
    for p, rs in rows.items():
        print(f"{p} process(es): class-avg {summary([r['class_averaged_accuracy'] for r in rs])}, minor "
              f"{summary([r['minor_class_accuracy'] for r in rs])}, "
              f"{statistics.mean(r['train_samples_per_second'] for r in rs):.1f} samples/s")
    pairs = [(a, b) for a in rows[1] for b in rows[2] if a["seed"] == b["seed"]]
    if pairs:
        diffs = [b["class_averaged_accuracy"] - a["class_averaged_accuracy"] for a, b in pairs]
        print(f"2 - 1 processes, class-avg per seed: {[round(100 * d, 1) for d in diffs]} points")
        ratio = statistics.mean(b["train_samples_per_second"] / a["train_samples_per_second"] for a, b in pairs)
        print(f"throughput ratio 2 processes / 1 process: {ratio:.3f}")


if __name__ == "__main__":
    main()
