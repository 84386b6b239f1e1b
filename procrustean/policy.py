"""The weakening policy: who gets weakened, how much, and with whom. This is where the weakening happens.

Procrustean training (Ye, Zhan, Chao, ICCV 2021, arXiv 2104.01769) mixes the features of major-class
samples with the features of other samples of the mini-batch while *keeping their own labels*, so
that the network cannot fit the major classes first. The paper's exact rules are not public; what
follows is our instantiation (see docs and ``shared/notes/method.md``), with every choice a parameter:

* sample ``i`` is weakened with probability ``p[y_i]``, a function of its class's *global* training
  count (``rule``): ``power`` ``(n_c / n_max) ** gamma``, ``linear`` ramp from 0 at ``n_min`` to 1 at
  ``n_max``, or ``threshold`` (1 above the median count, else 0); or of its class's measured training
  progress (``rule="progress"``): ``min(1, (acc_c - min_k acc_k) / progress_margin)`` from the running
  per-class training accuracy (``procrustean.progress``), with the power rule as the prior until every
  class has been seen; all scaled by ``max_probability``;
* a weakened sample keeps the share ``lam_i`` of its own feature,
  ``f_i <- lam_i * f_i + (1 - lam_i) * f_j``, with ``lam_i ~ Uniform(lam_range)`` or ``Beta(a, a)``
  (optionally folded to ``>= 0.5``); a sample not weakened is returned bit for bit;
* the partner ``j`` comes from a random permutation of the *local* batch (``partner="any"``), or
  uniformly from the samples of classes at least as large (``partner="larger_or_equal"``).

Plans are drawn on the CPU from the policy's own ``torch.Generator`` and then moved to the features'
device, so the same seed gives the same plan on every device, and the generator state can be
checkpointed (``state_dict``) for exact resume.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple, Union

import torch

from ._counts import ClassCounts, as_class_counts, counts_from_labels, dataset_label_column, dataset_num_classes
from .progress import ClassProgress, progress_probabilities

COUNT_RULES = ("power", "linear", "threshold")
PROBABILITY_RULES = COUNT_RULES + ("progress",)
LAM_DISTRIBUTIONS = ("uniform", "beta")
PARTNER_RULES = ("any", "larger_or_equal")

ProbabilityRule = Union[str, Callable[[torch.Tensor], torch.Tensor]]


def weakening_probabilities(class_counts: ClassCounts, rule: ProbabilityRule = "power", gamma: float = 1.0,
                            max_probability: float = 1.0) -> torch.Tensor:
    """Per-class weakening probability from global class counts: bigger class, stronger weakening.

    ``rule`` is one of ``PROBABILITY_RULES`` or a callable mapping the counts tensor to probabilities.
    Empty classes (count 0) get probability 0: they never appear in a batch anyway.
    """
    counts = as_class_counts(class_counts)
    if not 0.0 <= max_probability <= 1.0:
        raise ValueError(f"max_probability must lie in [0, 1], got {max_probability}.")
    present = counts > 0
    n_max, n_min = counts.max(), counts[present].min()
    if callable(rule):
        probs = torch.as_tensor(rule(counts.clone()), dtype=torch.float64)
        if probs.shape != counts.shape:
            raise ValueError(f"A custom probability rule must return one value per class {tuple(counts.shape)}, "
                             f"got shape {tuple(probs.shape)}.")
    elif rule == "power":
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0 for the power rule (0 weakens every class), got {gamma}.")
        probs = (counts / n_max) ** gamma
    elif rule == "linear":
        probs = (counts - n_min) / (n_max - n_min) if n_max > n_min else torch.ones_like(counts)
    elif rule == "threshold":
        probs = (counts > counts[present].median()).to(torch.float64)
    else:
        raise ValueError(f"Unknown count rule {rule!r}; use one of {COUNT_RULES} or a callable "
                         "('progress' is a WeakeningPolicy rule: it needs the training statistics).")
    if not torch.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
        raise ValueError(f"Weakening probabilities must lie in [0, 1], got {probs.tolist()}.")
    return (probs * max_probability).masked_fill(~present, 0.0).to(torch.float32)


@dataclass
class WeakeningPlan:
    """One batch's decisions: ``features[i] <- own_share[i] * features[i] + (1 - own_share[i]) * features[partner[i]]``
    for the samples where ``weakened[i]``; the others are left untouched."""

    weakened: torch.Tensor  # [B] bool
    own_share: torch.Tensor  # [B] float32, exactly 1.0 where not weakened
    partner: torch.Tensor  # [B] int64, indices into the same local batch

    def __len__(self) -> int:
        return self.weakened.numel()

    @property
    def num_weakened(self) -> int:
        return int(self.weakened.sum())

    def to(self, device: Union[str, torch.device], non_blocking: bool = False) -> "WeakeningPlan":
        return WeakeningPlan(self.weakened.to(device, non_blocking=non_blocking),
                             self.own_share.to(device, non_blocking=non_blocking),
                             self.partner.to(device, non_blocking=non_blocking))

    def apply(self, features: torch.Tensor) -> torch.Tensor:
        """Mix along the batch dimension (dim 0) of any feature shape; differentiable w.r.t. both partners."""
        if features.shape[0] != len(self):
            raise ValueError(f"The plan is for a batch of {len(self)} samples but the features have batch size "
                             f"{features.shape[0]}. Draw the plan on the same (local) batch it is applied to.")
        plan = self if self.partner.device == features.device else self.to(features.device, non_blocking=True)
        view = (-1,) + (1,) * (features.ndim - 1)
        # A sample that is not weakened is its own partner with weight exactly 0: lerp returns x + 0 * (x - x),
        # i.e. x bit for bit (for finite x), and no other sample's values (not even an inf) can reach it.
        # One gather and one lerp, no torch.where: at an early stage's large activations this halves the cost.
        own = torch.arange(len(plan), device=features.device)
        partner = torch.where(plan.weakened, plan.partner, own)
        weight = (1.0 - plan.own_share).to(features.dtype).view(view)  # own_share is exactly 1 where not weakened
        return features.lerp(features.index_select(0, partner), weight)


class WeakeningPolicy:
    """Class-count-aware feature weakening: decides per sample whether and how much to weaken.

    Build it from the *global* training class counts (``WeakeningPolicy(class_counts)``), from a
    label list (``from_labels``) or an HF dataset (``from_dataset``). ``policy(features, labels)`` draws
    a plan for the batch and applies it; ``plan(labels)`` and ``WeakeningPlan.apply`` do the two steps
    separately (e.g. to apply one plan at a location inside a network).
    """

    def __init__(
        self,
        class_counts: ClassCounts,
        rule: ProbabilityRule = "power",
        gamma: float = 1.0,
        max_probability: float = 1.0,
        lam_distribution: str = "uniform",
        lam_range: Tuple[float, float] = (0.5, 1.0),
        beta_alpha: float = 1.0,
        fold_lam: bool = True,
        partner: str = "any",
        seed: Optional[int] = 0,
        progress_margin: float = 0.5,
        progress_momentum: float = 0.9,
        progress_interval: int = 10,
        progress_samples: str = "all",
    ):
        self.class_counts = as_class_counts(class_counts).to(torch.int64)
        self.rule, self.gamma, self.max_probability = rule, float(gamma), float(max_probability)
        if isinstance(rule, str) and rule not in PROBABILITY_RULES:
            raise ValueError(f"Unknown weakening rule {rule!r}; use one of {PROBABILITY_RULES} or a callable.")
        self.progress: Optional[ClassProgress] = None
        if rule == "progress":  # the counts' power rule is the prior until every class has been seen
            self.progress = ClassProgress(self.num_classes, progress_momentum, progress_interval, progress_samples)
            self.progress_margin = float(progress_margin)
            progress_probabilities(torch.zeros(self.num_classes, dtype=torch.float64), self.class_counts > 0,
                                   self.progress_margin)  # validates the margin
        self.prior_probabilities = weakening_probabilities(self.class_counts, "power" if rule == "progress" else rule,
                                                           gamma, max_probability)
        self.probabilities = self.prior_probabilities.clone()
        if lam_distribution not in LAM_DISTRIBUTIONS:
            raise ValueError(f"Unknown lam_distribution {lam_distribution!r}; use one of {LAM_DISTRIBUTIONS}.")
        lam_min, lam_max = (float(v) for v in lam_range)
        if lam_distribution == "uniform" and not 0.0 <= lam_min <= lam_max <= 1.0:
            raise ValueError(f"lam_range must satisfy 0 <= lam_min <= lam_max <= 1 (the own feature's share), "
                             f"got {tuple(lam_range)}.")
        if lam_distribution == "beta" and not beta_alpha > 0:
            raise ValueError(f"beta_alpha must be > 0, got {beta_alpha}.")
        if partner not in PARTNER_RULES:
            raise ValueError(f"Unknown partner rule {partner!r}; use one of {PARTNER_RULES}.")
        self.lam_distribution, self.lam_range = lam_distribution, (lam_min, lam_max)
        self.beta_alpha, self.fold_lam, self.partner = float(beta_alpha), bool(fold_lam), partner
        self.seed = seed
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

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

    # ----------------------------------------------------------------------------------- drawing
    def _draw_own_share(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        if self.lam_distribution == "uniform":
            lam_min, lam_max = self.lam_range
            u = torch.rand(batch_size, generator=generator)
            return lam_min + (lam_max - lam_min) * u
        # Beta(a, a) as the ratio of two Gamma draws, using our generator (torch's Beta takes none).
        a = torch.full((batch_size, 2), self.beta_alpha)
        g = torch._standard_gamma(a, generator=generator)
        lam = g[:, 0] / g.sum(dim=1).clamp_min(torch.finfo(g.dtype).tiny)
        return torch.maximum(lam, 1.0 - lam) if self.fold_lam else lam

    def _draw_partner(self, labels_cpu: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        batch_size = labels_cpu.numel()
        if self.partner == "any":
            return torch.randperm(batch_size, generator=generator)
        # Uniform among samples whose class is at least as large: sort by class size, pick in the suffix.
        sizes = self.class_counts[labels_cpu]
        order = torch.argsort(sizes, stable=True)
        sorted_sizes = sizes[order]
        first_eligible = torch.searchsorted(sorted_sizes, sizes, right=False)
        u = torch.rand(batch_size, generator=generator, dtype=torch.float64)
        pick = first_eligible + (u * (batch_size - first_eligible)).long().clamp_max(batch_size - 1 - first_eligible)
        return order[pick]

    def plan(self, labels: torch.Tensor, generator: Optional[torch.Generator] = None) -> WeakeningPlan:
        """Draw a plan for a local batch with these (hard) labels; the plan lives on ``labels.device``.

        Draws come from ``generator`` (a CPU ``torch.Generator``) or, by default, the policy's own.
        """
        generator = self.generator if generator is None else generator
        labels = torch.as_tensor(labels)
        if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"labels must be a 1-D tensor of class indices, got shape {tuple(labels.shape)} "
                             f"and dtype {labels.dtype}. Procrustean weakening keeps hard labels; "
                             "mix labels elsewhere (e.g. timm's Mixup) if you want soft ones.")
        batch_size = labels.numel()
        labels_cpu = labels.detach().to("cpu", torch.int64)
        if batch_size and (labels_cpu.min() < 0 or labels_cpu.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}) (the policy's classes), found "
                             f"[{int(labels_cpu.min())}, {int(labels_cpu.max())}].")
        u = torch.rand(batch_size, generator=generator)
        own_share = self._draw_own_share(batch_size, generator)
        partner = self._draw_partner(labels_cpu, generator)
        weakened = u < self.probabilities[labels_cpu]
        own_share = torch.where(weakened, own_share, torch.ones_like(own_share)).float()
        plan = WeakeningPlan(weakened, own_share, partner)
        return plan if labels.device.type == "cpu" else plan.to(labels.device, non_blocking=True)

    def __call__(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Weaken a batch of features (any shape [B, ...]) given its labels; labels are not changed."""
        return self.plan(labels).apply(features)

    # ----------------------------------------------------------------------------------- progress
    def observe(self, logits: torch.Tensor, labels: torch.Tensor, plan: Optional[WeakeningPlan] = None) -> None:
        """Feed one training batch's predictions to the ``progress`` rule (a no-op for the count rules).

        ``ProcrusteanModel`` calls it after each weakened forward. On the batches that refresh the
        statistics (every ``progress_interval``), the probabilities follow the new accuracies.
        """
        if self.progress is None:
            return
        if self.progress.update(logits, labels, plan.weakened if plan is not None else None):
            self._refresh_probabilities()

    def _refresh_probabilities(self) -> None:
        present = self.class_counts > 0
        if (self.progress.seen[present] > 0).all():
            self.probabilities = progress_probabilities(self.progress.accuracy(), present,
                                                        self.progress_margin) * self.max_probability
        else:
            self.probabilities = self.prior_probabilities.clone()

    # ----------------------------------------------------------------------------------- state
    def state_dict(self) -> Dict[str, Any]:
        """Generator state (and the progress statistics), so that a resumed run draws the same plans."""
        state: Dict[str, Any] = {"generator_state": self.generator.get_state()}
        if self.progress is not None:
            state["progress"] = self.progress.state_dict()
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.generator.set_state(state["generator_state"])
        if self.progress is not None:
            if "progress" not in state:
                raise ValueError("This checkpoint has no progress statistics: it was not written with "
                                 "--weakening_rule progress. Resume with the rule it was trained with.")
            self.progress.load_state_dict(state["progress"])
            self._refresh_probabilities()

    def config(self) -> Dict[str, Any]:
        """The settings that define the policy, for configs and model cards."""
        return {
            "class_counts": self.class_counts.tolist(),
            "rule": self.rule if isinstance(self.rule, str) else getattr(self.rule, "__name__", "custom"),
            "gamma": self.gamma, "max_probability": self.max_probability,
            "lam_distribution": self.lam_distribution, "lam_range": list(self.lam_range),
            "beta_alpha": self.beta_alpha, "fold_lam": self.fold_lam, "partner": self.partner, "seed": self.seed,
            "probabilities": [round(p, 6) for p in self.probabilities.tolist()],
            **({"progress_margin": self.progress_margin, "progress_momentum": self.progress.momentum,
                "progress_interval": self.progress.interval, "progress_samples": self.progress.samples}
               if self.progress is not None else {}),
        }

    def summary(self, class_names: Optional[Sequence[str]] = None) -> str:
        """A printable table: class, training count, weakening probability."""
        rows = [f"{'class':>5}  {'name':<16} {'count':>8}  {'p(weaken)':>9}"
                + ("  (prior of the progress rule)" if self.progress is not None else "")]
        for c, (n, p) in enumerate(zip(self.class_counts.tolist(), self.probabilities.tolist())):
            name = class_names[c] if class_names is not None else ""
            rows.append(f"{c:>5}  {str(name)[:16]:<16} {n:>8}  {p:>9.4f}")
        return "\n".join(rows)

    def __repr__(self) -> str:
        lam = (f"uniform{self.lam_range}" if self.lam_distribution == "uniform"
               else f"beta({self.beta_alpha}{', folded' if self.fold_lam else ''})")
        return (f"{type(self).__name__}(num_classes={self.num_classes}, rule={self.rule!r}, gamma={self.gamma}, "
                f"own_share={lam}, partner={self.partner!r})")
