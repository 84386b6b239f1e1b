"""Export, model card, Hub push and plots -- all offline (tests/conftest.py sets HF_HUB_OFFLINE=1)."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import yaml

import procrustean  # noqa: F401  (registers resnet8_cifar)
from procrustean import ProcrusteanModel
from procrustean.hub import export_model, render_model_card
from procrustean.hub.push import HubPushError, main, push_export
from procrustean.metrics import compute_long_tail_accuracy
from procrustean.train.plots import plot_per_class_accuracy, plot_training_progress

CASES = {  # name -> (create_model kwargs, model_args expected in config.json)
    "resnet8_cifar": (dict(in_chans=1, num_classes=10), {"in_chans": 1}),
    "test_resnet": (dict(num_classes=5), None),
    "test_vit": (dict(img_size=32, num_classes=5), {"img_size": [32, 32]}),
}
CARD_NAMES = [f"class {c}" for c in range(10)]
CARD_COUNTS = [500, 500, 500, 500, 500, 5, 5, 5, 5, 5]


def _tree_hash(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _siblings(path: Path) -> list:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def _metrics():
    torch.manual_seed(0)
    refs = torch.arange(10).repeat_interleave(4).tolist()
    preds = [r if i % 3 else (r + 1) % 10 for i, r in enumerate(refs)]
    return compute_long_tail_accuracy(predictions=preds, references=refs, train_class_counts=CARD_COUNTS)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Each case exported once: {name: (original model, export dir, input shape)}."""
    root = tmp_path_factory.mktemp("exports")
    plot = root / "acc.png"
    plot.write_bytes(b"\x89PNG fake")
    out = {}
    for name, (kwargs, _) in CASES.items():
        torch.manual_seed(0)
        model = timm.create_model(name, **kwargs).eval()
        wrapped = ProcrusteanModel(model) if name == "resnet8_cifar" else model  # the recipe passes its wrapper
        labels = [f"{name}-label-{c}" for c in range(model.num_classes)]
        path = export_model(wrapped, root / name, label_names=labels, model_card="# card\n",
                            extra_files={"plots/acc.png": plot}, training_config={"model": name, "lr": 0.1,
                                                                                  "path": root, "size": (32, 32)})
        shape = json.loads((path / "config.json").read_text())["pretrained_cfg"]["input_size"]
        out[name] = (model, path, labels, shape)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_round_trip_timm_and_transformers(exports, name):
    from transformers import AutoModelForImageClassification

    model, path, labels, shape = exports[name]
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "config.json", "model.safetensors", "plots",
                                                      "training_config.yaml"]
    config = json.loads((path / "config.json").read_text())
    assert config["architecture"] == name and config["num_classes"] == model.num_classes
    assert config["label_names"] == labels
    assert (CASES[name][1] or {}).items() <= config.get("model_args", {}).items()  # timm >= 1.0.31 adds e.g. global_pool
    assert "num_classes" not in config.get("model_args", {})
    assert config["pretrained_cfg"]["num_classes"] == model.num_classes
    assert config["pretrained_cfg"]["input_size"][0] == CASES[name][0].get("in_chans", 3)
    assert len(config["pretrained_cfg"]["mean"]) == shape[0]
    assert yaml.safe_load((path / "training_config.yaml").read_text())["size"] == [32, 32]

    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    from_timm = timm.create_model(f"local-dir:{path}", pretrained=True).eval()
    from_hf = AutoModelForImageClassification.from_pretrained(path).eval()
    assert type(from_hf).__name__ == "TimmWrapperForImageClassification"
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(from_timm(x), expected, rtol=0, atol=0)
        torch.testing.assert_close(from_hf(pixel_values=x).logits, expected, rtol=0, atol=0)
    assert list(from_timm.pretrained_cfg["label_names"]) == labels
    assert from_hf.config.id2label == dict(enumerate(labels))
    assert from_hf.config.label2id == {n: i for i, n in enumerate(labels)}


def test_image_processor_matches_grey_scale_model(exports):
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(exports["resnet8_cifar"][1])
    assert processor.data_config["input_size"] == (1, 32, 32)
    assert len(processor.data_config["mean"]) == len(processor.data_config["std"]) == 1


def test_export_refuses_bad_inputs_before_writing(tmp_path):
    model = timm.create_model("resnet8_cifar", num_classes=3)
    target = tmp_path / "out"
    with pytest.raises(ValueError, match="one name per classifier output"):
        export_model(model, target, label_names=["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        export_model(model, target, label_names=["a", "a", "b"])
    with pytest.raises(ValueError, match="num_classes"):
        export_model(model, target, label_names=["a", "b", "c"], model_args={"num_classes": 3})
    with pytest.raises(ValueError, match="overwrite"):
        export_model(model, target, label_names=["a", "b", "c"], extra_files={"config.json": __file__})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint-10").mkdir()
    with pytest.raises(FileExistsError, match="not a model export"):
        export_model(model, tmp_path / "run", label_names=["a", "b", "c"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_export_verification_catches_unrecorded_constructor_args(tmp_path):
    # timm >= 1.0.31 records create_model's kwargs in model._model_args; a model without that record (built before
    # 1.0.31, or by hand) loses the non-default stem_width from config.json, and the rebuilt model differs
    model = timm.create_model("test_resnet", num_classes=3, stem_width=24)  # the default is 16
    model.__dict__.pop("_model_args", None)
    with pytest.raises(RuntimeError, match="model_args"):
        export_model(model, tmp_path / "export", label_names=["a", "b", "c"])
    assert list(tmp_path.iterdir()) == []


def test_export_is_atomic(tmp_path, monkeypatch):
    import procrustean.hub.export as export

    model = timm.create_model("resnet8_cifar", num_classes=3, in_chans=1)
    target = export_model(model, tmp_path / "export", label_names=["a", "b", "c"], model_card="# old\n")
    before = _tree_hash(target)

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    extra = tmp_path / "plot.png"
    extra.write_bytes(b"png")
    monkeypatch.setattr(export.shutil, "copyfile", crash)  # fails after save_for_hf, mid-export
    with pytest.raises(OSError, match="simulated"):
        export_model(model, target, label_names=["x", "y", "z"], model_card="# new\n", extra_files={"p.png": extra})
    monkeypatch.undo()
    monkeypatch.setattr(export, "_verify_export", crash)  # fails at the last step before the swap
    with pytest.raises(OSError, match="simulated"):
        export_model(model, target, label_names=["x", "y", "z"], model_card="# new\n")
    monkeypatch.undo()
    assert _tree_hash(target) == before and _siblings(target) == []

    export_model(model, target, label_names=["x", "y", "z"], model_card="# new\n")  # complete: replaces the old
    assert (target / "README.md").read_text() == "# new\n" and _siblings(target) == []
    assert json.loads((target / "config.json").read_text())["label_names"] == ["x", "y", "z"]


def test_model_card_metadata_and_sections():
    from huggingface_hub import ModelCard

    metrics = _metrics()
    weakening = {"location": "pre_logits", "rule": "power", "gamma": 1.0, "lam_range": [0.5, 1.0],
                 "probabilities": [n / 500 for n in CARD_COUNTS]}
    text = render_model_card(repo_id_or_name="someone/resnet8-fmnist-step100", model_name="resnet8_cifar",
                             dataset="cifar10", class_names=CARD_NAMES, class_counts=CARD_COUNTS,
                             imbalance="step:100", weakening=weakening,
                             training_config={"model": "resnet8_cifar", "epochs": 2, "nested": {"a": (1, 2)}},
                             metrics={f"eval_{k}": v for k, v in metrics.items()},
                             plots=["per_class_accuracy.png"], command="python recipes/train.py -c cfg.yaml")
    card = ModelCard(text)
    data = card.data.to_dict()
    assert data["library_name"] == "timm" and data["pipeline_tag"] == "image-classification"
    assert data["license"] == "apache-2.0" and data["datasets"] == ["cifar10"] and data["metrics"] == ["accuracy"]
    assert set(data["tags"]) >= {"image-classification", "timm", "procrustean", "long-tail", "imbalanced"}
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results["Image-averaged accuracy (top-1) (%)"] == round(100 * metrics["image_averaged_accuracy"], 2)
    assert results["Class-averaged accuracy (%)"] == round(100 * metrics["class_averaged_accuracy"], 2)
    assert "Minor-class accuracy (%)" in results
    body = card.text
    for needle in ("2104.01769", "our own design", "import procrustean", 'hf-hub:someone/resnet8-fmnist-step100',
                   "AutoModelForImageClassification", "| 9 | class 9 | 5 |", "p(weaken)",
                   "| 0 | class 0 | 500 | 1.0000 |",
                   "Class-averaged accuracy", "Few-shot accuracy", "![per_class_accuracy](per_class_accuracy.png)",
                   "```yaml", "python recipes/train.py -c cfg.yaml", "imbalance ratio n_max / n_min = 100.0"):
        assert needle in body, needle
    config_block = body.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(config_block)["nested"] == {"a": [1, 2]}
    progress = render_model_card(repo_id_or_name="someone/x", model_name="resnet8_cifar", dataset="cifar10",
                                 class_names=CARD_NAMES, class_counts=CARD_COUNTS, imbalance="step:100",
                                 weakening={**weakening, "rule": "progress"}, training_config={}, metrics=metrics)
    assert "weakened at the end of training" in progress and "at the end of training" not in body

    local = render_model_card(repo_id_or_name="local-name", model_name="test_resnet", dataset="./data/my folder",
                              class_names=CARD_NAMES, class_counts=CARD_COUNTS, imbalance="exp:100", weakening=None,
                              training_config={}, metrics=metrics)
    local_card = ModelCard(local)
    assert "datasets" not in local_card.data.to_dict() and "import procrustean" not in local_card.text
    with pytest.raises(ValueError, match="class_averaged_accuracy"):
        render_model_card(repo_id_or_name="x", model_name="test_resnet", dataset="d", class_names=["a"],
                          class_counts=[1], imbalance="none", weakening=None, training_config={},
                          metrics={"image_averaged_accuracy": 1.0})


class FakeApi:
    """Records what push_export asks of HfApi."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        files = sorted(p.relative_to(kwargs["folder_path"]).as_posix()
                       for p in Path(kwargs["folder_path"]).rglob("*") if p.is_file())
        self.calls.append(("upload_folder", kwargs["repo_id"], dict(kwargs, files=files)))

        class Info:
            commit_url = f"https://huggingface.co/{kwargs['repo_id']}/commit/abc123"

        return Info()


class ExplodingApi:
    def __getattr__(self, name):
        raise AssertionError(f"network method {name} called")


def test_push_records_create_repo_and_upload(exports):
    path = exports["test_resnet"][1]
    api = FakeApi()
    url = push_export(path, "someone/model", token="hf_fake", private=True, revision="v1",
                      commit_message="Add run 7", api=api)
    assert url == "https://huggingface.co/someone/model/commit/abc123"
    assert [c[0] for c in api.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert api.calls[0][1] == "someone/model" and api.calls[0][2]["private"] is True
    assert api.calls[0][2]["exist_ok"] is True
    upload = api.calls[2][2]
    assert upload["repo_id"] == "someone/model" and upload["commit_message"] == "Add run 7"
    assert upload["revision"] == "v1" and Path(upload["folder_path"]) == path
    assert upload["files"] == ["README.md", "config.json", "model.safetensors", "plots/acc.png",
                               "training_config.yaml"]


def test_push_offline_fails_cleanly_and_keeps_export(exports):
    from huggingface_hub import HfApi

    path = exports["test_resnet"][1]
    before = _tree_hash(path)
    with pytest.raises(HubPushError) as info:
        push_export(path, "someone/model", token="hf_fake", private=True, api=HfApi())
    message = str(info.value)
    assert "offline" in message and str(path) in message and "intact" in message
    assert f"python -m procrustean.hub push {path} someone/model --private" in message
    assert "\n" not in message and "hf_fake" not in message
    assert _tree_hash(path) == before


def _http_401():
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    request = httpx2.Request("POST", "https://huggingface.co/api/repos/create")
    return HfHubHTTPError("401 Unauthorized", response=httpx2.Response(401, request=request))


@pytest.mark.parametrize("error, reason", [
    (lambda: __import__("httpx2").ConnectError("Name or service not known"), "network error (ConnectError"),
    (_http_401, "refused the token (HTTP 401"),
])
def test_push_failures_become_one_clear_error(exports, error, reason):
    class FailingApi(FakeApi):
        def upload_folder(self, **kwargs):
            raise error()

    path = exports["test_resnet"][1]
    with pytest.raises(HubPushError) as info:
        push_export(path, "someone/model", token="hf_fake", api=FailingApi())
    assert reason in str(info.value) and f"intact at {path}" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_push_validates_before_network(exports, tmp_path, monkeypatch):
    path = exports["test_resnet"][1]
    from procrustean.errors import UsageError

    with pytest.raises(UsageError, match="Invalid repo id"):  # a usage error: the CLI and the recipe exit 2
        push_export(path, "not a/valid//repo", token="t", api=ExplodingApi())
    with pytest.raises(HubPushError, match="does not exist"):
        push_export(tmp_path / "missing", "someone/model", token="t", api=ExplodingApi())
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text('{"architecture": "test_resnet"}')
    with pytest.raises(HubPushError, match="model.safetensors"):
        push_export(tmp_path / "half", "someone/model", token="t", api=ExplodingApi())
    monkeypatch.delenv("HF_TOKEN", raising=False)
    from huggingface_hub import HfApi

    with pytest.raises(HubPushError, match="no Hugging Face token") as info:
        push_export(path, "someone/model", api=HfApi())
    assert "Retry with: python -m procrustean.hub push" in str(info.value)


def test_cli_exit_code_and_message(exports, tmp_path, capsys):
    assert main(["push", str(tmp_path / "missing"), "someone/model"]) == 1
    assert "does not exist" in capsys.readouterr().err
    path = exports["test_resnet"][1]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "procrustean.hub", "push", str(path), "someone/model",
                           "--token", "hf_fake", "--commit_message", "m"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: Push of") and "Traceback" not in proc.stderr
    assert f"Retry with: python -m procrustean.hub push {path} someone/model" in proc.stderr


def test_plots_write_small_pngs(tmp_path):
    from PIL import Image

    acc = [0.9, 0.8, None, 0.3, 0.1]
    names = ["airplane", "car", "bird", "cat", "deer"]
    counts = [5000, 2000, 500, 100, 50]
    history = [{"epoch": e, "train_per_class_accuracy": [min(1, 0.2 * e / (c + 1)) for c in range(5)],
                "eval_per_class_accuracy": [0.1 * e, 0.1, None, 0.0, 0.05] if e % 2 else None} for e in range(6)]
    paths = [plot_per_class_accuracy(acc, names, counts, tmp_path / "acc.png"),
             plot_training_progress(history, names, tmp_path / "progress.png", class_counts=counts),
             plot_training_progress(history, names, tmp_path / "progress_ids.png")]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size < 100_000
        with Image.open(p) as image:
            assert image.size == (600, 400)
    with pytest.raises(ValueError, match="one entry per class"):
        plot_per_class_accuracy(acc[:3], names, counts, tmp_path / "bad.png")
