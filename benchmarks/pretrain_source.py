"""Pretrain a source backbone for the fine-tuning suite: one family of the panel, plain training on a balanced task.

    python benchmarks/pretrain_source.py --family convnext --output_dir sources/convnext
    python benchmarks/pretrain_source.py --family resnet32 --output_dir sources/resnet32 --epochs 15

The family's model and optimiser come from the panel spec (``families`` of benchmarks/configs/families_e40.yaml;
``resnet32`` is the paper's CIFAR ResNet-32 with the protocol's SGD), trained through recipes/train.py with CE,
no weakening and no imbalance on the balanced source (default: Fashion-MNIST, ``--max_per_class`` images of each
of its 10 classes), at the panel's geometry (1 grey channel, 32 px, nothing cropped). What it leaves is the
recipe's export, ``OUTPUT_DIR/export`` (timm's Hub layout), which the fine-tuning suite loads as
``--model local-dir:OUTPUT_DIR/export --pretrained true --reset_classifier true``. Weights are never committed;
the command and the source's test accuracy are printed, and saved in ``OUTPUT_DIR/pretrain_source.json``.
Re-running the command resumes an interrupted source from its last epoch and leaves a finished one as it is.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from procrustean.train.checkpoints import list_checkpoints

ROOT = Path(__file__).resolve().parents[1]
EXTRA_FAMILIES = {"resnet32": {"model": "resnet32_cifar", "optimizer": "sgd", "lr": 0.1, "weight_decay": 0.0002}}


def source_command(family: dict, args: argparse.Namespace) -> list:
    options = {
        **family, "dataset": args.dataset, "imbalance": "none", "max_per_class": args.max_per_class,
        "weakening": False, "loss": "ce", "in_chans": 1, "img_size": 32, "crop_pct": 1.0, "interpolation": "bilinear",
        "data_path": "in_memory", "epochs": args.epochs, "lr_scheduler": "cosine", "warmup_epochs": 1,
        "batch_size": 128, "seed": args.seed, "output_dir": str(args.output_dir), "checkpointing_steps": "epoch",
        "report_to": "none", "verify_images": False,
    }
    if args.max_train_steps:
        options["max_train_steps"] = args.max_train_steps
    cmd = [sys.executable, "recipes/train.py", "--config", "recipes/configs/fmnist_lt_step100.yaml"]
    for key, value in options.items():
        cmd += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return cmd


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", required=True, help="a family of the spec, or resnet32")
    parser.add_argument("--output_dir", required=True, type=Path)
    parser.add_argument("--spec", default=str(ROOT / "benchmarks" / "configs" / "families_e40.yaml"))
    parser.add_argument("--dataset", default="fashion_mnist", help="the balanced source (any recipe --dataset)")
    parser.add_argument("--max_per_class", type=int, default=2000, help="source images per class")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--max_train_steps", type=int, default=None, help="a shorter run (smoke tests)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    families = {**yaml.safe_load(Path(args.spec).read_text())["families"], **EXTRA_FAMILIES}
    if args.family not in families:
        parser.error(f"unknown family {args.family!r}; the spec has {', '.join(families)}")
    args.output_dir = args.output_dir.absolute()
    cmd = source_command(families[args.family], args)
    command = shlex.join(["python", *cmd[1:]])
    done = args.output_dir / "pretrain_source.json"
    if done.exists():  # resumable like the suites: a finished source is kept, another one is never overwritten
        if json.loads(done.read_text())["command"] != command:
            parser.error(f"{args.output_dir} holds a source pretrained by another command (see {done}); "
                         "choose another --output_dir or delete that one")
        print(f"{args.family}: already pretrained, {done.read_text().strip()}")
        return
    if list_checkpoints(args.output_dir):  # interrupted: go on from its last epoch (the recipe checks it is this run)
        cmd += ["--resume_from_checkpoint", "latest"]
    print(command, flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")})
    results = json.loads((args.output_dir / "all_results.json").read_text())
    summary = {"family": args.family, "command": command,
               "export": str(args.output_dir / "export"),
               "source_test_accuracy": results.get("eval_class_averaged_accuracy")}
    done.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
