import pytest
import timm
import torch
import torch.nn.functional as F

import procrustean  # noqa: F401  (registers the CIFAR ResNets)
from procrustean import ProcrusteanModel, WeakeningPolicy

# one model per family: a ResNet, a ConvNeXt, an EfficientNet, a ViT and the paper's CIFAR ResNet
FAMILIES = ["test_resnet", "test_convnext", "test_efficientnet", "test_vit", "resnet8_cifar"]
NUM_CLASSES = 4
COUNTS = [400, 200, 40, 4]


def make(name, policy=None, location="pre_logits", **kwargs):
    torch.manual_seed(0)
    img_size = 32
    backbone = timm.create_model(name, num_classes=NUM_CLASSES, img_size=img_size, **kwargs) \
        if name.startswith("test_vit") else timm.create_model(name, num_classes=NUM_CLASSES, **kwargs)
    return ProcrusteanModel(backbone, policy, location=location)


def batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.tensor([0, 1, 2, 3, 0, 0, 1, 3][:n] * (n // 8 or 1))


def weakened(model, x, y, seed=0, location=None):
    """A training forward with known draws: (output, the plan it applied, the draws)."""
    draws = model.policy.draw(y, generator=torch.Generator().manual_seed(seed))
    if location is not None:
        draws.location = location
    return model(x, labels=y, weakening_draws=draws), model.policy.resolve(draws, y), draws


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param


def locations_of(name):
    return make(name, WeakeningPolicy(COUNTS)).supported_locations


def test_every_family_exposes_input_stages_pre_logits_random(family):
    locations = locations_of(family)
    assert locations[0] == "input" and locations[-2:] == ["pre_logits", "random"]
    assert sum(loc.startswith("stage:") for loc in locations) >= 3


def test_eval_and_unlabelled_calls_equal_backbone_bit_for_bit(family):
    for location in locations_of(family):
        model = make(family, WeakeningPolicy(COUNTS, gamma=0.0), location=location)
        x, y = batch()
        model.eval()
        with torch.no_grad():
            ref = model.backbone(x)
            out = model(x, labels=y)
        assert torch.equal(out.logits, ref), location
        torch.testing.assert_close(out.loss, F.cross_entropy(ref, y))
        model.train()
        with torch.no_grad():
            ref = model.backbone(x)
            out = model(x)
        assert out.loss is None and torch.equal(out.logits, ref), location


def test_full_own_share_is_identity_at_every_location(family):
    # lam == 1 for every sample (even those "weakened"): training output must equal the backbone's exactly
    for location in locations_of(family):
        model = make(family, WeakeningPolicy(COUNTS, gamma=0.0, lam_range=(1.0, 1.0)), location=location).train()
        x, y = batch()
        with torch.no_grad():
            ref = model.backbone(x)
            out, plan, _ = weakened(model, x, y)
        assert plan.weakened.all()
        assert torch.equal(out.logits, ref), location


def test_weakening_changes_only_training_outputs_and_trains(family):
    for location in [loc for loc in locations_of(family) if loc != "random"]:
        model = make(family, WeakeningPolicy(COUNTS, gamma=0.0, lam_range=(0.5, 0.6)), location=location).train()
        x, y = batch()
        y_before = y.clone()
        with torch.no_grad():
            ref = model.backbone(x)
        out = model(x, labels=y)  # no draws given: the policy's own generator
        assert torch.equal(y, y_before)
        assert out.logits.shape == (8, NUM_CLASSES) and torch.isfinite(out.loss)
        assert not torch.allclose(out.logits, ref), location
        torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, y))
        out.loss.backward()
        grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), location


def test_input_and_pre_logits_follow_the_mixing_formula():
    model = make("test_resnet", WeakeningPolicy(COUNTS, gamma=0.0, seed=3), location="input").train()
    x, y = batch()
    with torch.no_grad():
        out, plan, _ = weakened(model, x, y, seed=3)
        lam = plan.own_share.view(-1, 1, 1, 1)
        expected = model.backbone(lam * x + (1 - lam) * x[plan.partner])
    torch.testing.assert_close(out.logits, expected)

    model = make("test_vit", WeakeningPolicy(COUNTS, gamma=0.0, seed=3), location="pre_logits").train()
    with torch.no_grad():
        out, plan, _ = weakened(model, x, y, seed=3)
        lam = plan.own_share.view(-1, 1)
        pooled = model.backbone.forward_head(model.backbone.forward_features(x), pre_logits=True)
        expected = model.backbone.get_classifier()(lam * pooled + (1 - lam) * pooled[plan.partner])
    torch.testing.assert_close(out.logits, expected)


def test_stage_hook_mixes_the_stage_output_only_in_a_weakened_forward():
    model = make("test_resnet", WeakeningPolicy(COUNTS, gamma=0.0, seed=4), location="stage:2").train()
    names = [entry["module"] for entry in model.backbone.feature_info]
    stage, consumer = model.backbone.get_submodule(names[2]), model.backbone.get_submodule(names[3])
    seen = {}
    # prepended: runs before the mixing hook (registered once, with the model), so it sees the raw output
    stage.register_forward_hook(lambda m, i, o: seen.__setitem__("raw", o.detach().clone()), prepend=True)
    consumer.register_forward_pre_hook(lambda m, a: seen.__setitem__("next_input", a[0].detach().clone()))
    x, y = batch()
    with torch.no_grad():
        _, plan, _ = weakened(model, x, y, seed=4)
    lam = plan.own_share.view(-1, 1, 1, 1)
    torch.testing.assert_close(seen["next_input"], lam * seen["raw"] + (1 - lam) * seen["raw"][plan.partner])
    assert not torch.equal(seen["next_input"], seen["raw"])
    assert len(stage._forward_hooks) == 2  # the mixing hook stays registered (torch.compile traces it once) ...
    with torch.no_grad():
        model(x)  # ... and is a no-op in any forward that does not weaken
        model.backbone(x)
    assert torch.equal(seen["next_input"], seen["raw"])


def test_minor_only_batch_is_untouched():
    model = make("test_resnet", WeakeningPolicy(COUNTS, gamma=2.0), location="pre_logits").train()
    x, _ = batch()
    y = torch.full((8,), 3)  # the smallest class: p = (4 / 400) ** 2
    with torch.no_grad():
        ref = model.backbone(x)
        out, plan, _ = weakened(model, x, y)
    assert not plan.weakened.any()
    assert torch.equal(out.logits, ref)


def test_random_location_takes_the_location_the_draws_pick():
    model = make("resnet8_cifar", WeakeningPolicy(COUNTS, seed=0), location="random").train()
    concrete = [loc for loc in model.supported_locations if loc != "random"]
    x, y = batch()
    with torch.no_grad():
        for k, location in enumerate(concrete):
            pick = (k + 0.5) / len(concrete)  # the draw that selects the k-th location
            out, _, _ = weakened(model, x, y, seed=k, location=pick)
            model.location = location
            fixed, _, _ = weakened(model, x, y, seed=k, location=pick)
            model.location = "random"
            assert torch.equal(out.logits, fixed.logits), location


def test_weakening_can_be_switched_off_and_policy_none_is_plain():
    model = make("test_resnet", WeakeningPolicy(COUNTS, gamma=0.0)).train()
    x, y = batch()
    model.weakening_enabled = False
    with torch.no_grad():
        assert torch.equal(model(x, labels=y).logits, model.backbone(x))
    plain = make("test_resnet", None).train()
    with torch.no_grad():
        assert torch.equal(plain(x, labels=y).logits, plain.backbone(x))


def test_unsupported_locations_and_models_fail_clearly():
    from procrustean.errors import UsageError

    with pytest.raises(UsageError, match=r"supported: \['input', 'stage:0'"):
        make("test_resnet", WeakeningPolicy(COUNTS), location="stage:99")
    with pytest.raises(UsageError, match="use auto .*, input, stage:K"):
        make("test_resnet", WeakeningPolicy(COUNTS), location="logits")
    assert make("test_resnet", WeakeningPolicy(COUNTS), location="stage:-1").location.startswith("stage:")
    with pytest.raises(UsageError, match="Unknown timm model 'resnet18x'.*resnet18"):
        ProcrusteanModel.from_timm("resnet18x", WeakeningPolicy(COUNTS))
    with pytest.raises(TypeError, match="timm"):
        ProcrusteanModel(torch.nn.Linear(3, 4), WeakeningPolicy(COUNTS))
    model = make("test_resnet", WeakeningPolicy(COUNTS))
    with pytest.raises(UsageError, match="supported"):  # checked on assignment too
        model.location = "stage:42"
    assert model.location == "pre_logits"
    model.location = "stage:1"
    assert model.location == "stage:1"


def test_a_policy_for_other_classes_is_refused():
    from procrustean.errors import UsageError

    with pytest.raises(UsageError, match="7 classes but the backbone .* has 10 outputs"):
        ProcrusteanModel(timm.create_model("resnet8_cifar", num_classes=10), WeakeningPolicy([5] * 7))


def test_from_timm_uses_the_default_location():
    from procrustean.model import DEFAULT_LOCATION

    model = ProcrusteanModel.from_timm("resnet8_cifar", WeakeningPolicy(COUNTS), num_classes=NUM_CLASSES)
    assert DEFAULT_LOCATION == "auto"
    assert model.location == "stage:1" == ProcrusteanModel(model.backbone, None).location


def test_auto_location_uses_the_measured_map_and_says_why():
    from procrustean.location_map import FALLBACK_LOCATION, ISOTROPIC_FALLBACK_LOCATION, MEASURED_LOCATIONS

    cifar = ProcrusteanModel(timm.create_model("resnet8_cifar", num_classes=NUM_CLASSES), None, location="auto")
    assert cifar.location == MEASURED_LOCATIONS["CifarResNet"].location
    assert cifar.location_evidence == MEASURED_LOCATIONS["CifarResNet"].evidence
    unmeasured = timm.create_model("test_efficientnet", num_classes=NUM_CLASSES)  # hierarchical: strides 2 to 32
    assert type(unmeasured).__name__ not in MEASURED_LOCATIONS
    model = ProcrusteanModel(unmeasured, None, location="auto")
    assert (model.location, model.location_evidence) == FALLBACK_LOCATION
    isotropic = timm.create_model("test_vit_relpos", num_classes=NUM_CLASSES)  # every block at stride 16
    assert type(isotropic).__name__ not in MEASURED_LOCATIONS
    model = ProcrusteanModel(isotropic, None, location="auto")
    assert (model.location, model.location_evidence) == ISOTROPIC_FALLBACK_LOCATION == ("input", model.location_evidence)
    model.location = "input"
    assert (model.location, model.location_evidence) == ("input", "given")
    for family, (location, evidence) in MEASURED_LOCATIONS.items():
        assert location == "input" or location == "pre_logits" or location.startswith("stage:"), family
        assert "docs/RESULTS.md" in evidence, family


def test_measured_outcome_for_every_measured_family_and_the_rest():
    """Every family with a measured location has a measured outcome (from scratch, and in fine-tuning), each citing its
    RESULTS row; a family never measured gets what the measured ones say, which is not "it helps"."""
    from procrustean.location_map import (MEASURED_FINE_TUNING_LOCATIONS, MEASURED_FINE_TUNING_OUTCOMES,
                                          MEASURED_LOCATIONS, MEASURED_OUTCOMES, UNMEASURED_FINE_TUNING_OUTCOME,
                                          UNMEASURED_OUTCOME)

    assert set(MEASURED_OUTCOMES) == set(MEASURED_LOCATIONS)
    assert set(MEASURED_FINE_TUNING_OUTCOMES) == set(MEASURED_FINE_TUNING_LOCATIONS)
    for helps, summary in [*MEASURED_OUTCOMES.values(), *MEASURED_FINE_TUNING_OUTCOMES.values(), UNMEASURED_OUTCOME,
                           UNMEASURED_FINE_TUNING_OUTCOME]:
        assert isinstance(helps, bool) and "docs/RESULTS.md" in summary and "@" not in summary
    cifar = ProcrusteanModel(timm.create_model("resnet8_cifar", num_classes=NUM_CLASSES), None)
    assert cifar.measured_outcome == MEASURED_OUTCOMES["CifarResNet"] and cifar.measured_outcome.helps
    mobile = timm.create_model("mobilenetv3_small_050", num_classes=NUM_CLASSES)
    assert ProcrusteanModel(mobile, None).measured_outcome == MEASURED_OUTCOMES["MobileNetV3"]
    tuned = ProcrusteanModel(mobile, None, fine_tuning=True)
    assert tuned.measured_outcome == MEASURED_FINE_TUNING_OUTCOMES["MobileNetV3"] and not tuned.measured_outcome.helps
    unmeasured = timm.create_model("test_efficientnet", num_classes=NUM_CLASSES)
    assert ProcrusteanModel(unmeasured, None).measured_outcome == UNMEASURED_OUTCOME
    assert ProcrusteanModel(unmeasured, None, fine_tuning=True).measured_outcome == UNMEASURED_FINE_TUNING_OUTCOME
    assert not UNMEASURED_OUTCOME.helps and not UNMEASURED_FINE_TUNING_OUTCOME.helps


def test_auto_location_in_fine_tuning_uses_the_fine_tuning_map():
    from procrustean.location_map import (FALLBACK_LOCATION, FINE_TUNING_FALLBACK_LOCATION,
                                          MEASURED_FINE_TUNING_LOCATIONS, MEASURED_LOCATIONS)

    mobile = timm.create_model("mobilenetv3_small_050", num_classes=NUM_CLASSES)
    scratch = ProcrusteanModel(mobile, None, location="auto")
    tuned = ProcrusteanModel(mobile, None, location="auto", fine_tuning=True)
    assert (scratch.location, scratch.location_evidence) == MEASURED_LOCATIONS["MobileNetV3"]
    assert (tuned.location, tuned.location_evidence) == MEASURED_FINE_TUNING_LOCATIONS["MobileNetV3"]
    assert tuned.location != scratch.location  # the measured reason for a second map
    unmeasured = timm.create_model("test_efficientnet", num_classes=NUM_CLASSES)
    assert type(unmeasured).__name__ not in MEASURED_FINE_TUNING_LOCATIONS
    model = ProcrusteanModel(unmeasured, None, location="auto", fine_tuning=True)
    assert (model.location, model.location_evidence) == FINE_TUNING_FALLBACK_LOCATION == ("pre_logits", model.location_evidence)
    headless = timm.create_model("test_efficientnet", num_classes=0)  # no classifier to weaken the input of
    model = ProcrusteanModel(headless, None, location="auto", fine_tuning=True)
    assert (model.location, model.location_evidence) == FALLBACK_LOCATION
    assert ProcrusteanModel(mobile, None, location="stage:1", fine_tuning=True).location == "stage:1"  # given wins
    # from_timm(..., pretrained=True) is fine-tuning (no download here: the weights are the ones just built)
    model = ProcrusteanModel.from_timm("mobilenetv3_small_050", None, pretrained=True, num_classes=NUM_CLASSES,
                                       pretrained_cfg_overlay=dict(state_dict=mobile.state_dict()))
    assert model.fine_tuning and model.location == MEASURED_FINE_TUNING_LOCATIONS["MobileNetV3"].location
    for family, (location, evidence) in MEASURED_FINE_TUNING_LOCATIONS.items():
        assert location == "input" or location == "pre_logits" or location.startswith("stage:"), family
        assert "docs/RESULTS.md" in evidence and "fine-tun" in evidence, family


def test_a_compiled_backbone_is_unwrapped_to_its_modules():
    backbone = timm.create_model("resnet8_cifar", num_classes=NUM_CLASSES)
    compiled = torch.compile(backbone)
    with pytest.warns(UserWarning, match="original module of the compiled backbone"):
        model = ProcrusteanModel(compiled, WeakeningPolicy(COUNTS, gamma=0.0), location="stage:1")
    assert model.backbone is backbone
    x, y = batch()
    model.train()
    with torch.no_grad():
        out, plan, _ = weakened(model, x, y)
    assert plan.weakened.all() and not torch.allclose(out.logits, backbone(x))


def test_distilled_twin_heads_are_weakened_at_pre_logits():
    backbone = timm.create_model("deit_tiny_distilled_patch16_224", num_classes=NUM_CLASSES, img_size=32,
                                 depth=2)
    model = ProcrusteanModel(backbone, WeakeningPolicy(COUNTS, gamma=0.0), location="pre_logits").train()
    assert "pre_logits" in model.supported_locations
    x, y = batch()
    seen = []
    for head in backbone.get_classifier():
        head.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    with torch.no_grad():
        ref = model.backbone(x)
        out = model(x, labels=y)
    assert torch.isfinite(out.loss) and not torch.allclose(out.logits, ref)
    assert len(seen) == 4  # both heads ran in the reference and in the weakened forward


def test_a_location_the_forward_never_reaches_is_an_error():
    model = make("test_resnet", WeakeningPolicy(COUNTS, gamma=0.0), location="pre_logits").train()
    model.backbone.forward = lambda x: model.backbone.forward_head(model.backbone.forward_features(x), pre_logits=True)[:, :4]
    x, y = batch()
    with pytest.raises(ValueError, match="never happened"):
        model(x, labels=y)


def test_convolutional_classifier_dla_is_weakened_at_pre_logits():
    model = make("dla34", WeakeningPolicy(COUNTS, gamma=0.0, lam_range=(1.0, 1.0)), location="pre_logits").train()
    x, y = batch()
    with torch.no_grad():
        assert torch.equal(model(x, labels=y).logits, model.backbone(x))  # own share 1: identity
    model.policy = WeakeningPolicy(COUNTS, gamma=0.0)
    with torch.no_grad():
        assert not torch.allclose(model(x, labels=y).logits, model.backbone(x))


def test_wraps_transformers_timm_wrapper():
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    config = TimmWrapperConfig(architecture="resnet8_cifar", num_labels=NUM_CLASSES)
    hf_model = TimmWrapperForImageClassification(config).eval()
    model = ProcrusteanModel(hf_model, WeakeningPolicy(COUNTS), location="stage:1").eval()
    assert model.backbone is hf_model.timm_model
    x, y = batch()
    with torch.no_grad():
        assert torch.equal(model(x, labels=y).logits, hf_model(pixel_values=x).logits)


def test_plans_follow_the_features_dtype_and_device():
    """Draws are made on the CPU in float32 and applied in the features' dtype on their device (here bfloat16)."""
    model = ProcrusteanModel.from_timm("resnet8_cifar", WeakeningPolicy(COUNTS, gamma=0.0, seed=2), location="input",
                                       num_classes=NUM_CLASSES, in_chans=1).to(torch.bfloat16).train()
    x, y = torch.randn(8, 1, 16, 16, dtype=torch.bfloat16), batch()[1]
    with torch.no_grad():
        out, plan, draws = weakened(model, x, y, seed=5)
        own_share = plan.own_share.to(torch.bfloat16).view(-1, 1, 1, 1)  # the own share rounded to bfloat16
        expected = model.backbone(torch.lerp(x[plan.partner], x, own_share))
    assert draws.uniform.dtype == torch.float32 and draws.uniform.device.type == "cpu"
    assert out.logits.dtype == torch.bfloat16 and torch.equal(out.logits, expected)
