"""Cost of the mix itself, forward + backward, on one activation: ``WeakeningPlan.apply`` against the
formulations it replaced (the last: the same forward with an ``index_add_`` backward) and the subset
alternative, median of repeated calls, one process.

    python benchmarks/mix_op.py [--shape 128 16 32 32] [--repeats 40]

The default shape is ResNet-8's stage:1 output at batch 128 and 32 px (``benchmarks/overhead.py``'s
input), the largest activation the default location mixes. Each share of weakened samples is timed:
99% is a step-100 batch (nearly every sample comes from a major class), 63% an exp-100 batch, and the
lower ones show where mixing only the weakened rows would start to pay.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from procrustean.policy import WeakeningPlan
from procrustean.train.memory import keep_freed_memory


def autograd_lerp(plan: WeakeningPlan, x: torch.Tensor) -> torch.Tensor:
    """The mix before: a sample not weakened is its own partner with weight 0, gather + lerp, autograd's backward."""
    partner = torch.where(plan.weakened, plan.partner, torch.arange(len(plan)))
    return x.lerp(x.index_select(0, partner), (1.0 - plan.own_share).view(-1, 1, 1, 1))


def gather_lerp_where(plan: WeakeningPlan, x: torch.Tensor) -> torch.Tensor:
    """The first formulation: mix every row, then torch.where to keep the rows not weakened."""
    mixed = x.lerp(x.index_select(0, plan.partner), (1.0 - plan.own_share).view(-1, 1, 1, 1))
    return torch.where(plan.weakened.view(-1, 1, 1, 1), mixed, x)


def subset_rows(plan: WeakeningPlan, x: torch.Tensor) -> torch.Tensor:
    """Mix only the weakened rows (gather / scatter on the subset); ``nonzero`` syncs with the host on a GPU."""
    rows = plan.weakened.nonzero().squeeze(1)
    mixed = x.index_select(0, rows).lerp(x.index_select(0, plan.partner[rows]),
                                         (1.0 - plan.own_share[rows]).view(-1, 1, 1, 1))
    return x.index_copy(0, rows, mixed)


class _IndexAddBackward(torch.autograd.Function):
    """The mix before the embedding-bag backward: gather + in-place lerp, backward as two scaled copies of the
    gradient and an ``index_add_`` into the partners' rows."""

    @staticmethod
    def forward(ctx, features, partner, own_share):
        ctx.save_for_backward(partner, own_share)
        return features.index_select(0, partner).lerp_(features, own_share)

    @staticmethod
    def backward(ctx, grad):
        partner, own_share = ctx.saved_tensors
        grad_features = grad * own_share
        grad_features.index_add_(0, partner, grad * (1.0 - own_share))
        return grad_features, None, None


def index_add_backward(plan: WeakeningPlan, x: torch.Tensor) -> torch.Tensor:
    partner = torch.where(plan.weakened, plan.partner, torch.arange(len(plan)))
    return _IndexAddBackward.apply(x, partner, plan.own_share.view(-1, 1, 1, 1))


def median_ms(fn: Callable, features: torch.Tensor, grad: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        x = features.detach().requires_grad_()
        start = time.perf_counter()
        fn(x).backward(grad)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1000


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=4, default=[128, 16, 32, 32])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.99, 0.63, 0.25, 0.1])
    args = parser.parse_args(argv)
    kept = keep_freed_memory()  # as the recipe does (procrustean/train/memory.py)
    torch.manual_seed(0)
    batch = args.shape[0]
    features, grad = torch.randn(*args.shape), torch.randn(*args.shape)
    contenders = {"gather+lerp+where": gather_lerp_where, "autograd gather+lerp": autograd_lerp,
                  "subset rows": subset_rows, "index_add backward": index_add_backward,
                  "WeakeningPlan.apply": None}
    print(f"command: python benchmarks/mix_op.py --shape {' '.join(map(str, args.shape))} --repeats {args.repeats}")
    print(f"activation {tuple(args.shape)}, forward + backward, median ms of {args.repeats} calls, "
          f"{torch.get_num_threads()} threads, freed memory kept: {kept}\n")
    print(f"{'weakened':>9}  " + "  ".join(f"{name:>20}" for name in contenders) + "  apply vs autograd  apply vs index_add")
    for share in args.shares:
        weakened = torch.rand(batch) < share
        own_share = torch.where(weakened, 0.5 + 0.5 * torch.rand(batch), torch.ones(batch))
        plan = WeakeningPlan(weakened, own_share, torch.randperm(batch))
        reference = features.detach().requires_grad_()
        autograd_lerp(plan, reference).backward(grad)
        for name, fn in contenders.items():  # same values and gradients (to rounding) before timing
            x = features.detach().requires_grad_()
            out = (fn or (lambda p, f: p.apply(f)))(plan, x)
            out.backward(grad)
            torch.testing.assert_close(out, autograd_lerp(plan, features))
            torch.testing.assert_close(x.grad, reference.grad)
        rounds = []
        for _ in range(2):  # twice, to see the drift
            rounds.append({name: median_ms(lambda x: fn(plan, x) if fn else plan.apply(x), features, grad,
                                           args.repeats) for name, fn in contenders.items()})
        best = {name: min(r[name] for r in rounds) for name in contenders}
        print(f"{100 * float(weakened.float().mean()):>8.0f}%  " + "  ".join(f"{best[n]:>20.2f}" for n in contenders)
              + f"  {best['autograd gather+lerp'] / best['WeakeningPlan.apply']:>16.2f}x"
              + f"  {best['index_add backward'] / best['WeakeningPlan.apply']:>16.2f}x")


if __name__ == "__main__":
    main()
