"""Cost of the weakening: median train-step time with vs. without it, per location, same process.

    python benchmarks/overhead.py --models resnet32_cifar resnet18 --batch_size 128 --steps 20

Every location of each model is timed in interleaved rounds (one step of each configuration per
round); each round gives the ratio of each configuration's step to the baseline's step of that same
round, and the reported ratio is the median of those paired ratios, so that drift of the machine
hits all of them alike. The baseline is the same wrapper with weakening switched off (plain backbone
forward + loss + backward + SGD step). Each location's mix is also timed inside its own steps by torch's
profiler (the ``_FeatureMix`` forward and backward as a share of the step): drift cannot move that number. The policy weakens
*every* sample (gamma = 0), the worst case. It also times the weakening alone (plan + mix of the
pre-logit features), which is what the step ratio at ``pre_logits`` measures through the noise.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import timm
import torch

import procrustean  # noqa: F401
from procrustean import ProcrusteanModel, WeakeningPolicy
from procrustean.train.memory import keep_freed_memory


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet32_cifar", "resnet18"])
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--img_size", type=int, default=32)
    parser.add_argument("--num_classes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=40, help="timed steps (rounds) per configuration")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--profiled_steps", type=int, default=5, help="weakened steps per location under the profiler")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--locations", nargs="+", default=None, help="default: every supported location")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(model, optimizer, x, y, device, n):
    times = []
    for _ in range(n):
        sync(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        model(x, labels=y).loss.backward()
        optimizer.step()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def bench_model(name, args, device):
    counts = [6000] * (args.num_classes // 2) + [60] * (args.num_classes - args.num_classes // 2)
    policy = WeakeningPolicy(counts, gamma=0.0, seed=0)
    kwargs = dict(num_classes=args.num_classes)
    if "vit" in name or "deit" in name:
        kwargs["img_size"] = args.img_size
    torch.manual_seed(0)
    model = ProcrusteanModel(timm.create_model(name, **kwargs), policy).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device)
    y = torch.randint(0, args.num_classes, (args.batch_size,), device=device)
    configs = ["none"] + [loc for loc in model.supported_locations if args.locations is None or loc in args.locations]

    def set_config(config):
        model.weakening_enabled = config != "none"
        if config != "none":
            model.location = config

    for config in configs:
        set_config(config)
        time_steps(model, optimizer, x, y, device, args.warmup)
    times = {config: [] for config in configs}
    for round_ in range(args.steps):
        shift = round_ % len(configs)  # rotate the order, so that no configuration always follows the baseline
        for config in configs[shift:] + configs[:shift]:
            set_config(config)
            times[config] += time_steps(model, optimizer, x, y, device, 1)
    medians = {config: statistics.median(t) for config, t in times.items()}
    paired = {config: statistics.median(t / base for t, base in zip(times[config], times["none"]))
              for config in configs if config != "none"}

    # the mix's own share of a weakened step, from torch's profiler over the same steps: robust to the drift
    # of the machine that the step ratios are not
    shares = {}
    for config in configs[1:]:
        set_config(config)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(args.profiled_steps):
                with torch.profiler.record_function("train_step"):
                    time_steps(model, optimizer, x, y, device, 1)
        totals = {e.key: e.cpu_time_total for e in prof.key_averages()}
        shares[config] = (totals.get("_FeatureMix", 0.0) + totals.get("_FeatureMixBackward", 0.0)) / totals["train_step"]

    # the weakening alone at pre_logits: draw a plan and mix a [B, num_features] feature tensor
    features = torch.randn(args.batch_size, model.backbone.num_features, device=device, requires_grad=True)
    op_times = []
    for _ in range(200):
        sync(device)
        start = time.perf_counter()
        policy.plan(y).apply(features)
        sync(device)
        op_times.append(time.perf_counter() - start)
    return {
        "model": name,
        "baseline_step_ms": medians["none"] * 1e3,
        "step_ms": {c: m * 1e3 for c, m in medians.items()},
        "ratio_vs_baseline": paired,
        "mix_share_of_step": shares,
        "weakening_op_ms": statistics.median(op_times) * 1e3,
        "weakening_op_share_of_step": statistics.median(op_times) / medians["none"],
    }


def main(argv=None):
    args = parse_args(argv)
    kept = keep_freed_memory()  # as the recipe does (procrustean/train/memory.py)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"batch {args.batch_size} x 3 x {args.img_size} x {args.img_size}, {args.steps} interleaved timed steps "
          f"per configuration, every sample weakened (gamma=0); freed memory kept: {kept}\n")
    results = []
    for name in args.models:
        r = bench_model(name, args, device)
        results.append(r)
        print(f"{name}: baseline step {r['baseline_step_ms']:.1f} ms (median); weakening op alone "
              f"{r['weakening_op_ms']:.3f} ms = {100 * r['weakening_op_share_of_step']:.3f}% of a step")
        print(f"  {'location':<12} {'step ms':>9} {'ratio':>7} {'mix share (profiler)':>21}")
        for config, ratio in r["ratio_vs_baseline"].items():
            print(f"  {config:<12} {r['step_ms'][config]:>9.1f} {ratio:>7.3f} "
                  f"{100 * r['mix_share_of_step'][config]:>20.2f}%")
        print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": sys.argv, "results": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
