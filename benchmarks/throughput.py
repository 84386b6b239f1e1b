"""Training throughput of the recipe vs. a bare PyTorch loop (and, optionally, timm's own train.py).

    python benchmarks/throughput.py --steps 100 [--timm_train_py /path/to/pytorch-image-models/train.py]

All on the same data (Fashion-MNIST-LT step-100, n_max 500, the suite's training split), the same
model (CIFAR ResNet-8, 1 channel, 28 px), the same batch size, optimizer and augmentation, one after
the other on this machine, each over the same number of optimizer steps after a few warm-up steps.
Reported: training samples per second inside each training loop (no start-up, no evaluation) and
the ratios to the bare loop. timm's train.py is not part of the timm wheel: pass the file from a
checkout of pytorch-image-models matching the installed timm; it runs with procrustean imported so
that `resnet8_cifar` exists, on an imagefolder export of the same split.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
MEAN, STD = [0.2860], [0.3530]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="timed optimizer steps per contender")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--max_per_class", type=int, default=500)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--weakening_location", default="stage:1", help="where the recipe weakens when it does")
    parser.add_argument("--timm_train_py", default=None)
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


def build_split(args, workdir: Path):
    import datasets

    import procrustean
    from procrustean.data.fashion_mnist import load_fashion_mnist

    datasets.disable_progress_bars()
    data = load_fashion_mnist()
    train = procrustean.make_imbalanced(data["train"], "step:100", label_column="label", seed=0,
                                        max_per_class=args.max_per_class)
    datasets.DatasetDict({"train": train, "test": data["test"].select(range(500))}).save_to_disk(str(workdir / "ds"))
    return train


def bare_loop(args, train) -> float:
    """What a user would write by hand: DataLoader, model, SGD, cross-entropy. Samples per second."""
    import timm

    from procrustean import ProcrusteanCollator
    from procrustean.data import build_transforms, with_image_transform

    torch.manual_seed(0)
    model = timm.create_model("resnet8_cifar", num_classes=10, in_chans=1).train()
    transform = build_transforms(model, is_training=True, img_size=28, train_crop="pad4", mean=MEAN, std=STD)
    loader = DataLoader(with_image_transform(train, transform, "image", "label", 1), batch_size=args.batch_size,
                        shuffle=True, collate_fn=ProcrusteanCollator(), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    step, samples, start = 0, 0, None
    while step < args.warmup + args.steps:
        for batch in loader:
            if step == args.warmup:
                start = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(batch["pixel_values"]), batch["labels"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if start is not None:
                samples += len(batch["labels"])
            if step >= args.warmup + args.steps:
                break
    return samples / (time.perf_counter() - start)


def recipe(args, workdir: Path, weakening: bool) -> float:
    out = workdir / f"recipe-{'weak' if weakening else 'plain'}"
    cmd = [sys.executable, "recipes/train.py", "--config", "recipes/configs/fmnist_lt_step100.yaml",
           "--dataset", str(workdir / "ds"), "--imbalance", "none", "--max_train_steps", str(args.steps),
           "--epochs", "1000", "--warmup_epochs", "0", "--batch_size", str(args.batch_size),
           "--checkpointing_steps", "no", "--report_to", "none", "--verify_images", "false",
           "--eval_every_epochs", "1000", "--weakening", str(weakening).lower(),
           "--weakening_location", args.weakening_location, "--output_dir", str(out),
           "--overwrite_output_dir", "true"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return json.loads((out / "all_results.json").read_text())["train_samples_per_second"]


def timm_train(args, workdir: Path, train) -> float:
    """timm's train.py on an imagefolder export of the same split; samples/s from its per-update log lines.

    Its loader reads every image as RGB (the 2023 train.py has no --input-img-mode), so timm trains the
    3-channel variant of the model: only the first convolution differs (3 -> 16 instead of 1 -> 16)."""
    folder = workdir / "imagefolder"
    if not folder.exists():
        names = train.features["label"].names
        for i, example in enumerate(train):
            target = folder / "train" / f"{example['label']}_{names[example['label']].replace('/', '-')}"
            target.mkdir(parents=True, exist_ok=True)
            example["image"].save(target / f"{i}.png")
        shutil.copytree(folder / "train", folder / "validation")
    steps_per_epoch = -(-len(train) // args.batch_size)
    epochs = -(-(args.steps + args.warmup) // steps_per_epoch)
    # procrustean registers resnet8_cifar. train.py versions without --device (e.g. the 2023 one, commit
    # 2aabaef) assume CUDA twice: init_distributed_device gets args.device = "cpu", and the default
    # device=torch.device('cuda') of train_one_epoch / validate is read as the CPU; nothing else changes.
    launcher = ("import sys, procrustean, timm.utils as u; init = u.init_distributed_device; "
                "u.init_distributed_device = lambda a: (a.__dict__.setdefault('device', 'cpu'), init(a))[1]; "
                "path = sys.argv[1]; sys.argv = sys.argv[1:]; "
                "src = open(path).read().replace(\"device=torch.device('cuda')\", \"device=torch.device('cpu')\"); "
                "exec(compile(src, path, 'exec'), {'__name__': '__main__', '__file__': path})")
    cmd = [sys.executable, "-c", launcher, args.timm_train_py, "--data-dir", str(folder), "--model", "resnet8_cifar",
           "--num-classes", "10", "--in-chans", "3", "--input-size", "3", "28", "28", "--mean", *map(str, MEAN * 3),
           "--std", *map(str, STD * 3), "-b", str(args.batch_size), "--epochs", str(epochs), "--lr", "0.1",
           "--opt", "sgd", "--momentum", "0.9", "--weight-decay", "2e-4", "--sched", "step", "--warmup-epochs", "0",
           "--workers", "0", "--log-interval", "1", "--output", str(workdir / "timm-out"), "--no-prefetcher",
           "--hflip", "0.5", "--scale", "1", "1", "--ratio", "1", "1", "--color-jitter", "0", "--smoothing", "0",
           "--val-split", "validation"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    # one log line per optimizer update: "Time: <seconds>s, <samples per second>/s  (<running averages>)"
    updates = [(float(t), float(r)) for t, r in re.findall(r"Time: ([\d.]+)s,\s*([\d.]+)/s", proc.stdout + proc.stderr)]
    timed = updates[args.warmup:args.warmup + args.steps]
    if not timed:
        raise RuntimeError(f"could not read timm's rate (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return sum(t * r for t, r in timed) / sum(t for t, _ in timed)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="procrustean-throughput-"))
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} threads; {args.steps} timed steps of batch {args.batch_size} after {args.warmup} warm-up")
    train = build_split(args, workdir)
    # alternating order (off, on, on, off), averaged, so that drift of the machine hits both alike
    off_1, on_1 = recipe(args, workdir, weakening=False), recipe(args, workdir, weakening=True)
    on_2, off_2 = recipe(args, workdir, weakening=True), recipe(args, workdir, weakening=False)
    bare = bare_loop(args, train)
    print(f"recipe runs (samples/s): off {off_1:.1f}, on {on_1:.1f}, on {on_2:.1f}, off {off_2:.1f}; bare {bare:.1f}")
    results = {"bare PyTorch loop": bare,
               "recipe, weakening off": (off_1 + off_2) / 2,
               f"recipe, weakening on ({args.weakening_location})": (on_1 + on_2) / 2}
    if args.timm_train_py:
        results["timm train.py"] = timm_train(args, workdir, train)
    base = results["bare PyTorch loop"]
    print(f"\n{'contender':<36} {'samples/s':>10} {'vs bare loop':>13}")
    for name, rate in results.items():
        print(f"{name:<36} {rate:>10.1f} {rate / base:>13.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": sys.argv, "samples_per_second": results}, indent=2))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
