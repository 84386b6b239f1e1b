"""torch.compile on this machine: compiled vs eager samples/s with the weakening on, and the weakening's cost under
compile (train step with vs without it), paired within rounds in one process; plus the compile time.

    python benchmarks/compile.py --models resnet8_cifar resnet32_cifar convnext_atto --steps 10 --threads 1
    python benchmarks/compile.py --models resnet32_cifar convnext_atto --bf16 --channels_last   # on a GPU
    python benchmarks/compile.py --models resnet8_cifar --steps 30 --threads 1 --kernel_profile 10  # where it goes

Four configurations of the same model and optimizer: eager / compiled (``torch.compile(model)``, inductor by
default) x weakening on / off. Each round times one train step (forward + loss + backward + SGD step) of each
configuration, the order rotated per round; a configuration's ratio is the median over rounds of its step time
over its partner's in the same round, so drift of the machine hits both alike. The weakening is the recipe's:
the progress rule (count prior from 5 classes of 6000 and 5 of 60 samples; ``--rule power --gamma 0`` weakens
every sample, the worst case) at ``--location`` (default ``stage:1``), with each batch's draws made as
``ProcrusteanCollator(policy)`` makes them, before the step (in
the recipe they come with the batch from the DataLoader). A pool of batches with different labels cycles, so
the number of weakened samples changes from step to step. Compiled weakening on and off are two graphs of the
same compiled module (the switch is guarded); the compile time is the first step of each, minus a compiled step,
with a fresh inductor cache (``TORCHINDUCTOR_CACHE_DIR`` set to an empty folder unless given).
"""
from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="procrustean-inductor-"))  # a cold compile

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import timm  # noqa: E402
import torch  # noqa: E402

import procrustean  # noqa: F401,E402  (registers the CIFAR ResNets)
from procrustean import ProcrusteanModel, WeakeningPolicy  # noqa: E402
from procrustean.policy import batch_generator  # noqa: E402
from procrustean.train.memory import keep_freed_memory  # noqa: E402

CONFIGS = ("eager, weakening off", "eager, weakening on", "compiled, weakening off", "compiled, weakening on")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet8_cifar", "resnet32_cifar", "convnext_atto"])
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--img_size", type=int, default=32)
    parser.add_argument("--num_classes", type=int, default=10)
    parser.add_argument("--location", default="stage:1")
    parser.add_argument("--rule", default="progress", choices=["progress", "power"])
    parser.add_argument("--gamma", type=float, default=1.0, help="the power rule's exponent (also the progress rule's "
                        "prior); 0 weakens every sample, the worst case")
    parser.add_argument("--steps", type=int, default=10, help="timed rounds (one step of each configuration each)")
    parser.add_argument("--warmup", type=int, default=2, help="steps per configuration after the compile")
    parser.add_argument("--batches", type=int, default=4, help="distinct batches cycled through")
    parser.add_argument("--mode", default=None, help="torch.compile mode (default: torch's default)")
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--bf16", action="store_true", help="autocast to bfloat16 (the GPU protocol)")
    parser.add_argument("--channels_last", action="store_true", help="model and batches channels-last (GPU protocol)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--kernel_profile", type=int, default=0,
                        help="after the timing, profile this many compiled steps with and without the weakening "
                        "(torch.profiler, with inductor's kernel profiler switched on before compiling) and print "
                        "where the step's time goes; the timed rounds then carry the profiler's markers too")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_model(name, args, device):
    counts = [6000] * (args.num_classes // 2) + [60] * (args.num_classes - args.num_classes // 2)
    policy = WeakeningPolicy(counts, rule=args.rule, gamma=args.gamma, seed=0)
    kwargs = dict(num_classes=args.num_classes)
    if "vit" in name or "deit" in name:
        kwargs["img_size"] = args.img_size
    torch.manual_seed(0)
    model = ProcrusteanModel(timm.create_model(name, **kwargs), policy, location=args.location).to(device).train()
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    compiled = torch.compile(model, mode=args.mode, backend=args.backend)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(args.batches):
        x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, generator=g)
        y = torch.randint(0, args.num_classes, (args.batch_size,), generator=g)
        draws = policy.draw(y, generator=batch_generator(0, y, x))  # what ProcrusteanCollator(policy) adds
        batches.append((x.to(device).contiguous(memory_format=layout), y.to(device), draws))
    state = {"batch": 0}

    def step(config):
        forward = compiled if config.startswith("compiled") else model
        model.weakening_enabled = config.endswith("on")
        x, y, draws = batches[state["batch"] % len(batches)]
        state["batch"] += 1
        sync(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = forward(x, labels=y, weakening_draws=draws).loss
        loss.backward()
        optimizer.step()
        sync(device)
        return time.perf_counter() - start

    first = {config: step(config) for config in CONFIGS}  # the compiled configurations compile here
    for config in CONFIGS:
        for _ in range(args.warmup):
            step(config)
    times = {config: [] for config in CONFIGS}
    for round_ in range(args.steps):
        shift = round_ % len(CONFIGS)
        for config in CONFIGS[shift:] + CONFIGS[:shift]:
            times[config].append(step(config))

    def paired(a, b):
        return statistics.median(x / y for x, y in zip(times[a], times[b]))

    medians = {config: statistics.median(t) for config, t in times.items()}
    breakdown = {config: step_breakdown(step, config, args.kernel_profile)
                 for config in CONFIGS if config.startswith("compiled")} if args.kernel_profile else None
    return {
        "step_breakdown_ms": breakdown,
        "model": name,
        "step_ms": {c: m * 1e3 for c, m in medians.items()},
        "samples_per_s": {c: args.batch_size / m for c, m in medians.items()},
        "compiled_speedup_weakening_on": paired("eager, weakening on", "compiled, weakening on"),
        "compiled_speedup_weakening_off": paired("eager, weakening off", "compiled, weakening off"),
        "weakening_cost_compiled": paired("compiled, weakening on", "compiled, weakening off"),
        "weakening_cost_eager": paired("eager, weakening on", "eager, weakening off"),
        "compile_s": {c: first[c] - medians[c] for c in CONFIGS if c.startswith("compiled")},
        "weakened_per_batch": [int(policy.resolve(d, y.cpu()).weakened.sum()) for _, y, d in batches],
    }


def step_breakdown(step, config, steps):
    """Milliseconds per step of one configuration by what spends them: the mix's kernels (eager ones, run by its
    operators), inductor's generated kernels, the convolutions (oneDNN, outside inductor), and all the rest."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        wall = sum(step(config) for _ in range(steps))
    events = prof.key_averages()
    mix = sum(e.self_cpu_time_total for e in events
              if e.key in ("aten::index_select", "aten::lerp_", "aten::_embedding_bag_forward_only"))
    kernels = sum(e.self_cpu_time_total for e in events if "cpp_fused" in e.key)
    convolutions = sum(e.self_cpu_time_total for e in events
                       if e.key in ("aten::mkldnn_convolution", "aten::convolution_backward"))
    per_step = {"step (profiled)": wall * 1e6, "the mix (index_select, lerp_, embedding_bag)": mix,
                "inductor kernels": kernels, "convolutions": convolutions,
                "the rest": wall * 1e6 - mix - kernels - convolutions}
    return {key: value / steps / 1e3 for key, value in per_step.items()}


def main(argv=None):
    args = parse_args(argv)
    kept = keep_freed_memory()  # as the recipe does
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.kernel_profile:
        import torch._inductor.config as inductor_config
        inductor_config.cpp.enable_kernel_profile = True  # names each generated kernel in the profile
    device = torch.device(args.device)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"commit {commit}")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", load average {os.getloadavg()[0]:.2f} at start")
    print(f"batch {args.batch_size} x 3 x {args.img_size} x {args.img_size}, {args.rule} rule (gamma {args.gamma}) "
          f"at {args.location}, "
          f"torch.compile(backend={args.backend!r}, mode={args.mode!r}), bf16 {args.bf16}, channels_last "
          f"{args.channels_last}; {args.steps} rounds, one step of each "
          f"configuration per round; freed memory kept: {kept}\n")
    results = []
    for name in args.models:
        r = bench_model(name, args, device)
        results.append(r)
        print(f"{name}: weakened samples per batch at the end {r['weakened_per_batch']} of {args.batch_size}")
        print(f"  {'configuration':<26} {'step ms':>9} {'samples/s':>10}")
        for config in CONFIGS:
            print(f"  {config:<26} {r['step_ms'][config]:>9.1f} {r['samples_per_s'][config]:>10.0f}")
        print(f"  compiled vs eager, samples/s, weakening on:  {r['compiled_speedup_weakening_on']:.3f}x "
              f"(off: {r['compiled_speedup_weakening_off']:.3f}x)")
        print(f"  weakening's cost, step on / off: compiled {r['weakening_cost_compiled']:.3f}x, "
              f"eager {r['weakening_cost_eager']:.3f}x")
        print(f"  compile time (first step less a compiled step): weakening off "
              f"{r['compile_s']['compiled, weakening off']:.1f} s, weakening on "
              f"{r['compile_s']['compiled, weakening on']:.1f} s (a second graph: the switch is guarded)")
        if r["step_breakdown_ms"]:
            on, off = r["step_breakdown_ms"]["compiled, weakening on"], r["step_breakdown_ms"]["compiled, weakening off"]
            print(f"  where a compiled step's time goes, ms per step ({args.kernel_profile} profiled steps each):")
            print(f"  {'':<50} {'off':>8} {'on':>8} {'on - off':>9}")
            for key in on:
                print(f"  {key:<50} {off.get(key, 0.0):>8.2f} {on[key]:>8.2f} {on[key] - off.get(key, 0.0):>9.2f}")
        print(flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": sys.argv, "commit": commit, "results": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
