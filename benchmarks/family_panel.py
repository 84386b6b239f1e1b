"""What each family of the panel looks like, and what one of its training steps costs on this machine.

    python benchmarks/family_panel.py --spec benchmarks/configs/families_e40.yaml --threads 1 --rounds 15

For every family of the spec (built exactly as its runs build it: the family's model and ``model_kwargs``, one
grey channel, 32 px, 10 classes): parameters, blocks per stage, and each stage boundary's module, channels
and feature-map size (the locations ``stage:k``); then the train-step cost (forward, loss, backward, SGD step,
batch 128, weakening off) timed in interleaved rounds with the CIFAR ResNet-8 as the reference, so each round
gives a paired ratio that the machine's drift hits alike. ``s / 40-epoch run`` is the step-100 protocol's 800
steps at the median step time, training only.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import timm
import torch
import yaml

import procrustean  # noqa: F401  (registers resnet8_cifar)
from procrustean import ProcrusteanModel

REFERENCE = "resnet8_cifar"


def build(options: dict) -> torch.nn.Module:
    kwargs = json.loads(options.get("model_kwargs") or "{}")
    return timm.create_model(options["model"], num_classes=10, in_chans=1, **kwargs)


def blocks_per_stage(model: torch.nn.Module) -> str:
    """Blocks in each stage (ConvNeXt, ResNet, MobileNet, RegNet), or the depth of a plain stack of blocks (ViT)."""
    children = dict(model.named_children())
    if "stages" in children:
        return "/".join(str(len(s.blocks)) for s in model.stages)
    layers = [m for n, m in children.items() if n.startswith("layer") or (n[:1] == "s" and n[1:].isdigit())]
    if layers:
        return "/".join(str(len(list(layer.children()))) for layer in layers)
    blocks = children.get("blocks")
    if blocks is not None and all(isinstance(b, torch.nn.Sequential) for b in blocks):
        return "/".join(str(len(b)) for b in blocks)
    return f"{len(blocks)} blocks" if blocks is not None else "?"


def stage_table(model: torch.nn.Module, batch: torch.Tensor) -> list:
    shapes = {}
    wrapper = ProcrusteanModel(model, None)

    def record(name):
        def hook(module, inputs, output) -> None:
            shapes.setdefault(name, tuple(output.shape[1:]))
        return hook

    hooks = [model.get_submodule(name).register_forward_hook(record(name)) for name in wrapper._stage_names]
    with torch.no_grad():
        model.eval()(batch[:2])
    for hook in hooks:
        hook.remove()
    return [(f"stage:{k}", name, shapes.get(name)) for k, name in enumerate(wrapper._stage_names)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="benchmarks/configs/families_e40.yaml")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="the suite runs each job on one thread")
    parser.add_argument("--steps_per_run", type=int, default=800, help="the step-100 40-epoch protocol: 20 x 40")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    families = {REFERENCE: {"model": REFERENCE}, **yaml.safe_load(Path(args.spec).read_text())["families"]}
    x = torch.randn(args.batch_size, 1, 32, 32)
    y = torch.randint(0, 10, (args.batch_size,))
    models, optimizers = {}, {}
    for name, options in families.items():
        models[name] = build(options).train()
        optimizers[name] = torch.optim.SGD(models[name].parameters(), lr=0.01, momentum=0.9)

    def step(name: str) -> float:
        start = time.perf_counter()
        optimizers[name].zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(models[name](x), y).backward()
        optimizers[name].step()
        return time.perf_counter() - start

    times = {name: [] for name in families}
    for round_ in range(args.warmup + args.rounds):
        for name in families:
            t = step(name)
            if round_ >= args.warmup:
                times[name].append(t)
    rows = []
    for name, options in families.items():
        model = models[name]
        ratios = [t / r for t, r in zip(times[name], times[REFERENCE])]
        median = statistics.median(times[name])
        rows.append({"family": name, "model": options["model"], "model_kwargs": options.get("model_kwargs"),
                     "optimizer": options.get("optimizer", "sgd"),
                     "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
                     "blocks": blocks_per_stage(model), "stages": stage_table(model, x),
                     "step_ms": round(median * 1000, 1), "ratio_to_resnet8": round(statistics.median(ratios), 2),
                     "run_s": round(median * args.steps_per_run)})
    load = os.getloadavg()[0]
    print(f"# {' '.join(['python', *sys.argv])}\n# {platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, timm {timm.__version__}, {args.threads} thread(s), batch {args.batch_size}, "
          f"{args.rounds} rounds, load average {load:.1f} at the end\n")
    print("| family | model | parameters | blocks per stage | stage boundaries (module: channels x h x w) | "
          "step (ms) | vs ResNet-8 | s / 40-epoch run |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        stages = "; ".join(f"{k} `{m}`: {'x'.join(map(str, s)) if s else '?'}" for k, m, s in r["stages"])
        model = r["model"] + (f" `{r['model_kwargs']}`" if r["model_kwargs"] else "")
        print(f"| {r['family']} | {model} | {r['params_m']:.2f} M | {r['blocks']} | {stages} | {r['step_ms']:.0f} | "
              f"{r['ratio_to_resnet8']:.2f}x | {r['run_s']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "load_average": load,
                                               "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
