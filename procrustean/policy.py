"""The weakening policy: who gets weakened, how much, and with whom. This is where the weakening happens.

Procrustean training (Ye, Zhan, Chao, ICCV 2021, arXiv 2104.01769) mixes the features of major-class
samples with the features of other samples of the mini-batch while *keeping their own labels*, so
that the network cannot fit the major classes first. The paper's exact rules are not public; what
follows is our instantiation (docs/RESULTS.md measures each choice; its Defaults section), every choice a parameter:

* sample ``i`` is weakened with probability ``p[y_i]``: from its class's *global* training count,
  ``(n_c / n_max) ** gamma`` (``rule="power"``, or any callable of the counts), or from its class's
  measured training progress (``rule="progress"``, :mod:`procrustean.progress`), the power rule then
  being the prior until every class has been seen;
* a weakened sample keeps the share ``lam_i ~ Uniform(lam_range)`` of its own feature,
  ``f_i <- lam_i * f_i + (1 - lam_i) * f_j``; a sample not weakened is returned bit for bit;
* the partner ``j`` comes from a random permutation of the *local* batch (``partner="any"``), or
  uniformly from the samples of classes at least as large (``partner="larger_or_equal"``).

A batch's plan is made in two steps. :meth:`WeakeningPolicy.draw` draws its random numbers
(:class:`WeakeningDraws`: one uniform per sample, the own shares, the partners), on the CPU, where
the batch is made: ``ProcrusteanCollator`` does it from a generator seeded by the policy's seed and
the batch itself, so the same batch gets the same draws in any DataLoader worker and after any
resume. :meth:`WeakeningPolicy.resolve` then turns them into a :class:`WeakeningPlan` with the class
probabilities of the moment (``uniform_i < p[y_i]``), on the features' device, where the model
applies it. Drawing from ``WeakeningPolicy.generator`` instead (``policy.plan(labels)``) is the
fallback for loops without the collator.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple, Union

import torch
from torch.autograd.function import once_differentiable

from .data.counts import ClassCounts, as_class_counts, counts_from_labels, dataset_label_column, dataset_num_classes
from .errors import UsageError
from .progress import ClassProgress, check_progress_settings

PROBABILITY_RULES = ("power", "progress")
PARTNER_RULES = ("any", "larger_or_equal")

ProbabilityRule = Union[str, Callable[[torch.Tensor], torch.Tensor]]


def weakening_probabilities(class_counts: ClassCounts, rule: ProbabilityRule = "power",
                            gamma: float = 1.0) -> torch.Tensor:
    """Per-class weakening probability from global class counts: ``(n_c / n_max) ** gamma``, or ``rule(counts)``.

    Empty classes (count 0) get probability 0: they never appear in a batch anyway.
    """
    counts = as_class_counts(class_counts)
    present = counts > 0
    if callable(rule):
        probs = torch.as_tensor(rule(counts.clone()), dtype=torch.float64)
        if probs.shape != counts.shape:
            raise UsageError(f"A custom probability rule must return one value per class {tuple(counts.shape)}, "
                             f"got shape {tuple(probs.shape)}.")
    elif rule in ("power", "progress"):  # the progress rule starts from the power rule
        check_policy_settings(gamma=gamma)
        probs = (counts / counts.max()) ** gamma
    else:
        raise UsageError(f"Unknown weakening rule {rule!r}; use one of {PROBABILITY_RULES} or a callable.")
    if not torch.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
        raise UsageError(f"Weakening probabilities must lie in [0, 1], got {probs.tolist()}.")
    return probs.masked_fill(~present, 0.0).to(torch.float32)


def check_policy_settings(*, rule: ProbabilityRule = "power", gamma: float = 1.0,
                          lam_range: Tuple[float, float] = (0.5, 1.0), partner: str = "any",
                          progress_margin: float = 0.5, progress_momentum: float = 0.9, progress_interval: int = 10,
                          progress_samples: str = "all") -> None:
    """Refuse malformed settings (UsageError), without class counts: the recipe checks its options with it."""
    if not callable(rule) and rule not in PROBABILITY_RULES:
        raise UsageError(f"Unknown weakening rule {rule!r}; use one of {PROBABILITY_RULES} or a callable.")
    if not gamma >= 0:
        raise UsageError(f"gamma must be >= 0 (0 weakens every class alike), got {gamma}.")
    lam_min, lam_max = (float(v) for v in lam_range)
    if not 0.0 <= lam_min <= lam_max <= 1.0:
        raise UsageError(f"lam_range must satisfy 0 <= lam_min <= lam_max <= 1 (the own feature's share), "
                         f"got {tuple(lam_range)}.")
    if partner not in PARTNER_RULES:
        raise UsageError(f"Unknown partner rule {partner!r}; use one of {PARTNER_RULES}.")
    check_progress_settings(progress_margin, progress_momentum, progress_interval, progress_samples)


def check_labels(labels: Any, num_classes: int) -> torch.Tensor:
    """Hard class indices in ``[0, num_classes)`` as a 1-D int64 tensor (soft or float labels are refused)."""
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise UsageError(f"labels must be a 1-D tensor of class indices, got shape {tuple(labels.shape)} and dtype "
                         f"{labels.dtype}. Procrustean weakening keeps hard labels; mix labels elsewhere (e.g. "
                         "timm's Mixup) if you want soft ones.")
    labels_cpu = labels.detach().to("cpu", torch.int64)
    if labels_cpu.numel() and (labels_cpu.min() < 0 or labels_cpu.max() >= num_classes):
        raise UsageError(f"labels must lie in [0, {num_classes}) (the policy's classes), found "
                         f"[{int(labels_cpu.min())}, {int(labels_cpu.max())}].")
    return labels_cpu


@dataclass
class WeakeningDraws:
    """The random part of one batch's plan: drawn where the batch is made, resolved where it is applied."""

    uniform: torch.Tensor  # [B] float32 in [0, 1): sample i is weakened iff uniform[i] < p[y_i]
    own_share: torch.Tensor  # [B] float32: the share of its own feature a weakened sample keeps
    partner: torch.Tensor  # [B] int64: indices into the same local batch
    location: float  # in [0, 1): picks the location when the model's location is "random"

    def __len__(self) -> int:
        return self.uniform.numel()

    def to(self, device: Union[str, torch.device], non_blocking: bool = False) -> "WeakeningDraws":
        return WeakeningDraws(self.uniform.to(device, non_blocking=non_blocking),
                              self.own_share.to(device, non_blocking=non_blocking),
                              self.partner.to(device, non_blocking=non_blocking), self.location)

    def pin_memory(self) -> "WeakeningDraws":
        """Page-locked copies (what ``DataLoader(pin_memory=True)`` calls), for non-blocking copies to a GPU."""
        return WeakeningDraws(self.uniform.pin_memory(), self.own_share.pin_memory(), self.partner.pin_memory(),
                              self.location)


@dataclass
class WeakeningPlan:
    """One batch's decisions: ``features[i] <- own_share[i] * features[i] + (1 - own_share[i]) * features[partner[i]]``
    for the samples where ``weakened[i]``; the others are left untouched."""

    weakened: torch.Tensor  # [B] bool
    own_share: torch.Tensor  # [B] float32, exactly 1.0 where not weakened
    partner: torch.Tensor  # [B] int64, indices into the same local batch

    def __len__(self) -> int:
        return self.weakened.numel()

    def to(self, device: Union[str, torch.device], non_blocking: bool = False) -> "WeakeningPlan":
        return WeakeningPlan(self.weakened.to(device, non_blocking=non_blocking),
                             self.own_share.to(device, non_blocking=non_blocking),
                             self.partner.to(device, non_blocking=non_blocking))

    def apply(self, features: torch.Tensor) -> torch.Tensor:
        """Mix along the batch dimension (dim 0) of any feature shape; differentiable w.r.t. both partners.

        Integer features (e.g. uint8 images) are mixed in float32 and rounded back to their dtype.
        """
        if features.shape[0] != len(self):
            raise ValueError(f"The plan is for a batch of {len(self)} samples but the features have batch size "
                             f"{features.shape[0]}. Draw the plan on the same (local) batch it is applied to.")
        if not (features.dtype.is_floating_point or features.dtype.is_complex):
            info = torch.iinfo(features.dtype)
            mixed = self.apply(features.float())
            return mixed.round_().clamp_(info.min, info.max).to(features.dtype)
        plan = self if self.partner.device == features.device else self.to(features.device, non_blocking=True)
        if torch.compiler.is_compiling():  # one opaque operator: see _feature_mix_op
            return _feature_mix_op(features, plan.weakened, plan.partner, plan.own_share)
        # A sample that is not weakened is its own partner with own share exactly 1: the mix returns it bit for
        # bit (for finite values), and no other sample's values (not even an inf) can reach it.
        own = torch.arange(len(plan), device=features.device)
        partner = torch.where(plan.weakened, plan.partner, own)
        own_share = plan.own_share.to(features.dtype).view((-1,) + (1,) * (features.ndim - 1))
        return _FeatureMix.apply(features, partner, own_share)


class _FeatureMix(torch.autograd.Function):
    """``out[i] = own_share[i] * x[i] + (1 - own_share[i]) * x[partner[i]]``: one gather and one in-place lerp
    forward; the backward is the transposed mix, ``grad_x[j] = own_share[j] * grad[j] + sum over i with
    partner[i] = j of (1 - own_share[i]) * grad[i]``, done by one ``embedding_bag`` over the rows (each row
    of ``grad_x`` a weighted bag of rows of ``grad``), which reads ``grad`` about twice and writes once,
    instead of two scaled copies and an ``index_add_``. Same values to rounding, repeated partners
    included; ``python benchmarks/mix_op.py`` times it against the formulations it replaced. Mixing only
    the weakened rows (gather/scatter on the subset) was slower: in a long-tailed batch most samples come
    from the weakened major classes."""

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, partner: torch.Tensor, own_share: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(partner, own_share)
        return _mix(features, partner, own_share)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[torch.Tensor, None, None]:
        partner, own_share = ctx.saved_tensors
        return _mix_transposed(grad, partner, own_share), None, None


def _mix(features: torch.Tensor, partner: torch.Tensor, own_share: torch.Tensor) -> torch.Tensor:
    """The mix over ``[batch, features]`` rows: one row copy per sample whatever the layout (a channels-last
    ``index_select`` took the slow strided path), and the result keeps the features' layout."""
    if features.numel() == 0:
        return features.clone()
    rows, strides = _sample_rows(features)
    # for weights >= 0.5 lerp_ computes end - (end - start) * (1 - weight), i.e. x - (x - x[partner]) * 0 = x
    # where own_share is 1
    mixed = rows.index_select(0, partner).lerp_(rows, own_share.reshape(-1, 1))
    return _over(mixed, features.shape, strides)


def _mix_transposed(grad: torch.Tensor, partner: torch.Tensor, own_share: torch.Tensor) -> torch.Tensor:
    if grad.dtype not in _BAG_DTYPES or grad.numel() == 0:
        grad_features = grad * own_share
        grad_features.index_add_(0, partner, grad * (1.0 - own_share))
        return grad_features
    rows, strides = _sample_rows(grad)
    sources, offsets, weights = _transposed_bags(partner, own_share.reshape(-1))
    mixed = torch.nn.functional.embedding_bag(sources, rows, offsets, mode="sum", per_sample_weights=weights)
    return _over(mixed, grad.shape, strides)


def _over(rows: torch.Tensor, shape: torch.Size, strides: Tuple[int, ...]) -> torch.Tensor:
    """A tensor of ``shape`` and ``strides`` over the memory of the fresh tensor ``rows``, that is not a view of it
    (a custom operator may not return a view; a copy would cost a pass over the features)."""
    return rows.new_empty(0).set_(rows.untyped_storage(), rows.storage_offset(), shape, strides)


# Under torch.compile the mix is one opaque operator (forward and backward) running the eager kernels above, so
# compiled and eager training compute the same mix. Traced through instead, the embedding_bag backward read the
# gradient through views that inductor does not lay out as eager does (wrong gradients, measured), and the
# per-sample selects of the plan were fused into the stage's batch-norm kernels. The operator keeps the features'
# layout (inductor runs CPU convolutions channels-last) and lets inductor choose it (flexible_layout).
def _mix_arguments(features: torch.Tensor, weakened: torch.Tensor, partner: torch.Tensor,
                   own_share: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The partner and own share a mix of ``features`` uses: itself and exactly 1 for a sample not weakened."""
    own = torch.arange(len(weakened), device=features.device)
    share = torch.where(weakened, own_share, torch.ones_like(own_share))
    return torch.where(weakened, partner, own), share.to(features.dtype).view((-1,) + (1,) * (features.ndim - 1))


@torch.library.custom_op("procrustean::feature_mix", mutates_args=(), tags=(torch.Tag.flexible_layout,))
def _feature_mix_op(features: torch.Tensor, weakened: torch.Tensor, partner: torch.Tensor,
                    own_share: torch.Tensor) -> torch.Tensor:
    partner, own_share = _mix_arguments(features, weakened, partner, own_share)
    return _mix(features, partner, own_share)  # in the features' own layout: inductor's CPU convolutions are NHWC


@_feature_mix_op.register_fake
def _(features: torch.Tensor, weakened: torch.Tensor, partner: torch.Tensor, own_share: torch.Tensor) -> torch.Tensor:
    return torch.empty_strided(features.shape, _sample_rows_strides(features), dtype=features.dtype,
                               device=features.device)


@torch.library.custom_op("procrustean::feature_mix_transposed", mutates_args=(), tags=(torch.Tag.flexible_layout,))
def _feature_mix_transposed_op(grad: torch.Tensor, features: torch.Tensor, weakened: torch.Tensor,
                               partner: torch.Tensor, own_share: torch.Tensor) -> torch.Tensor:
    partner, own_share = _mix_arguments(grad, weakened, partner, own_share)
    return _mix_transposed(grad, partner, own_share)


@_feature_mix_transposed_op.register_fake
def _(grad: torch.Tensor, features: torch.Tensor, weakened: torch.Tensor, partner: torch.Tensor,
      own_share: torch.Tensor) -> torch.Tensor:
    return torch.empty_strided(grad.shape, _sample_rows_strides(grad), dtype=grad.dtype, device=grad.device)


def _feature_mix_setup(ctx: Any, inputs: Tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
    # The backward does not need the features, but it takes them: kept alive, they are what AOT's partitioner
    # recomputes the ReLU before the mix from. Without them it saved a bool mask, and inductor's CPU kernels store and
    # load bool masks slowly: the stage's batch-norm/add/ReLU kernel took 28.6 ms instead of 3.3 (ResNet-8, stage:1).
    ctx.save_for_backward(*inputs)


def _feature_mix_backward(ctx: Any, grad: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
    return _feature_mix_transposed_op(grad, *ctx.saved_tensors), None, None, None


_feature_mix_op.register_autograd(_feature_mix_backward, setup_context=_feature_mix_setup)


_BAG_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)  # what embedding_bag takes


def _dense_samples(tensor: torch.Tensor) -> bool:
    """Whether each sample of ``tensor`` is one dense block of memory (contiguous or channels-last)."""
    channels_last = {4: torch.channels_last, 5: torch.channels_last_3d}.get(tensor.ndim)
    return tensor.is_contiguous() or (channels_last is not None and tensor.is_contiguous(memory_format=channels_last))


def _sample_rows_strides(tensor: torch.Tensor) -> Tuple[int, ...]:
    """The strides ``_sample_rows`` maps rows back with: the tensor's own if each sample is one dense block."""
    return tensor.stride() if _dense_samples(tensor) else torch.empty(tensor.shape, device="meta").stride()


def _sample_rows(tensor: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, ...]]:
    """``tensor`` as ``[batch, features]`` rows over its own memory where each sample is one dense block
    (contiguous or channels-last), else over a contiguous copy; with the strides that map rows back."""
    if not _dense_samples(tensor):
        tensor = tensor.contiguous()
    row = tensor[0].numel()
    return tensor.as_strided((tensor.shape[0], row), (row, 1)), tensor.stride()


def _transposed_bags(partner: torch.Tensor, own_share: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The mix's transpose as embedding bags: bag ``j`` holds ``(j, own_share[j])`` and ``(i, 1 - own_share[i])``
    for every ``i`` whose partner is ``j``, in row order (a stable sort: the same sums in the same order on
    every run). No host sync: the bag sizes are counted on the device."""
    batch = partner.numel()
    rows = torch.arange(batch, device=partner.device)
    columns = torch.cat([rows, partner])
    order = torch.argsort(columns, stable=True)
    sizes = torch.zeros(batch, dtype=torch.int64, device=partner.device).index_add_(
        0, columns, torch.ones_like(columns))
    return rows.repeat(2)[order], sizes.cumsum(0) - sizes, torch.cat([own_share, 1.0 - own_share])[order]


def batch_generator(seed: int, labels: torch.Tensor, pixels: torch.Tensor, samples_per_item: int = 256) -> torch.Generator:
    """A generator seeded by ``seed`` and the batch itself (its labels and a fixed subsample of its pixels).

    The same batch gets the same draws in any DataLoader worker, in any process, after any resume;
    different batches get unrelated ones. Hashing a subsample keeps it cheap for large images.
    """
    digest = hashlib.blake2b(digest_size=8)
    digest.update(int(seed).to_bytes(8, "little", signed=True))
    digest.update(labels.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    flat = pixels.detach().reshape(len(pixels), -1)
    step = max(1, flat.shape[1] // samples_per_item)
    digest.update(flat[:, ::step].to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return torch.Generator().manual_seed(int.from_bytes(digest.digest(), "little") & (2**63 - 1))


class WeakeningPolicy:
    """Class-size-aware (or progress-aware) feature weakening: decides per sample whether and how much to weaken.

    Build it from the *global* training class counts (``WeakeningPolicy(class_counts)``), from a
    label list (``from_labels``) or an HF dataset (``from_dataset``). ``policy(features, labels)`` draws
    a plan for the batch and applies it; ``draw`` / ``resolve`` / ``WeakeningPlan.apply`` are the steps.
    """

    def __init__(
        self,
        class_counts: ClassCounts,
        rule: ProbabilityRule = "power",
        gamma: float = 1.0,
        lam_range: Tuple[float, float] = (0.5, 1.0),
        partner: str = "any",
        seed: Optional[int] = 0,
        progress_margin: float = 0.5,
        progress_momentum: float = 0.9,
        progress_interval: int = 10,
        progress_samples: str = "all",
    ):
        check_policy_settings(rule=rule, gamma=gamma, lam_range=lam_range, partner=partner,
                              progress_margin=progress_margin, progress_momentum=progress_momentum,
                              progress_interval=progress_interval, progress_samples=progress_samples)
        self.class_counts = as_class_counts(class_counts).to(torch.int64)
        self.rule, self.gamma = rule, float(gamma)
        self.lam_range = tuple(float(v) for v in lam_range)
        self.partner = partner
        self.count_probabilities = weakening_probabilities(self.class_counts, rule, gamma)
        self.progress: Optional[ClassProgress] = None
        if rule == "progress":
            self.progress = ClassProgress(self.count_probabilities, self.class_counts > 0, progress_margin,
                                          progress_momentum, progress_interval, progress_samples)
        self.seed = seed
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))
        self._probabilities_on: Dict[torch.device, torch.Tensor] = {}

    # ----------------------------------------------------------------------------------- builders
    @classmethod
    def from_labels(cls, labels: Union[Iterable[int], torch.Tensor], num_classes: Optional[int] = None,
                    **kwargs: Any) -> "WeakeningPolicy":
        """Count a whole training split's labels (pass ``num_classes`` so classes absent from it count as 0)."""
        return cls(counts_from_labels(labels, num_classes), **kwargs)

    @classmethod
    def from_dataset(cls, dataset: Any, label_column: str = "label", num_classes: Optional[int] = None,
                     **kwargs: Any) -> "WeakeningPolicy":
        """Count an HF ``datasets.Dataset``'s label column (images are not decoded)."""
        labels = dataset_label_column(dataset, label_column)
        num_classes = num_classes or dataset_num_classes(dataset, label_column)
        return cls.from_labels(labels, num_classes, **kwargs)

    @property
    def num_classes(self) -> int:
        return self.class_counts.numel()

    @property
    def probabilities(self) -> torch.Tensor:
        """Per-class weakening probabilities now: fixed for the count rule, following the progress otherwise."""
        return self.count_probabilities if self.progress is None else self.progress.probabilities

    def _probabilities_for(self, device: torch.device) -> torch.Tensor:
        probabilities = self.probabilities
        if probabilities.device == device:
            return probabilities
        if self.progress is not None:  # they change: move them each time (the progress lives on the model's device)
            return probabilities.to(device, non_blocking=True)
        if device not in self._probabilities_on:
            self._probabilities_on[device] = probabilities.to(device)
        return self._probabilities_on[device]

    # ----------------------------------------------------------------------------------- plans
    def draw(self, labels: Any, generator: Optional[torch.Generator] = None) -> WeakeningDraws:
        """The random numbers of one local batch's plan, on the CPU, from ``generator`` (default: the policy's)."""
        generator = self.generator if generator is None else generator
        labels_cpu = check_labels(labels, self.num_classes)
        batch_size = labels_cpu.numel()
        uniform = torch.rand(batch_size, generator=generator)
        lam_min, lam_max = self.lam_range
        own_share = lam_min + (lam_max - lam_min) * torch.rand(batch_size, generator=generator)
        partner = self._draw_partner(labels_cpu, generator)
        location = float(torch.rand((), generator=generator))
        return WeakeningDraws(uniform, own_share.float(), partner, location)

    def _draw_partner(self, labels_cpu: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        batch_size = labels_cpu.numel()
        if self.partner == "any":
            return torch.randperm(batch_size, generator=generator)
        # Uniform among samples whose class is at least as large: sort by class size, pick in the suffix.
        sizes = self.class_counts[labels_cpu]
        order = torch.argsort(sizes, stable=True)
        first_eligible = torch.searchsorted(sizes[order], sizes, right=False)
        u = torch.rand(batch_size, generator=generator, dtype=torch.float64)
        pick = first_eligible + (u * (batch_size - first_eligible)).long().clamp_max(batch_size - 1 - first_eligible)
        return order[pick]

    def resolve(self, draws: WeakeningDraws, labels: torch.Tensor) -> WeakeningPlan:
        """The plan for ``draws`` with the probabilities of now, on ``labels.device``."""
        if len(draws) != len(labels):
            raise ValueError(f"Draws for {len(draws)} samples given with {len(labels)} labels: draw them for this batch.")
        device = labels.device
        # the tensors alone: reading ``draws.location`` here would make torch.compile guard on its value
        uniform, own_share, partner = (t.to(device, non_blocking=True)
                                       for t in (draws.uniform, draws.own_share, draws.partner))
        weakened = uniform < self._probabilities_for(device)[labels.long()]
        own_share = torch.where(weakened, own_share, torch.ones_like(own_share))
        return WeakeningPlan(weakened, own_share, partner)

    def plan(self, labels: Any, generator: Optional[torch.Generator] = None) -> WeakeningPlan:
        """Draw and resolve a plan for a local batch with these (hard) labels; it lives on ``labels.device``."""
        labels = torch.as_tensor(labels)
        return self.resolve(self.draw(labels, generator), labels)

    def __call__(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Weaken a batch of features (any shape [B, ...]) given its labels; labels are not changed."""
        return self.plan(labels).apply(features)

    def observe(self, logits: torch.Tensor, labels: torch.Tensor, plan: Optional[WeakeningPlan] = None) -> None:
        """Feed one training batch's predictions to the ``progress`` rule (a no-op for the count rule)."""
        if self.progress is not None:
            self.progress.update(logits, labels, plan.weakened if plan is not None else None)

    # ----------------------------------------------------------------------------------- state
    def state_dict(self) -> Dict[str, Any]:
        """The fallback generator's state (``plan`` / ``draw`` without a generator) and the progress statistics."""
        state: Dict[str, Any] = {"generator_state": self.generator.get_state()}
        if self.progress is not None:
            state["progress"] = self.progress.state_dict()
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.generator.set_state(state["generator_state"])
        if self.progress is not None:
            if "progress" not in state:
                raise UsageError("This state has no progress statistics: it was not written with the progress "
                                 "rule. Resume with the rule it was trained with.")
            self.progress.load_state_dict(state["progress"])

    def config(self) -> Dict[str, Any]:
        """The settings that define the policy, for configs and model cards."""
        config = {
            "class_counts": self.class_counts.tolist(),
            "rule": self.rule if isinstance(self.rule, str) else getattr(self.rule, "__name__", "custom"),
            "gamma": self.gamma, "lam_range": list(self.lam_range), "partner": self.partner, "seed": self.seed,
            "probabilities": [round(p, 6) for p in self.probabilities.tolist()],
        }
        if self.progress is not None:
            config.update(progress_margin=self.progress.margin, progress_momentum=self.progress.momentum,
                          progress_interval=self.progress.interval, progress_samples=self.progress.samples)
        return config

    def summary(self, class_names: Optional[Sequence[str]] = None) -> str:
        """A printable table: class, training count, weakening probability."""
        title = "p(weaken)" if self.progress is None else "prior p"
        rows = [f"{'class':>5}  {'name':<16} {'count':>8}  {title:>9}"
                + ("  (the progress rule then follows each class's training accuracy)" if self.progress else "")]
        for c, (n, p) in enumerate(zip(self.class_counts.tolist(), self.probabilities.tolist())):
            name = class_names[c] if class_names is not None else ""
            rows.append(f"{c:>5}  {str(name)[:16]:<16} {n:>8}  {p:>9.4f}")
        return "\n".join(rows)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_classes={self.num_classes}, rule={self.rule!r}, gamma={self.gamma}, "
                f"own_share=uniform{self.lam_range}, partner={self.partner!r})")
