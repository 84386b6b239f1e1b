"""Cost of the mix itself, forward + backward, on one activation: WeakeningPlan.apply vs. the earlier
gather + lerp + torch.where formulation (same values), median of repeated calls, one process.

    python benchmarks/mix_op.py [--shape 128 16 28 28] [--repeats 30]

The default shape is ResNet-8's stage:1 output at batch 128 on Fashion-MNIST (28 px), the largest
activation the default location mixes in our suite.
"""
from __future__ import annotations

import argparse
import time

import torch

from procrustean import WeakeningPolicy


def where_formulation(plan, features: torch.Tensor) -> torch.Tensor:
    """The mix as written before: gather, lerp, then torch.where to keep samples not weakened."""
    view = (-1,) + (1,) * (features.ndim - 1)
    mixed = features.lerp(features.index_select(0, plan.partner), 1.0 - plan.own_share.view(view))
    return torch.where(plan.weakened.view(view), mixed, features)


def median_ms(fn, features: torch.Tensor, grad: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        x = features.detach().requires_grad_()
        start = time.perf_counter()
        fn(x).backward(grad)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1000


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs="+", default=[128, 16, 28, 28])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    labels = torch.cat([torch.zeros(args.shape[0] - 2, dtype=torch.long), torch.ones(2, dtype=torch.long)])
    plan = WeakeningPolicy([500, 5], seed=0).plan(labels)  # step-100-like: almost every sample weakened
    features, grad = torch.randn(*args.shape), torch.randn(*args.shape)
    assert torch.equal(plan.apply(features), where_formulation(plan, features))
    print(f"shape {tuple(args.shape)}, {plan.num_weakened}/{len(plan)} weakened, {torch.get_num_threads()} threads")
    for _ in range(2):  # twice, to see the drift
        old = median_ms(lambda x: where_formulation(plan, x), features, grad, args.repeats)
        new = median_ms(plan.apply, features, grad, args.repeats)
        print(f"gather + lerp + where: {old:.2f} ms   WeakeningPlan.apply: {new:.2f} ms   ratio {old / new:.2f}x")


if __name__ == "__main__":
    main()
