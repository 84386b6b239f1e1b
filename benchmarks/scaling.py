"""Cost as the work grows: the training step against batch size and number of classes, start-up against
data-set size, and the per-epoch bookkeeping; one process (plus two for the all-reduce), one plot.

    python benchmarks/scaling.py [--rounds 20] [--json benchmarks/results/scaling.json] [--plot docs/cost_scaling.png]

1. Step time (forward, loss, backward, SGD step) of CIFAR ResNet-8 (1 x 28 x 28) against the batch size,
   weakening off and on (count rule, stage:1, Fashion-MNIST step-100 counts), interleaved, paired ratios.
2. Against the number of classes (10, 100, 1,000; step-100 counts), with weakening off, with the count
   rule, and with the progress rule plus the recipe's per-class training accuracy. The parts that
   grow with the classes are also timed alone: a batch's draws (the collator), resolving them, the
   per-class accuracy update, the progress rule's update, and the all-reduce of its [2, C] counts
   between two gloo processes (what the progress rule adds per step when distributed).
3. Start-up against data-set size: counting the classes of N labels (a ``ClassLabel`` column of 1,000
   classes), building an exp-10 imbalanced subset of them (10 labels per class leave no room for exp-100), and the weakening policy from the counts.
4. The per-epoch bookkeeping: per-class metrics computed, the epoch logged (metrics.jsonl, CSV,
   history), and the run state a checkpoint writes (JSON) after 200 epochs, against the classes.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import timm
import torch

import procrustean  # noqa: F401  (registers resnet8_cifar)
from procrustean import ProcrusteanModel, WeakeningPolicy
from procrustean.train.memory import keep_freed_memory
from procrustean.data import class_histogram, make_imbalanced
from procrustean.data.imbalance import imbalanced_counts
from procrustean.metrics.per_class import PerClassAccuracy
from procrustean.policy import batch_generator

BATCH_SIZES = [32, 64, 128, 256, 512]
CLASS_COUNTS = [10, 100, 1000]
LABEL_COUNTS = [10_000, 100_000, 1_000_000]


def step_counts(num_classes: int, n_max: int = 6000) -> List[int]:
    return imbalanced_counts("step", 100, n_max, num_classes)


def interleaved_steps(models: Dict[str, Callable[[], None]], rounds: int, warmup: int = 3) -> Dict[str, List[float]]:
    """Seconds per step of each configuration, one step of each per round, the order rotated every round."""
    names = list(models)
    for name in names:
        for _ in range(warmup):
            models[name]()
    times: Dict[str, List[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            models[name]()
            times[name].append(time.perf_counter() - start)
    return times


def training_step(model: ProcrusteanModel, batch_size: int, num_classes: int, weakening: bool,
                  accuracy: PerClassAccuracy = None) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, 1, 28, 28)
    counts = model.policy.class_counts.double() if model.policy is not None else torch.ones(num_classes)
    y = torch.multinomial(counts, batch_size, replacement=True, generator=torch.Generator().manual_seed(0))

    def step() -> None:
        model.weakening_enabled = weakening
        draws = model.policy.draw(y, generator=batch_generator(0, y, x)) if weakening else None
        optimizer.zero_grad(set_to_none=True)
        output = model(x, labels=y, weakening_draws=draws)
        output.loss.backward()
        optimizer.step()
        if accuracy is not None:
            accuracy.update(output.logits.detach(), y)

    return step


def resnet8(num_classes: int, rule: str = "power") -> ProcrusteanModel:
    torch.manual_seed(0)
    policy = WeakeningPolicy(step_counts(num_classes), rule=rule, seed=0)
    return ProcrusteanModel(timm.create_model("resnet8_cifar", num_classes=num_classes, in_chans=1), policy).train()


def batch_size_scaling(rounds: int) -> List[Dict[str, float]]:
    rows = []
    for batch_size in BATCH_SIZES:
        model = resnet8(10)
        times = interleaved_steps({"off": training_step(model, batch_size, 10, False),
                                   "on": training_step(model, batch_size, 10, True)}, rounds)
        off, on = statistics.median(times["off"]), statistics.median(times["on"])
        ratio = statistics.median(a / b for a, b in zip(times["on"], times["off"]))
        rows.append({"batch_size": batch_size, "off_ms": 1e3 * off, "on_ms": 1e3 * on, "ratio": ratio,
                     "samples_per_second_on": batch_size / on})
        print(f"  batch {batch_size:>4}: off {1e3 * off:7.1f} ms, on {1e3 * on:7.1f} ms, ratio {ratio:.3f}, "
              f"{batch_size / on:6.0f} samples/s with weakening", flush=True)
    return rows


def microseconds(fn: Callable[[], None], repeats: int = 300) -> float:
    for _ in range(5):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1e6 * (time.perf_counter() - start) / repeats


def _all_reduce_worker(rank: int, port: int, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    result = {}
    for num_classes in CLASS_COUNTS:
        tensor = torch.zeros(2, num_classes, dtype=torch.float64)
        result[num_classes] = microseconds(lambda: dist.all_reduce(tensor), repeats=200)
    dist.destroy_process_group()
    if rank == 0:
        queue.put(result)


def all_reduce_microseconds() -> Dict[int, float]:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    processes = [context.Process(target=_all_reduce_worker, args=(rank, port, queue)) for rank in range(2)]
    for p in processes:
        p.start()
    result = queue.get()
    for p in processes:
        p.join()
    return result


def class_scaling(rounds: int) -> List[Dict[str, float]]:
    rows = []
    reduce_us = all_reduce_microseconds()
    for num_classes in CLASS_COUNTS:
        count_model, progress_model = resnet8(num_classes), resnet8(num_classes, rule="progress")
        accuracy = PerClassAccuracy(num_classes)
        times = interleaved_steps({"off": training_step(count_model, 128, num_classes, False),
                                   "count": training_step(count_model, 128, num_classes, True),
                                   "progress": training_step(progress_model, 128, num_classes, True, accuracy)},
                                  rounds)
        policy = progress_model.policy
        y = torch.randint(0, num_classes, (128,))
        x = torch.randn(128, 1, 28, 28)
        logits = torch.randn(128, num_classes)
        draws = policy.draw(y)
        row = {"num_classes": num_classes, "off_ms": 1e3 * statistics.median(times["off"]),
               "count_ratio": statistics.median(a / b for a, b in zip(times["count"], times["off"])),
               "progress_ratio": statistics.median(a / b for a, b in zip(times["progress"], times["off"])),
               "draw_us": microseconds(lambda: policy.draw(y, generator=batch_generator(0, y, x))),
               "resolve_us": microseconds(lambda: policy.resolve(draws, y)),
               "per_class_accuracy_update_us": microseconds(lambda: accuracy.update(logits, y)),
               "progress_update_us": microseconds(lambda: policy.progress.update(logits, y)),
               "all_reduce_us": reduce_us[num_classes]}
        rows.append(row)
        print(f"  {num_classes:>5} classes: step {row['off_ms']:.1f} ms; count rule x{row['count_ratio']:.3f}, progress "
              f"rule + per-class accuracy x{row['progress_ratio']:.3f}; draws {row['draw_us']:.0f} us, resolve "
              f"{row['resolve_us']:.0f} us, per-class accuracy {row['per_class_accuracy_update_us']:.0f} us, progress "
              f"{row['progress_update_us']:.0f} us, all-reduce (2 gloo processes) {row['all_reduce_us']:.0f} us",
              flush=True)
    return rows


def startup_scaling() -> List[Dict[str, float]]:
    import datasets

    rows = []
    rng = np.random.default_rng(0)
    for num_labels in LABEL_COUNTS:
        features = datasets.Features({"label": datasets.ClassLabel(num_classes=1000)})
        labels = rng.permutation(np.arange(num_labels) % 1000)  # N / 1,000 of each class, shuffled
        data = datasets.Dataset.from_dict({"label": labels}, features=features)
        start = time.perf_counter()
        histogram = class_histogram(data)
        counted = time.perf_counter()
        subset = make_imbalanced(data, "exp:10", seed=0)
        imbalanced = time.perf_counter()
        WeakeningPolicy(class_histogram(subset).counts)
        done = time.perf_counter()
        rows.append({"num_labels": num_labels, "count_s": counted - start, "imbalance_s": imbalanced - counted,
                     "policy_s": done - imbalanced, "classes": len(histogram.counts), "kept": len(subset)})
        print(f"  {num_labels:>9,} labels, 1,000 classes: counting {counted - start:.3f} s, exp-10 subset "
              f"{imbalanced - counted:.3f} s ({len(subset):,} kept), counts + policy {done - imbalanced:.3f} s",
              flush=True)
    return rows


def epoch_bookkeeping(epochs: int = 200) -> List[Dict[str, float]]:
    from accelerate import Accelerator

    from procrustean.train.metrics_log import MetricsLog
    from procrustean.train.state import RunState

    accelerator = Accelerator(cpu=True)
    rows = []
    for num_classes in CLASS_COUNTS:
        with tempfile.TemporaryDirectory() as tmp:
            state = RunState(PerClassAccuracy(num_classes))
            log = MetricsLog(Path(tmp), accelerator)
            y, logits = torch.randint(0, num_classes, (128,)), torch.randn(128, num_classes)
            epoch_ms = []
            for epoch in range(epochs):
                state.train_accuracy.update(logits, y)
                start = time.perf_counter()
                train = state.train_accuracy.reduced(accelerator).compute()
                train["progress_accuracy"] = train["weakening_probabilities"] = train["per_class_accuracy"]
                evaluation = {**state.train_accuracy.compute(), "num_samples": 1000}
                with contextlib.redirect_stdout(io.StringIO()):  # the epoch line the recipe prints
                    log.epoch(state, epoch, train, evaluation, lr=0.1, weakening=True)
                state.next_epoch()
                epoch_ms.append(1e3 * (time.perf_counter() - start))
            start = time.perf_counter()
            run_state = json.dumps(state.state_dict())
            dump_s = time.perf_counter() - start
        rows.append({"num_classes": num_classes, "epoch_ms_first": statistics.median(epoch_ms[:10]),
                     "epoch_ms_last": statistics.median(epoch_ms[-10:]), "run_state_mb": len(run_state) / 1e6,
                     "run_state_dump_s": dump_s})
        print(f"  {num_classes:>5} classes: end-of-epoch bookkeeping {rows[-1]['epoch_ms_first']:.1f} ms (epochs 1-10), "
              f"{rows[-1]['epoch_ms_last']:.1f} ms (epochs {epochs - 9}-{epochs}); run state after {epochs} epochs "
              f"{rows[-1]['run_state_mb']:.2f} MB JSON, {1e3 * dump_s:.0f} ms to serialise", flush=True)
    return rows


def plot(results: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    rows = results["batch_size"]
    ax = axes[0, 0]
    ax.plot([r["batch_size"] for r in rows], [r["off_ms"] for r in rows], "o-", label="weakening off")
    ax.plot([r["batch_size"] for r in rows], [r["on_ms"] for r in rows], "s-", label="weakening on (stage:1)")
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="ms per training step",
           title="ResNet-8, 1x28x28: step time vs batch size")
    for r in rows:
        ax.annotate(f"x{r['ratio']:.3f}", (r["batch_size"], r["on_ms"]), textcoords="offset points", xytext=(4, 6),
                    fontsize=8)
    ax.legend()
    rows = results["classes"]
    ax = axes[0, 1]
    classes = [r["num_classes"] for r in rows]
    for key, label in (("draw_us", "draws (collator)"), ("resolve_us", "resolve"),
                       ("per_class_accuracy_update_us", "per-class accuracy update"),
                       ("progress_update_us", "progress rule update"), ("all_reduce_us", "all-reduce [2, C], 2 gloo")):
        ax.plot(classes, [r[key] for r in rows], "o-", label=label)
    ax.set(xscale="log", yscale="log", xlabel="number of classes", ylabel="microseconds per step",
           title=f"per-step work that grows with classes (step: {rows[0]['off_ms']:.0f} ms)")
    ax.legend(fontsize=8)
    rows = results["startup"]
    ax = axes[1, 0]
    labels = [r["num_labels"] for r in rows]
    ax.plot(labels, [r["count_s"] for r in rows], "o-", label="count classes")
    ax.plot(labels, [r["imbalance_s"] for r in rows], "s-", label="exp-10 subset")
    ax.set(xscale="log", yscale="log", xlabel="labels in the training split (1,000 classes)", ylabel="seconds",
           title="start-up vs data-set size")
    ax.legend()
    rows = results["epoch"]
    ax = axes[1, 1]
    classes = [r["num_classes"] for r in rows]
    ax.plot(classes, [r["epoch_ms_first"] for r in rows], "o-", label="end of epoch, epochs 1-10")
    ax.plot(classes, [r["epoch_ms_last"] for r in rows], "s-", label="end of epoch, epochs 191-200")
    ax.plot(classes, [1e3 * r["run_state_dump_s"] for r in rows], "^-", label="run state JSON after 200 epochs")
    ax.set(xscale="log", yscale="log", xlabel="number of classes", ylabel="ms",
           title="per-epoch bookkeeping")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="interleaved timed steps per configuration")
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", default=None)
    args = parser.parse_args(argv)
    kept = keep_freed_memory()  # as the recipe does (procrustean/train/memory.py)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    print(f"command: python benchmarks/scaling.py {' '.join(sys.argv[1:])}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, freed memory kept: {kept}")
    import datasets

    datasets.disable_progress_bars()
    results = {"command": sys.argv}
    print("1. training step vs batch size")
    results["batch_size"] = batch_size_scaling(args.rounds)
    print("2. training step and per-step work vs number of classes (batch 128)")
    results["classes"] = class_scaling(args.rounds)
    print("3. start-up vs data-set size")
    results["startup"] = startup_scaling()
    print("4. per-epoch bookkeeping vs number of classes")
    results["epoch"] = epoch_bookkeeping()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if args.plot:
        plot(results, Path(args.plot))


if __name__ == "__main__":
    main()
