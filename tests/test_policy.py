import math

import pytest
import torch

from procrustean import WeakeningPolicy
from procrustean.policy import weakening_probabilities

STEP_COUNTS = [6000] * 5 + [60] * 5
EXP_COUNTS = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_power_rule_probabilities():
    probs = WeakeningPolicy(EXP_COUNTS, gamma=0.5).probabilities
    expected = torch.tensor([(n / 5000) ** 0.5 for n in EXP_COUNTS], dtype=torch.float32)
    assert probs.dtype == torch.float32 and probs.shape == (10,)
    torch.testing.assert_close(probs, expected)
    assert torch.all(WeakeningPolicy(EXP_COUNTS, gamma=0.0).probabilities == 1.0)


def test_custom_rule_callable():
    probs = WeakeningPolicy(EXP_COUNTS, rule=lambda n: (n > n.median()).double()).probabilities
    assert probs.tolist() == [1.0] * 5 + [0.0] * 5


def test_custom_rule_and_empty_class():
    probs = weakening_probabilities([10, 0, 5], rule=lambda n: n / n.sum())
    torch.testing.assert_close(probs, torch.tensor([10 / 15, 0.0, 5 / 15]))
    assert WeakeningPolicy([10, 0, 5]).probabilities[1] == 0.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(class_counts=[]), "non-empty"),
    (dict(class_counts=[3, -1]), "non-negative"),
    (dict(class_counts=[0, 0]), "all zero"),
    (dict(class_counts=[2.5, 3]), "whole numbers"),
    (dict(class_counts=[5, 1], gamma=-1), "gamma"),
    (dict(class_counts=[5, 1], rule="sqrt"), "Unknown weakening rule"),
    (dict(class_counts=[5, 1], lam_range=(0.8, 0.2)), "lam_range"),
    (dict(class_counts=[5, 1], lam_range=(-0.1, 1.0)), "lam_range"),
    (dict(class_counts=[5, 1], partner="minor"), "partner"),
    (dict(class_counts=[5, 1], rule=lambda n: n), r"\[0, 1\]"),
])
def test_bad_settings_fail_early(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WeakeningPolicy(**kwargs)


@pytest.mark.parametrize("counts, rule, gamma", [(EXP_COUNTS, "power", 1.0), (STEP_COUNTS, "power", 0.3),
                                                 ([40, 30, 20, 10], lambda n: (n - 10) / 30, 1.0)])
def test_empirical_frequency_matches_probabilities(counts, rule, gamma):
    policy = WeakeningPolicy(counts, rule=rule, gamma=gamma, seed=1)
    num_classes, per_class, draws = len(counts), 100, 100
    labels = torch.arange(num_classes).repeat(per_class)
    hits = torch.zeros(num_classes)
    for _ in range(draws):
        hits += torch.bincount(labels[policy.plan(labels).weakened], minlength=num_classes)
    trials = per_class * draws
    p = policy.probabilities.double()
    tolerance = 5 * torch.sqrt(p * (1 - p) / trials) + 1e-9
    assert torch.all((hits / trials - p).abs() <= tolerance), (hits / trials, p)


def test_smallest_class_untouched_when_probability_zero():
    policy = WeakeningPolicy(EXP_COUNTS, rule=lambda n: (n - n.min()) / (n.max() - n.min()), seed=3)
    assert policy.probabilities[-1] == 0.0
    features = torch.randn(512, 7)
    labels = torch.randint(0, 10, (512,))
    labels[:50] = 9
    for _ in range(20):
        plan = policy.plan(labels)
        out = plan.apply(features)
        minor = labels == 9
        assert not plan.weakened[minor].any()
        assert torch.equal(out[minor], features[minor])
        assert torch.all(plan.own_share[minor] == 1.0)


def test_not_weakened_samples_are_bit_identical_even_with_inf_partners():
    policy = WeakeningPolicy(STEP_COUNTS, seed=0)
    labels = torch.tensor([0, 9, 1, 8, 2, 7] * 10)
    features = torch.randn(60, 3, 4, 4)
    features[0, 0, 0, 0] = float("inf")
    plan = policy.plan(labels)
    out = plan.apply(features)
    keep = ~plan.weakened
    assert keep.any() and plan.weakened.any()
    assert torch.equal(out[keep], features[keep])


def test_mixing_formula_partners_and_labels():
    policy = WeakeningPolicy(STEP_COUNTS, gamma=0.0, lam_range=(0.6, 0.9), seed=5)
    labels = torch.randint(0, 10, (32,))
    labels_before = labels.clone()
    features = torch.randn(32, 5)
    plan = policy.plan(labels)
    out = plan.apply(features)
    assert torch.equal(labels, labels_before)
    assert plan.weakened.all()  # gamma=0 weakens everyone
    assert plan.partner.min() >= 0 and plan.partner.max() < 32
    assert sorted(plan.partner.tolist()) == list(range(32))  # a permutation of the local batch
    assert torch.all((plan.own_share >= 0.6) & (plan.own_share <= 0.9))
    lam = plan.own_share[:, None]
    torch.testing.assert_close(out, lam * features + (1 - lam) * features[plan.partner])


def test_gradients_reach_both_partners():
    policy = WeakeningPolicy([10, 10], gamma=0.0, seed=0)
    labels = torch.tensor([0, 1, 0, 1])
    features = torch.randn(4, 3, requires_grad=True)
    plan = policy.plan(labels)
    plan.apply(features).sum().backward()
    lam, partner = plan.own_share, plan.partner
    expected = lam.clone()
    expected.index_add_(0, partner, 1 - lam)  # each sample also receives its partners' shares
    torch.testing.assert_close(features.grad[:, 0], expected)
    weakened_partner = partner[plan.weakened & (partner != torch.arange(4))]
    assert weakened_partner.numel() > 0
    assert torch.all(features.grad[weakened_partner] != 0)


def test_larger_or_equal_partner_rule():
    counts = [1000, 500, 100, 10]
    policy = WeakeningPolicy(counts, gamma=0.0, partner="larger_or_equal", seed=2)
    labels = torch.randint(0, 4, (256,))
    sizes = torch.tensor(counts)[labels]
    seen_partner_classes = set()
    for _ in range(20):
        plan = policy.plan(labels)
        assert torch.all(sizes[plan.partner] >= sizes)
        seen_partner_classes |= set(labels[plan.partner][labels == 3].tolist())
    assert seen_partner_classes == {0, 1, 2, 3}  # the smallest class may draw any partner


def test_reproducible_from_seed_and_state_dict():
    labels = torch.randint(0, 10, (64,))
    a, b = WeakeningPolicy(EXP_COUNTS, seed=7), WeakeningPolicy(EXP_COUNTS, seed=7)
    for _ in range(3):
        pa, pb = a.plan(labels), b.plan(labels)
        assert torch.equal(pa.weakened, pb.weakened) and torch.equal(pa.partner, pb.partner)
        assert torch.equal(pa.own_share, pb.own_share)
    state = a.state_dict()
    expected = a.plan(labels)
    c = WeakeningPolicy(EXP_COUNTS, seed=123)
    c.load_state_dict(state)
    got = c.plan(labels)
    assert torch.equal(expected.partner, got.partner) and torch.equal(expected.own_share, got.own_share)
    external = torch.Generator().manual_seed(7)
    fresh = WeakeningPolicy(EXP_COUNTS, seed=7).plan(labels)
    assert torch.equal(WeakeningPolicy(EXP_COUNTS, seed=0).plan(labels, generator=external).partner, fresh.partner)


def test_builders_from_labels_and_dataset():
    from datasets import ClassLabel, Dataset, Features, Value

    labels = [0] * 5 + [1] * 3 + [3] * 1
    assert WeakeningPolicy.from_labels(labels).class_counts.tolist() == [5, 3, 0, 1]
    assert WeakeningPolicy.from_labels(torch.tensor(labels), num_classes=5).class_counts.tolist() == [5, 3, 0, 1, 0]
    ds = Dataset.from_dict({"x": list(range(9)), "fine": labels},
                           features=Features({"x": Value("int32"), "fine": ClassLabel(num_classes=6)}))
    assert WeakeningPolicy.from_dataset(ds, label_column="fine").class_counts.tolist() == [5, 3, 0, 1, 0, 0]
    with pytest.raises(KeyError, match="available columns"):
        WeakeningPolicy.from_dataset(ds, label_column="label")
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        WeakeningPolicy.from_labels(labels, num_classes=2)


def test_plan_validates_labels():
    policy = WeakeningPolicy([3, 3])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        policy.plan(torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="hard labels"):
        policy.plan(torch.tensor([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="batch size"):
        policy.plan(torch.tensor([0, 1])).apply(torch.randn(3, 2))


def test_works_under_low_precision_and_any_shape():
    policy = WeakeningPolicy([4, 4], gamma=0.0, seed=0)
    labels = torch.tensor([0, 1, 1, 0])
    for shape in [(4,), (4, 6), (4, 3, 5, 5), (4, 9, 8)]:
        x = torch.randn(shape, dtype=torch.bfloat16)
        out = policy(x, labels)
        assert out.shape == x.shape and out.dtype == torch.bfloat16


def test_summary_and_config():
    policy = WeakeningPolicy(STEP_COUNTS, gamma=2.0)
    text = policy.summary(class_names=[f"c{i}" for i in range(10)])
    assert "c9" in text and "0.0001" in text
    cfg = policy.config()
    assert cfg["gamma"] == 2.0 and cfg["class_counts"] == STEP_COUNTS and len(cfg["probabilities"]) == 10
    assert math.isclose(cfg["probabilities"][-1], 1e-4, rel_tol=1e-3)


def test_a_plan_is_its_draws_resolved_with_the_probabilities_of_the_moment():
    from procrustean.policy import WeakeningDraws

    policy = WeakeningPolicy(EXP_COUNTS, seed=11)
    labels = torch.arange(10).repeat(20)
    draws = policy.draw(labels, generator=torch.Generator().manual_seed(3))
    assert isinstance(draws, WeakeningDraws) and len(draws) == 200 and 0 <= draws.location < 1
    plan = policy.resolve(draws, labels)
    assert torch.equal(plan.weakened, draws.uniform < policy.probabilities[labels])
    assert torch.equal(plan.own_share, torch.where(plan.weakened, draws.own_share, torch.ones(200)))
    assert torch.equal(plan.partner, draws.partner)
    same = policy.plan(labels, generator=torch.Generator().manual_seed(3))  # plan = resolve(draw)
    assert torch.equal(same.weakened, plan.weakened) and torch.equal(same.own_share, plan.own_share)
    with pytest.raises(ValueError, match="Draws for 200 samples"):
        policy.resolve(draws, labels[:10])


def test_batch_generator_depends_on_the_seed_and_the_batch_only():
    from procrustean.policy import batch_generator

    labels, pixels = torch.tensor([0, 1, 2]), torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(0))

    def first(seed, y, x):
        return torch.rand(4, generator=batch_generator(seed, y, x))

    assert torch.equal(first(0, labels, pixels), first(0, labels.clone(), pixels.clone()))
    other_pixels = pixels.clone()
    other_pixels[2, 0, 0, 0] += 1.0  # a sampled position (the first) of the last image
    for variant in (first(1, labels, pixels), first(0, torch.tensor([0, 1, 1]), pixels), first(0, labels, other_pixels)):
        assert not torch.equal(first(0, labels, pixels), variant)


def test_integer_features_are_mixed_in_float_and_rounded_back():
    policy = WeakeningPolicy([10, 10], gamma=0.0, lam_range=(0.3, 0.7), seed=1)
    images = torch.randint(0, 256, (16, 1, 4, 4), dtype=torch.uint8)
    labels = torch.randint(0, 2, (16,))
    plan = policy.plan(labels)
    mixed = plan.apply(images)
    assert mixed.dtype == torch.uint8
    assert torch.equal(mixed, plan.apply(images.float()).round().to(torch.uint8))
    assert not torch.equal(mixed, images)


@pytest.mark.parametrize("partner", ["any", "larger_or_equal"])
def test_the_mix_gradient_is_the_mixing_formula_gradient(partner):
    """The hand-written backward equals autograd's on the formula, for repeated partners and rows left alone."""
    from procrustean.policy import _FeatureMix

    policy = WeakeningPolicy(STEP_COUNTS, partner=partner, lam_range=(0.3, 1.0), seed=3)
    labels = torch.tensor([0, 9, 1, 8, 2, 7, 3, 3] * 4)
    plan = policy.plan(labels)
    assert plan.weakened.any() and not plan.weakened.all()
    features = torch.randn(32, 3, 5, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(32, 3, 5, dtype=torch.float64)
    plan.apply(features).backward(upstream)
    reference = features.detach().clone().requires_grad_()
    partner_or_self = torch.where(plan.weakened, plan.partner, torch.arange(32))
    share = plan.own_share.double().view(-1, 1, 1)
    (share * reference + (1 - share) * reference[partner_or_self]).backward(upstream)
    torch.testing.assert_close(features.grad, reference.grad)
    keep = ~plan.weakened  # a row left alone, and no row chose it as partner: its gradient passes unchanged
    chosen = torch.zeros(32, dtype=torch.bool)
    chosen[plan.partner[plan.weakened]] = True
    if (keep & ~chosen).any():
        assert torch.equal(features.grad[keep & ~chosen], upstream[keep & ~chosen])
    share = share.requires_grad_(False)
    assert torch.autograd.gradcheck(lambda x: _FeatureMix.apply(x, partner_or_self, share),
                                    (torch.randn(32, 3, 5, dtype=torch.float64, requires_grad=True),))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "expanded", "float16", "bfloat16", "complex"])
def test_the_mix_backward_takes_any_gradient_layout_and_dtype(layout):
    """The embedding-bag backward reads the gradient's rows in place (contiguous or channels-last), copies other
    layouts (e.g. the stride-0 gradient of a sum) and falls back to index_add_ where embedding_bag has no kernel."""
    from procrustean.policy import _FeatureMix

    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "complex": torch.complex64}.get(layout, torch.float64)
    plan = WeakeningPolicy(STEP_COUNTS, lam_range=(0.3, 1.0), seed=5).plan(torch.tensor([0, 9, 1, 8, 2, 7] * 2))
    partner = torch.where(plan.weakened, plan.partner, torch.arange(12))
    share = plan.own_share.view(-1, 1, 1, 1)
    upstream = torch.randn(12, 3, 4, 5, dtype=torch.float64)
    if layout == "channels_last":
        upstream = upstream.contiguous(memory_format=torch.channels_last)
    elif layout == "expanded":
        upstream = torch.randn(1, 3, 4, 5, dtype=torch.float64).expand(12, 3, 4, 5)
    expected = upstream * share
    expected.index_add_(0, partner, upstream * (1 - share))
    features = torch.randn(12, 3, 4, 5, dtype=dtype, requires_grad=True)
    _FeatureMix.apply(features, partner, share.to(dtype)).backward(upstream.to(dtype))
    assert features.grad.dtype == dtype and features.grad.shape == features.shape
    tolerance = {torch.float16: 2e-3, torch.bfloat16: 2e-2}.get(dtype)
    torch.testing.assert_close(features.grad, expected.to(dtype), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
def test_the_mix_keeps_the_features_layout(layout):
    """The mix returns the features' own layout (channels-last stays channels-last, so the layers after a weakened
    location keep running NHWC), with the formula's values; other layouts come back contiguous."""
    plan = WeakeningPolicy(STEP_COUNTS, lam_range=(0.3, 1.0), seed=5).plan(torch.tensor([0, 9, 1, 8, 2, 7] * 2))
    features = torch.randn(12, 3, 4, 5, dtype=torch.float64)
    if layout == "channels_last":
        features = features.contiguous(memory_format=torch.channels_last)
    elif layout == "sliced":
        features = torch.randn(12, 6, 4, 5, dtype=torch.float64)[:, ::2]
    mixed = plan.apply(features)
    assert mixed._base is None and mixed.data_ptr() != features.data_ptr()
    if layout == "sliced":
        assert mixed.is_contiguous()
    else:
        assert mixed.stride() == features.stride()
    partner = torch.where(plan.weakened, plan.partner, torch.arange(12))
    share = plan.own_share.double().view(-1, 1, 1, 1)
    torch.testing.assert_close(mixed, share * features + (1 - share) * features[partner])
    assert torch.equal(mixed[~plan.weakened], features[~plan.weakened])
