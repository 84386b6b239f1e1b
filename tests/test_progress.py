"""The progress rule: per-class running training accuracy -> weakening probabilities."""
import pytest
import torch

from procrustean import ProcrusteanModel, WeakeningPolicy
from procrustean.progress import ClassProgress, progress_probabilities


def logits_for(predictions, num_classes):
    return torch.nn.functional.one_hot(torch.as_tensor(predictions), num_classes).float()


def tracker(num_classes, **kwargs):
    prior = torch.linspace(1.0, 0.1, num_classes)
    return ClassProgress(prior, torch.ones(num_classes, dtype=torch.bool), **kwargs)


def test_counts_are_averaged_per_sample_and_refreshed_every_interval():
    progress = tracker(3, momentum=0.5, interval=2)
    labels = torch.tensor([0, 0, 1, 2])
    assert not progress.update(logits_for([0, 1, 1, 0], 3), labels)  # window only, no refresh yet
    assert torch.isnan(progress.accuracy()).all()
    assert progress.update(logits_for([0, 0, 0, 2], 3), labels)       # refresh: window summed into the averages
    torch.testing.assert_close(progress.seen, torch.tensor([4.0, 2.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(progress.correct, torch.tensor([3.0, 1.0, 1.0], dtype=torch.float64))
    progress.update(logits_for([1], 3), torch.tensor([0]))
    progress.update(logits_for([1], 3), torch.tensor([0]))             # class 0 wrong twice; 1 and 2 absent
    torch.testing.assert_close(progress.correct, torch.tensor([1.5, 0.5, 0.5], dtype=torch.float64))
    torch.testing.assert_close(progress.seen, torch.tensor([4.0, 1.0, 1.0], dtype=torch.float64))
    acc = progress.accuracy()
    assert acc[0] == pytest.approx(1.5 / 4) and acc[1] == acc[2] == pytest.approx(0.5)  # absent classes keep theirs


def test_unweakened_samples_only():
    progress = tracker(2, momentum=0.0, interval=1, samples="unweakened")
    progress.update(logits_for([0, 1, 1, 1], 2), torch.tensor([0, 0, 1, 1]),
                    weakened=torch.tensor([False, True, True, False]))
    torch.testing.assert_close(progress.seen, torch.tensor([1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(progress.correct, torch.tensor([1.0, 1.0], dtype=torch.float64))
    progress.update(logits_for([0, 1, 1], 2), torch.tensor([0, 0, 1]),  # every class-0 sample weakened
                    weakened=torch.tensor([True, True, False]))
    torch.testing.assert_close(progress.seen, torch.tensor([2.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(progress.correct, torch.tensor([1.0, 1.0], dtype=torch.float64))


def test_unweakened_samples_leave_the_prior_when_it_weakens_a_class_with_certainty():
    """The count prior gives the largest class p = 1, so none of its samples is ever unweakened."""
    policy = WeakeningPolicy([100, 50, 10], rule="progress", gamma=1.0, progress_interval=1, progress_momentum=0.0,
                             progress_margin=0.5, progress_samples="unweakened", seed=0)
    torch.testing.assert_close(policy.probabilities, torch.tensor([1.0, 0.5, 0.1]))
    labels = torch.tensor([0, 1, 2] * 20)
    plan = policy.plan(labels)
    assert plan.weakened[labels == 0].all()
    policy.observe(logits_for([0, 0, 0] * 20, 3), labels, plan)  # class 0 fitted, 1 and 2 not
    torch.testing.assert_close(policy.probabilities, torch.tensor([1.0, 0.0, 0.0]))


def test_probabilities_follow_the_gap_to_the_least_fitted_class():
    present = torch.tensor([True, True, True, False])
    acc = torch.tensor([0.9, 0.5, 0.2, float("nan")], dtype=torch.float64)
    torch.testing.assert_close(progress_probabilities(acc, present, margin=0.5), torch.tensor([1.0, 0.6, 0.0, 0.0]))
    torch.testing.assert_close(progress_probabilities(acc, present, margin=1.0), torch.tensor([0.7, 0.3, 0.0, 0.0]))
    level = torch.tensor([0.8, 0.8, 0.8, 0.0], dtype=torch.float64)  # progress even: nobody is weakened
    assert progress_probabilities(level, present, 0.5).sum() == 0


def test_policy_uses_the_count_prior_until_every_class_is_seen_then_the_progress():
    policy = WeakeningPolicy([100, 50, 10], rule="progress", gamma=1.0, progress_interval=1, progress_momentum=0.0,
                             progress_margin=0.5, seed=0)
    torch.testing.assert_close(policy.probabilities, torch.tensor([1.0, 0.5, 0.1]))  # prior = power rule
    policy.observe(logits_for([0, 1], 3), torch.tensor([0, 1]))  # class 2 not seen yet: still the prior
    torch.testing.assert_close(policy.probabilities, torch.tensor([1.0, 0.5, 0.1]))
    policy.observe(logits_for([0, 0, 0], 3), torch.tensor([0, 1, 2]))  # class 0 fitted, 1 and 2 not
    torch.testing.assert_close(policy.probabilities, torch.tensor([1.0, 0.0, 0.0]))
    labels = torch.tensor([0, 1, 2] * 50)
    assert policy.plan(labels).weakened[labels != 0].sum() == 0  # plans follow the new probabilities
    policy.observe(logits_for([0, 1, 2], 3), torch.tensor([0, 1, 2]))  # all fitted: no weakening left
    assert policy.probabilities.sum() == 0
    assert policy.config()["rule"] == "progress" and policy.config()["progress_margin"] == 0.5


def test_count_rule_ignores_observations():
    policy = WeakeningPolicy([100, 10], rule="power", seed=0)
    before = policy.probabilities.clone()
    policy.observe(logits_for([1, 1], 2), torch.tensor([0, 1]))
    assert torch.equal(policy.probabilities, before) and policy.progress is None


@pytest.mark.parametrize("kwargs, match", [
    (dict(progress_margin=0.0), "margin"), (dict(progress_momentum=1.0), "momentum"),
    (dict(progress_interval=0), "interval"), (dict(progress_samples="clean"), "progress samples"),
])
def test_bad_progress_settings_fail_early(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WeakeningPolicy([10, 5], rule="progress", **kwargs)


def test_state_dict_resumes_the_statistics_mid_window():
    def fresh():
        return WeakeningPolicy([40, 20, 5], rule="progress", progress_interval=3, seed=7)

    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(6, 3, generator=g), torch.randint(0, 3, (6,), generator=g)) for _ in range(10)]
    full, first_half = fresh(), fresh()
    for logits, labels in batches:
        full.observe(logits, labels, full.plan(labels))
    for logits, labels in batches[:4]:  # stop mid-window (4 % 3 != 0)
        first_half.observe(logits, labels, first_half.plan(labels))
    resumed = fresh()
    resumed.load_state_dict(first_half.state_dict())
    assert resumed.progress._batches == 4
    for logits, labels in batches[4:]:
        resumed.observe(logits, labels, resumed.plan(labels))
    assert torch.equal(resumed.probabilities, full.probabilities)
    torch.testing.assert_close(resumed.progress.correct, full.progress.correct)
    with pytest.raises(ValueError, match="no progress statistics"):
        fresh().load_state_dict(WeakeningPolicy([40, 20, 5]).state_dict())


def test_the_model_owns_the_statistics_and_feeds_them_in_training_only():
    policy = WeakeningPolicy([30, 3], rule="progress", progress_interval=1, seed=0)
    model = ProcrusteanModel.from_timm("resnet8_cifar", policy, num_classes=2, in_chans=1)
    assert model.progress is policy.progress
    assert {"progress.correct", "progress.seen", "progress.probabilities", "progress.batches"} <= set(model.state_dict())
    x, y = torch.randn(8, 1, 16, 16), torch.tensor([0] * 6 + [1] * 2)
    model.eval()
    model(x, labels=y)
    assert policy.progress._batches == 0
    model.train()
    model(x, labels=y)
    assert policy.progress._batches == 1 and policy.progress.seen.tolist() == [6.0, 2.0]
    # the statistics travel with the model's state_dict (what accelerate and Trainer checkpoint)
    other = ProcrusteanModel.from_timm("resnet8_cifar", WeakeningPolicy([30, 3], rule="progress", seed=0),
                                       num_classes=2, in_chans=1)
    other.load_state_dict(model.state_dict())
    assert other.progress._batches == 1 and torch.equal(other.progress.seen, policy.progress.seen)
    assert torch.equal(other.policy.probabilities, policy.probabilities)
