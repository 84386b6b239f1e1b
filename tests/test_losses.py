"""Losses vs. independent per-sample transcriptions of their reference formulas."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from procrustean.losses import (
    LOSS_NAMES, CDTLoss, ClassWeightedLoss, CrossEntropyLoss, DeferredReweighting, FocalLoss,
    LDAMLoss, LogitAdjustedLoss, class_balanced_weights, create_loss)

CIFAR10_EXP100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
# Golden values computed from the LDAM-DRW formulas (numpy, float64), rounded to 6 decimals.
CB_WEIGHTS_9999 = [0.050611, 0.0769, 0.121134, 0.195037, 0.318805, 0.52459, 0.868349, 1.442627,
                   2.409223, 3.992724]
LDAM_MARGINS = [0.158114, 0.179697, 0.204238, 0.232091, 0.263829, 0.299768, 0.340675, 0.387221,
                0.440497, 0.5]
C = len(CIFAR10_EXP100)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, C, generator=g, dtype=torch.float64) * 3
    labels = torch.cat([torch.arange(C), torch.randint(0, C, (6,), generator=g)])
    return logits, labels


@pytest.fixture
def weight():
    return torch.linspace(0.2, 3.0, C, dtype=torch.float64)


def per_sample_ce(z, y):
    """-log softmax(z)[y], one row at a time, in float64 numpy."""
    z = np.asarray(z, dtype=np.float64)
    zmax = z.max()
    return float(-(z[y] - zmax) + math.log(np.exp(z - zmax).sum()))


def reduce_weighted(losses, labels, weight):
    """F.cross_entropy's mean convention: sum w_y l / sum w_y (plain mean when weight is None)."""
    w = np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64)
    wy = np.array([w[y] for y in labels])
    return float((wy * np.array(losses)).sum() / wy.sum())


def ref_loss(transform, logits, labels, weight=None):
    """Weighted-mean CE of per-sample transformed logits: transform(z_row, y) -> z_row'."""
    z, ys = logits.numpy(), labels.tolist()
    losses = [per_sample_ce(transform(z[i].copy(), y), y) for i, y in enumerate(ys)]
    return reduce_weighted(losses, ys, None if weight is None else weight.numpy())


def close(a, b, tol=1e-10):
    return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))


# ---------------------------------------------------------------- cross-entropy
@pytest.mark.parametrize("use_weight", [False, True])
def test_cross_entropy_matches_reference(batch, weight, use_weight):
    logits, labels = batch
    loss = CrossEntropyLoss(CIFAR10_EXP100)
    w = weight if use_weight else None
    loss.set_class_weight(w)
    assert close(loss(logits, labels), ref_loss(lambda z, y: z, logits, labels, w))
    assert close(loss(logits, labels), F.cross_entropy(logits, labels, weight=w))


def test_cross_entropy_label_smoothing_and_reductions(batch, weight):
    logits, labels = batch
    loss = CrossEntropyLoss(label_smoothing=0.1)
    loss.set_class_weight(weight)
    assert close(loss(logits, labels), F.cross_entropy(logits, labels, weight=weight, label_smoothing=0.1))
    none = CrossEntropyLoss(num_classes=C, reduction="none")(logits, labels)
    assert none.shape == (16,)
    assert torch.allclose(none, F.cross_entropy(logits, labels, reduction="none"))
    assert close(CrossEntropyLoss(reduction="sum")(logits, labels), none.sum())


# ---------------------------------------------------------------- logit adjustment
@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("use_weight", [False, True])
def test_logit_adjusted_matches_reference(batch, weight, tau, use_weight):
    logits, labels = batch
    n = np.array(CIFAR10_EXP100, dtype=np.float64)
    log_prior = np.log(n / n.sum())
    loss = LogitAdjustedLoss(CIFAR10_EXP100, tau=tau)
    w = weight if use_weight else None
    loss.set_class_weight(w)
    assert close(loss(logits, labels), ref_loss(lambda z, y: z + tau * log_prior, logits, labels, w))


def test_balanced_softmax_is_ren_formula(batch):
    # Ren et al. 2020: -log(n_y exp(z_y) / sum_c n_c exp(z_c)).
    logits, labels = batch
    n = np.array(CIFAR10_EXP100, dtype=np.float64)
    z = logits.numpy()
    expected = np.mean([-math.log(n[y] * math.exp(z[i, y]) / (n * np.exp(z[i])).sum())
                        for i, y in enumerate(labels.tolist())])
    assert close(create_loss("balanced_softmax", CIFAR10_EXP100)(logits, labels), expected)
    assert create_loss("balanced_softmax", CIFAR10_EXP100).tau == 1.0


def test_logit_adjusted_tau0_is_ce(batch):
    logits, labels = batch
    assert close(LogitAdjustedLoss(CIFAR10_EXP100, tau=0.0)(logits, labels), F.cross_entropy(logits, labels))


# ---------------------------------------------------------------- LDAM
def test_ldam_margins_golden():
    loss = LDAMLoss(CIFAR10_EXP100)
    assert np.allclose(loss.margins.numpy(), LDAM_MARGINS, atol=1e-6)
    assert close(loss.margins.max(), 0.5)


@pytest.mark.parametrize("use_weight", [False, True])
def test_ldam_matches_reference(batch, weight, use_weight):
    logits, labels = batch
    logits = torch.tanh(logits)  # cosine-like logits, as from the reference's NormedLinear head
    n = np.array(CIFAR10_EXP100, dtype=np.float64)
    m = 1.0 / n ** 0.25
    m = m * (0.5 / m.max())

    def transform(z, y):
        z[y] -= m[y]  # margin on the true class only
        return 30.0 * z

    loss = LDAMLoss(CIFAR10_EXP100, max_margin=0.5, scale=30.0)
    w = weight if use_weight else None
    loss.set_class_weight(w)
    assert close(loss(logits, labels), ref_loss(transform, logits, labels, w))


def test_ldam_no_margin_unit_scale_is_ce(batch, weight):
    logits, labels = batch
    loss = LDAMLoss(CIFAR10_EXP100, max_margin=0.0, scale=1.0)
    assert close(loss(logits, labels), F.cross_entropy(logits, labels))
    loss.set_class_weight(weight)
    assert close(loss(logits, labels), F.cross_entropy(logits, labels, weight=weight))


# ---------------------------------------------------------------- CDT
@pytest.mark.parametrize("gamma", [0.1, 0.3])
@pytest.mark.parametrize("use_weight", [False, True])
def test_cdt_matches_reference(batch, weight, gamma, use_weight):
    logits, labels = batch
    n = np.array(CIFAR10_EXP100, dtype=np.float64)
    a = (n.max() / n) ** gamma
    loss = CDTLoss(CIFAR10_EXP100, gamma=gamma)
    w = weight if use_weight else None
    loss.set_class_weight(w)
    assert close(loss(logits, labels), ref_loss(lambda z, y: z / a, logits, labels, w))
    assert close(loss.temperatures[0], 1.0) and close(loss.temperatures[-1], 100.0 ** gamma)


def test_cdt_gamma0_is_ce(batch):
    logits, labels = batch
    assert close(CDTLoss(CIFAR10_EXP100, gamma=0.0)(logits, labels), F.cross_entropy(logits, labels))


# ---------------------------------------------------------------- focal
@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("use_weight", [False, True])
def test_focal_matches_reference(batch, weight, gamma, use_weight):
    # LDAM-DRW: ce_i = w_y * CE_i (weighted, unreduced); p_i = exp(-ce_i); mean((1 - p)^g * ce_i).
    logits, labels = batch
    z, ys = logits.numpy(), labels.tolist()
    w = weight.numpy() if use_weight else np.ones(C)
    ce = [w[y] * per_sample_ce(z[i], y) for i, y in enumerate(ys)]
    expected = np.mean([(1.0 - math.exp(-c)) ** gamma * c for c in ce])
    loss = FocalLoss(gamma=gamma)
    loss.set_class_weight(weight if use_weight else None)
    assert close(loss(logits, labels), expected)


def test_focal_gamma0_is_plain_mean_ce(batch, weight):
    logits, labels = batch
    loss = FocalLoss(gamma=0.0, num_classes=C)
    assert close(loss(logits, labels), F.cross_entropy(logits, labels))
    loss.set_class_weight(weight)  # plain mean of weighted CE, as the reference (not / sum w_y)
    expected = F.cross_entropy(logits, labels, weight=weight, reduction="none").mean()
    assert close(loss(logits, labels), expected)


def test_focal_gradient_finite_when_confident():
    logits = torch.tensor([[200.0, 0.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 2])
    for gamma in (0.5, 1.0, 2.0):
        out = FocalLoss(gamma=gamma)(logits, labels)
        (grad,) = torch.autograd.grad(out, logits)
        assert torch.isfinite(out) and torch.isfinite(grad).all(), gamma


# ---------------------------------------------------------------- DRW
def test_class_balanced_weights_golden():
    w = class_balanced_weights(CIFAR10_EXP100, beta=0.9999)
    assert w.dtype == torch.float32 and w.shape == (C,)
    assert np.allclose(w.numpy(), CB_WEIGHTS_9999, atol=1e-6)
    n = np.array(CIFAR10_EXP100, dtype=np.float64)
    ref = (1.0 - 0.9999) / (1.0 - 0.9999 ** n)
    assert np.allclose(w.numpy(), ref / ref.sum() * C, rtol=1e-6)
    assert close(w.sum(), C, tol=1e-6)
    assert torch.allclose(class_balanced_weights(CIFAR10_EXP100, beta=0.0), torch.ones(C))


def test_deferred_reweighting_schedule(batch):
    logits, labels = batch
    drw = DeferredReweighting(CIFAR10_EXP100, beta=0.9999, start_epoch=160)
    assert drw.weight_for_epoch(0) is None and drw.weight_for_epoch(159) is None
    assert torch.equal(drw.weight_for_epoch(160), class_balanced_weights(CIFAR10_EXP100))
    loss = LDAMLoss(CIFAR10_EXP100)
    assert drw.apply(loss, 10) is None and loss.class_weight is None
    w = drw.apply(loss, 170)
    assert torch.equal(loss.class_weight, w)
    assert close(loss(logits, labels), ref_loss(
        lambda z, y: 30.0 * np.where(np.arange(C) == y, z - LDAM_MARGINS[y], z), logits, labels,
        w.double()), tol=1e-5)
    assert "class_weight" not in loss.state_dict()
    assert DeferredReweighting(CIFAR10_EXP100, start_epoch=0).weight_for_epoch(0) is not None


@pytest.mark.parametrize("kwargs", [dict(beta=1.0), dict(beta=-0.1), dict(start_epoch=-1),
                                    dict(start_epoch=1.5)])
def test_deferred_reweighting_validation(kwargs):
    with pytest.raises(ValueError):
        DeferredReweighting(CIFAR10_EXP100, **kwargs)


def test_drw_apply_checks():
    drw = DeferredReweighting(CIFAR10_EXP100, start_epoch=0)
    with pytest.raises(TypeError):
        drw.apply(torch.nn.CrossEntropyLoss(), 0)
    with pytest.raises(ValueError, match="10 classes.*5"):
        drw.apply(CrossEntropyLoss(num_classes=5), 0)
    with pytest.raises(ValueError, match="epoch"):
        drw.weight_for_epoch(-1)
    with pytest.raises(ValueError, match="zero training samples"):
        class_balanced_weights([10, 0, 5])


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("cls", [LogitAdjustedLoss, LDAMLoss, CDTLoss])
def test_zero_count_class_refused(cls):
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have zero training samples"):
        cls([100, 0, 10])


def test_input_validation(batch):
    logits, labels = batch
    loss = LDAMLoss(CIFAR10_EXP100)
    with pytest.raises(ValueError, match="11 classes.*10"):
        loss(torch.randn(16, 11), labels)
    with pytest.raises(ValueError, match="2-D"):
        loss(logits[0], labels[:1])
    with pytest.raises(ValueError, match="1-D"):
        loss(logits, F.one_hot(labels, C).float())
    with pytest.raises(ValueError, match="batch size mismatch"):
        loss(logits, labels[:5])
    with pytest.raises(ValueError, match="integer"):
        loss(logits, labels.float())
    with pytest.raises(ValueError, match="num_classes=5.*10"):
        CrossEntropyLoss(CIFAR10_EXP100, num_classes=5)
    with pytest.raises(ValueError, match="3 entries.*10 classes"):
        loss.set_class_weight(torch.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        loss.set_class_weight(-torch.ones(C))
    with pytest.raises(ValueError):
        LDAMLoss(CIFAR10_EXP100, scale=0.0)
    with pytest.raises(ValueError):
        FocalLoss(gamma=-1.0)
    with pytest.raises(ValueError):
        CrossEntropyLoss(reduction="avg")
    # int32 labels are accepted
    assert close(CrossEntropyLoss()(logits, labels.int()), F.cross_entropy(logits, labels))


# ---------------------------------------------------------------- factory
@pytest.mark.parametrize("name,cls", [("ce", CrossEntropyLoss), ("cross_entropy", CrossEntropyLoss),
                                      ("logit_adjusted", LogitAdjustedLoss), ("la", LogitAdjustedLoss),
                                      ("balanced_softmax", LogitAdjustedLoss), ("ldam", LDAMLoss),
                                      ("cdt", CDTLoss), ("focal", FocalLoss), ("LDAM", LDAMLoss),
                                      ("logit-adjusted", LogitAdjustedLoss)])
def test_create_loss_names(name, cls):
    loss = create_loss(name, CIFAR10_EXP100)
    assert type(loss) is cls and isinstance(loss, ClassWeightedLoss) and loss.num_classes == C


def test_create_loss_kwargs_and_errors():
    assert set(LOSS_NAMES) >= {"ce", "cross_entropy", "logit_adjusted", "la", "balanced_softmax",
                               "ldam", "cdt", "focal"}
    assert create_loss("la", CIFAR10_EXP100, tau=0.5).tau == 0.5
    assert create_loss("ldam", CIFAR10_EXP100, max_margin=0.3, scale=10.0).scale == 10.0
    assert create_loss("focal", gamma=2.0).gamma == 2.0
    assert create_loss("ce").num_classes is None
    with pytest.raises(ValueError, match="Unknown loss 'nope'.*balanced_softmax"):
        create_loss("nope", CIFAR10_EXP100)
    with pytest.raises(TypeError, match="margin"):
        create_loss("ldam", CIFAR10_EXP100, margin=0.5)
    with pytest.raises(TypeError, match="tau"):
        create_loss("balanced_softmax", CIFAR10_EXP100, tau=2.0)
    for name in ("logit_adjusted", "balanced_softmax", "ldam", "cdt"):
        with pytest.raises(ValueError, match="needs class_counts"):
            create_loss(name)


# ---------------------------------------------------------------- gradients / dtype / device
@pytest.mark.parametrize("name", ["ce", "la", "balanced_softmax", "ldam", "cdt", "focal"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_finite(name, dtype):
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(32, C, generator=g) * 5).to(dtype).requires_grad_()
    labels = torch.randint(0, C, (32,), generator=g)
    loss = create_loss(name, CIFAR10_EXP100)
    for epoch in (0, 160):
        DeferredReweighting(CIFAR10_EXP100).apply(loss, epoch)
        out = loss(logits, labels)
        (grad,) = torch.autograd.grad(out, logits)
        assert out.dtype == dtype and out.ndim == 0
        assert torch.isfinite(out) and torch.isfinite(grad).all() and grad.abs().sum() > 0
