"""CIFAR ResNets as timm models: architecture, timm API contract, Hub-layout round trips (offline)."""
import json

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

import procrustean.models as pm
from procrustean.hub.timm_config import normalise_config_json
from procrustean.models import CifarResNet, NormedLinear, ShortcutA, hf_model_args

# Parameter counts with 10 classes. ResNet-32's 464,154 is the count of LDAM-DRW's resnet32();
# the others match He et al. 2016, Table 6 (0.27M, 0.46M, 0.66M, 0.85M, 1.7M).
PARAMS_10 = {
    "resnet8_cifar": 75_290,
    "resnet20_cifar": 269_722,
    "resnet32_cifar": 464_154,
    "resnet44_cifar": 658_586,
    "resnet56_cifar": 853_018,
    "resnet110_cifar": 1_727_962,
}


def _perturb(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics/affine params so that round trips test every tensor."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.dtype.is_floating_point:
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.add_(0.05 * torch.randn(t.shape, generator=g))
    return model.eval()


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registered_and_listed():
    assert set(PARAMS_10) <= set(timm.list_models("*cifar*"))
    assert set(pm.CIFAR_RESNET_NAMES) == set(PARAMS_10)
    for name in PARAMS_10:
        assert timm.is_model(name)


@pytest.mark.parametrize("name", list(PARAMS_10))
def test_param_counts(name):
    model = timm.create_model(name)
    assert isinstance(model, CifarResNet)
    assert model.num_classes == 10
    assert _n_params(model) == PARAMS_10[name]


def test_resnet32_structure_and_pretrained_cfg():
    model = timm.create_model("resnet32_cifar")
    assert _n_params(model) == 464_154
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [5, 5, 5]
    n_conv = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    n_fc = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert n_conv + n_fc == 32  # 6n + 2 weighted layers
    assert model.conv1.weight.shape == (16, 3, 3, 3) and model.conv1.stride == (1, 1)
    assert model.num_features == model.head_hidden_size == 64
    assert model.fc.in_features == 64 and model.get_classifier() is model.fc
    assert model.get_classifier(name_only=True) == "fc"
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg
    assert cfg["architecture"] == "resnet32_cifar"
    assert tuple(cfg["input_size"]) == (3, 32, 32)
    assert cfg["crop_pct"] == 1.0 and cfg["num_classes"] == 10
    assert tuple(cfg["mean"]) == (0.4914, 0.4822, 0.4465)
    assert tuple(cfg["std"]) == (0.2470, 0.2435, 0.2616)
    assert cfg["first_conv"] == "conv1" and cfg["classifier"] == "fc"
    assert not cfg.get("url") and not cfg.get("hf_hub_id")
    assert "resnet32_cifar" not in timm.list_models("*cifar*", pretrained=True)
    with pytest.raises(RuntimeError, match="No pretrained weights"):
        timm.create_model("resnet32_cifar", pretrained=True)


def test_option_a_shortcut_matches_reference_lambda():
    x = torch.randn(2, 16, 8, 8)
    planes = 32
    ref = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0)
    sc = ShortcutA(16, planes, stride=2)
    assert torch.equal(sc(x), ref)
    assert not list(sc.parameters())
    model = timm.create_model("resnet20_cifar")
    shortcuts = [m for m in model.modules() if isinstance(m, ShortcutA)]
    assert len(shortcuts) == 2  # first block of stages 2 and 3 only
    assert all(isinstance(blk.shortcut, nn.Identity) for blk in model.layer1)


def test_kaiming_normal_init():
    torch.manual_seed(0)
    model = timm.create_model("resnet32_cifar")
    w = torch.cat([b.conv2.weight.flatten() for b in model.layer3])  # fan_in 576
    assert abs(w.std().item() / (2.0 / 576) ** 0.5 - 1) < 0.03
    assert abs(model.fc.weight.std().item() / (2.0 / 64) ** 0.5 - 1) < 0.15
    assert torch.equal(model.bn1.weight, torch.ones(16)) and torch.equal(model.bn1.bias, torch.zeros(16))


def test_forward_shapes_and_head_decomposition():
    model = _perturb(timm.create_model("resnet32_cifar", num_classes=7))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (3, 64, 8, 8)
        logits = model(x)
        assert logits.shape == (3, 7)
        assert torch.equal(logits, model.forward_head(feats))
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (3, 64)
        assert torch.equal(model.get_classifier()(pre), model.forward_head(feats))
        # other input sizes work (adaptive pooling)
        assert model(torch.randn(2, 3, 28, 28)).shape == (2, 7)


def test_dropout_only_in_training():
    model = timm.create_model("resnet8_cifar", drop_rate=0.5, drop_path_rate=0.1)
    x = torch.randn(4, 3, 32, 32)
    feats = model.eval().forward_features(x)
    pre = model.forward_head(feats, pre_logits=True)
    assert torch.equal(model.get_classifier()(pre), model.forward_head(feats))
    model.train()
    torch.manual_seed(0)
    pre_train = model.forward_head(feats, pre_logits=True)
    assert (pre_train == 0).any() and not torch.equal(pre_train, pre)


def test_feature_info_matches_hooked_outputs():
    model = timm.create_model("resnet32_cifar").eval()
    info = model.feature_info
    assert [d["module"] for d in info] == ["act1", "layer1", "layer2", "layer3"]
    outs = {}
    hooks = [
        model.get_submodule(d["module"]).register_forward_hook(
            lambda mod, inp, out, key=d["module"]: outs.__setitem__(key, out.clone()))
        for d in info
    ]
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    for h in hooks:
        h.remove()
    for d in info:
        out = outs[d["module"]]
        assert out.shape[1] == d["num_chs"], d
        assert 32 // out.shape[-1] == d["reduction"] and 32 // out.shape[-2] == d["reduction"], d
    assert [d["reduction"] for d in info] == [1, 1, 2, 4]
    assert [d["num_chs"] for d in info] == [16, 16, 32, 64]
    # forward_intermediates returns the same tensors
    with torch.no_grad():
        final, inter = model.forward_intermediates(torch.randn(2, 3, 32, 32))
    assert [t.shape[1] for t in inter] == [16, 16, 32, 64] and final.shape == (2, 64, 8, 8)


def test_features_only():
    x = torch.randn(2, 1, 32, 32)
    fnet = timm.create_model("resnet32_cifar", features_only=True, in_chans=1).eval()
    assert type(fnet).__name__ == "FeatureListNet"
    assert fnet.feature_info.channels() == [16, 16, 32, 64]
    assert fnet.feature_info.reduction() == [1, 1, 2, 4]
    with torch.no_grad():
        outs = fnet(x)
    assert [tuple(o.shape) for o in outs] == [(2, 16, 32, 32), (2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8)]
    sub = timm.create_model("resnet8_cifar", features_only=True, out_indices=(2, 3))
    assert sub.feature_info.channels() == [32, 64]
    getter = timm.create_model("resnet8_cifar", features_only=True, feature_cls="getter", out_indices=(1, 3))
    assert [o.shape[1] for o in getter(torch.randn(1, 3, 32, 32))] == [16, 64]


def test_in_chans_num_classes_zero_and_reset_classifier():
    gray = timm.create_model("resnet32_cifar", in_chans=1, num_classes=7)
    assert gray.conv1.weight.shape == (16, 1, 3, 3)
    assert gray(torch.randn(2, 1, 32, 32)).shape == (2, 7)

    headless = timm.create_model("resnet32_cifar", num_classes=0).eval()
    assert isinstance(headless.get_classifier(), nn.Identity) and headless.num_classes == 0
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert headless(x).shape == (2, 64)
    assert _n_params(headless) == PARAMS_10["resnet32_cifar"] - (64 * 10 + 10)
    unpooled = timm.create_model("resnet8_cifar", num_classes=0, global_pool="")
    assert unpooled(x).shape == (2, 64, 8, 8)

    model = timm.create_model("resnet32_cifar").eval()
    model.reset_classifier(5)
    assert model.num_classes == 5 and model.fc.out_features == 5 and not model.fc.training
    assert model(x).shape == (2, 5)
    model.reset_classifier(0)
    assert isinstance(model.fc, nn.Identity) and model(x).shape == (2, 64)
    model.reset_classifier(3, global_pool="avg")
    assert model(x).shape == (2, 3)


def test_normed_head():
    model = timm.create_model("resnet8_cifar", num_classes=7, normed_head=True).eval()
    assert isinstance(model.fc, NormedLinear) and model.fc.weight.shape == (7, 64)
    assert torch.allclose(model.fc.weight.norm(dim=1), torch.ones(7), atol=1e-5)
    with torch.no_grad():
        out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 7) and out.abs().max() <= 1 + 1e-5
    model.reset_classifier(4)
    assert isinstance(model.fc, NormedLinear) and model.fc.out_features == 4
    model.reset_classifier(0)
    assert isinstance(model.fc, nn.Identity)


def test_group_matcher_grad_checkpointing_no_weight_decay():
    model = timm.create_model("resnet20_cifar")
    groups = timm.models.group_parameters(model, model.group_matcher(coarse=True))
    assert len(groups) == 5  # stem, layer1..3, head
    grouped = sorted(n for names in groups.values() for n in names)
    assert grouped == sorted(n for n, _ in model.named_parameters())
    fine = timm.models.group_parameters(model, model.group_matcher(coarse=False))
    assert len(fine) == 2 + 9
    assert model.no_weight_decay() == set()

    model = _perturb(model)
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    ref = model(x)
    model.set_grad_checkpointing(True)
    out = model(x)
    assert torch.allclose(out, ref)
    out.sum().backward()
    assert model.conv1.weight.grad is not None


def test_hf_model_args():
    assert hf_model_args(timm.create_model("resnet8_cifar", num_classes=7)) == {}
    assert hf_model_args(timm.create_model("resnet8_cifar", in_chans=1)) == {"in_chans": 1}
    assert hf_model_args(timm.create_model("resnet8_cifar", normed_head=True)) == {"normed_head": True}
    assert "num_classes" not in hf_model_args(timm.create_model("resnet8_cifar", num_classes=3, in_chans=2))


@pytest.fixture
def offline_hf(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    return tmp_path


def test_save_for_hf_round_trip_timm_and_transformers(offline_hf):
    transformers = pytest.importorskip("transformers")
    model = _perturb(timm.create_model("resnet32_cifar", num_classes=7, in_chans=1))
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        ref = model(x)
    out_dir = offline_hf / "export"
    timm.models.save_for_hf(model, out_dir, safe_serialization=True, model_args=hf_model_args(model))
    assert (out_dir / "model.safetensors").is_file()
    cfg = normalise_config_json(out_dir / "config.json")
    assert cfg == json.loads((out_dir / "config.json").read_text())
    assert cfg["architecture"] == "resnet32_cifar" and cfg["num_classes"] == 7
    assert cfg["model_args"]["in_chans"] == 1
    assert "num_classes" not in cfg["model_args"]  # transformers 5.x passes it itself and rejects a second one

    loaded = timm.create_model(f"local-dir:{out_dir}", pretrained=True).eval()
    assert isinstance(loaded, CifarResNet) and loaded.num_classes == 7 and loaded.in_chans == 1
    with torch.no_grad():
        assert torch.equal(loaded(x), ref)

    hf = transformers.AutoModelForImageClassification.from_pretrained(out_dir).eval()
    assert type(hf).__name__ == "TimmWrapperForImageClassification"
    assert hf.config.num_labels == 7
    with torch.no_grad():
        assert torch.equal(hf(pixel_values=x).logits, ref)


def test_save_for_hf_alone_does_not_load_in_transformers(offline_hf):
    """Documents why the export normalises config.json: timm's own model_args carry num_classes, which
    transformers' TimmWrapper passes a second time; without it, both loaders rebuild the model."""
    from packaging.version import Version

    transformers = pytest.importorskip("transformers")
    model = _perturb(timm.create_model("resnet8_cifar", num_classes=7, in_chans=1))
    out_dir = offline_hf / "bare"
    timm.models.save_for_hf(model, out_dir, safe_serialization=True, model_args=hf_model_args(model))
    if Version(timm.__version__) >= Version("1.0.31"):  # the pinned release; 1.0.30 and older leave num_classes out
        assert json.loads((out_dir / "config.json").read_text())["model_args"]["num_classes"] == 7
        with pytest.raises(TypeError, match="multiple values for keyword argument 'num_classes'"):
            transformers.AutoModelForImageClassification.from_pretrained(out_dir)
    normalise_config_json(out_dir / "config.json")
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        ref = model.eval()(x)
        assert torch.equal(timm.create_model(f"local-dir:{out_dir}", pretrained=True).eval()(x), ref)
        hf = transformers.AutoModelForImageClassification.from_pretrained(out_dir).eval()
        assert torch.equal(hf(pixel_values=x).logits, ref)


def test_save_for_hf_round_trip_normed_head(offline_hf):
    transformers = pytest.importorskip("transformers")
    model = _perturb(timm.create_model("resnet8_cifar", num_classes=7, normed_head=True))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    out_dir = offline_hf / "normed"
    timm.models.save_for_hf(model, out_dir, safe_serialization=True, model_args=hf_model_args(model))
    normalise_config_json(out_dir / "config.json")
    loaded = timm.create_model(f"local-dir:{out_dir}", pretrained=True).eval()
    assert isinstance(loaded.fc, NormedLinear)
    hf = transformers.AutoModelForImageClassification.from_pretrained(out_dir).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), ref)
        assert torch.equal(hf(pixel_values=x).logits, ref)
