"""Recipe options that change training, each shown to have its effect: accumulation, the weakening stop epoch,
DRW, gradient clipping; and the line between bad input (one line, exit 2) and bugs (a traceback)."""
import json

import pytest
import torch
from safetensors.torch import load_file

from recipe_utils import ROOT, SMALL, run


def _train(imagefolder, out, *args, **kwargs):
    run(["--dataset", str(imagefolder), "--imbalance", "exp:3", "--epochs", "2", "--output_dir", str(out), "--seed", "4",
         "--verify_images", "false", "--checkpointing_steps", "no", *SMALL, *args], launcher="python", **kwargs)
    return load_file(out / "export" / "model.safetensors")


def _max_difference(a, b, parameters_only=False):
    buffers = ("running_mean", "running_var", "num_batches_tracked")  # batch-norm statistics move without gradients
    keys = [k for k in a if not (parameters_only and k.endswith(buffers))]
    return max((a[k].float() - b[k].float()).abs().max().item() for k in keys)


def _history(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_weakening_stop_epoch(imagefolder, tmp_path):
    off = _train(imagefolder, tmp_path / "off", "--weakening", "false")
    stopped_at_0 = _train(imagefolder, tmp_path / "stop0", "--weakening_stop_epoch", "0")
    stopped_at_1 = _train(imagefolder, tmp_path / "stop1", "--weakening_stop_epoch", "1")
    assert _max_difference(off, stopped_at_0) == 0  # stopped before it started: exactly the baseline
    assert _max_difference(off, stopped_at_1) > 0  # weakened during epoch 0
    assert [h["weakening"] for h in _history(tmp_path / "stop1")] == [True, False]
    assert [h["weakening"] for h in _history(tmp_path / "stop0")] == [False, False]


def test_drw_epoch_reweights_from_that_epoch(imagefolder, tmp_path):
    plain = _train(imagefolder, tmp_path / "plain", "--weakening", "false", "--epochs", "1")
    drw_later = _train(imagefolder, tmp_path / "drw1", "--weakening", "false", "--epochs", "1", "--drw_epoch", "1")
    drw_now = _train(imagefolder, tmp_path / "drw0", "--weakening", "false", "--epochs", "1", "--drw_epoch", "0")
    assert _max_difference(plain, drw_later) == 0  # DRW from epoch 1 does not touch epoch 0
    assert _max_difference(plain, drw_now) > 1e-4  # class-balanced weights from the start change the training


def test_max_grad_norm_clips_every_update(imagefolder, tmp_path):
    # with gradients clipped to 1e-6, an update moves the weights by ~lr * weight decay * w only (< 1e-4)
    two = _train(imagefolder, tmp_path / "two", "--max_grad_norm", "1e-6", "--max_train_steps", "2")
    four = _train(imagefolder, tmp_path / "four", "--max_grad_norm", "1e-6", "--max_train_steps", "4")
    free = _train(imagefolder, tmp_path / "free", "--max_train_steps", "4")
    assert _max_difference(two, four, parameters_only=True) < 1e-4
    assert _max_difference(two, free, parameters_only=True) > 1e-3


def test_gradient_accumulation_counts_optimizer_steps(imagefolder, tmp_path):
    # exp:3 of 12 per class -> 22 images, batch 8 -> 3 batches per epoch; 2 per optimizer step -> 2 steps per epoch
    _train(imagefolder, tmp_path / "acc", "--gradient_accumulation_steps", "2")
    results = json.loads((tmp_path / "acc" / "all_results.json").read_text())
    assert results["steps"] == 4 and [h["step"] for h in _history(tmp_path / "acc")] == [2, 4]


def test_a_bug_inside_the_training_loop_keeps_its_traceback(imagefolder, tmp_path):
    proc = run(["--dataset", str(imagefolder), "--imbalance", "none", "--epochs", "1", "--output_dir",
                str(tmp_path / "run"), "--verify_images", "false", *SMALL], launcher="python", check=False,
               faults=["--raise_at_batch", "2"])
    assert proc.returncode not in (0, 2)
    assert "Traceback" in proc.stderr and "KeyError: 'simulated bug inside the training loop'" in proc.stderr


def test_an_invalid_repo_id_is_refused_before_anything_runs(imagefolder, tmp_path):
    out = tmp_path / "run"
    proc = run(["--dataset", str(imagefolder), "--output_dir", str(out), "--push_to_hub", "not a/valid//repo", *SMALL],
               launcher="python", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: Invalid repo id")
    assert not out.exists()  # refused while parsing the options: no data read, nothing trained or written


@pytest.mark.parametrize("argv, error, message", [
    (["--weakening_rule", "sqrt"], "UsageError", "Unknown weakening rule 'sqrt'"),
    (["--weakening_partner", "minor"], "UsageError", "Unknown partner rule 'minor'"),
    (["--lam_min", "0.9", "--lam_max", "0.2"], "UsageError", "lam_range"),
    (["--weakening_location", "logits"], "UsageError", "use auto .*, input, stage:K"),
    (["--loss", "hinge"], "UsageError", "Unknown loss 'hinge'"),
    (["--crop_pct", "1.5"], "UsageError", "--crop_pct must be in"),
    (["--interpolation", "lanczos9"], "UsageError", "--interpolation 'lanczos9' is not one of"),
    (["--progress_momentum", "1.5"], "UsageError", "progress momentum"),
    (["--push_to_hub", "a/b/c"], "UsageError", "Invalid repo id"),
    (["--config", "/nonexistent.yaml"], "MissingInputError", "does not exist"),
])
def test_option_errors_are_usage_errors_naming_the_fix(argv, error, message):
    import procrustean.errors as errors
    from procrustean.train.config import parse_config

    with pytest.raises(getattr(errors, error), match=message) as info:
        parse_config(argv)
    assert isinstance(info.value, errors.UsageError)


def test_library_validation_raises_usage_errors(tmp_path):
    from datasets import Dataset

    import procrustean
    from procrustean.data import load_image_dataset, make_imbalanced
    from procrustean.errors import MissingColumnError, MissingInputError, UsageError

    with pytest.raises(UsageError, match="Malformed imbalance spec"):
        procrustean.parse_imbalance("exp")
    with pytest.raises(MissingInputError, match="No such file or folder"):
        load_image_dataset(str(tmp_path / "missing" / "data.parquet"))
    with pytest.raises(MissingColumnError, match="Label column 'y' not found"):
        make_imbalanced(Dataset.from_dict({"label": [0, 1]}), "exp:2", label_column="y")
    with pytest.raises(UsageError, match="labels must lie in"):
        procrustean.WeakeningPolicy([3, 3]).plan(torch.tensor([0, 2]))


def test_channels_last_trains_the_same_model(imagefolder, tmp_path):
    """Only the memory layout changes: the weights agree with the default layout up to float rounding."""
    default = _train(imagefolder, tmp_path / "nchw", "--epochs", "1")
    channels_last = _train(imagefolder, tmp_path / "nhwc", "--epochs", "1", "--channels_last", "true",
                           "--checkpointing_steps", "epoch")  # checkpoints and the export store dense tensors
    assert _max_difference(default, channels_last) < 1e-3
    assert (tmp_path / "nhwc" / "checkpoints").is_dir()


@pytest.mark.parametrize("config_file", sorted(p.name for p in (ROOT / "recipes" / "configs").glob("*.yaml")))
def test_every_shipped_config_parses_and_weakens_with_the_progress_rule(config_file):
    """The defaults docs/RESULTS.md cites: the progress rule everywhere, LDAM-DRW only with its 200-epoch schedule;
    fine-tuning with logit adjustment alone (the weakening on top of it was below it on both families fine-tuned)."""
    from procrustean.train.config import parse_config

    config = parse_config(["--config", str(ROOT / "recipes" / "configs" / config_file)])
    assert config.weakening is not config.pretrained and config.weakening_rule == "progress"
    if config.loss == "ldam":
        assert config.epochs == 200 and config.drw_epoch == config.weakening_stop_epoch == config.lr_decay_epochs[0]
        assert json.loads(config.model_kwargs) == {"normed_head": True}
    else:
        assert config.loss == "logit_adjusted" and config.drw_epoch is None


def test_none_unsets_an_option_a_config_file_set():
    from procrustean.train.config import parse_config

    long_config = str(ROOT / "recipes" / "configs" / "cifar10_lt_step100.yaml")
    config = parse_config(["--config", long_config, "--loss", "logit_adjusted", "--drw_epoch", "none",
                           "--weakening_stop_epoch", "None", "--model_kwargs", "none"])
    assert (config.drw_epoch, config.weakening_stop_epoch, config.model_kwargs) == (None, None, None)
    with pytest.raises(SystemExit):  # anything else still has to be a number
        parse_config(["--drw_epoch", "later"])


def test_fine_tuning_a_local_dir_source_keeps_its_architecture_and_can_start_a_new_head(tmp_path):
    """A source exported with constructor args (a reduced ViT) is rebuilt at its own shape, the export of the
    fine-tuned model carries those args on, and --reset_classifier replaces the source's head."""
    import timm
    import torch
    from timm.models import save_for_hf

    from procrustean.train.config import parse_config
    from procrustean.train.setup import build_model, model_constructor_args

    vit_args = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}
    source = timm.create_model("vit_tiny_patch16_224", num_classes=4, in_chans=1, **vit_args)
    save_for_hf(source, tmp_path / "source", model_args={"in_chans": 1, **vit_args}, safe_serialization=True)
    scratch = parse_config(["--model", "vit_tiny_patch16_224", "--model_kwargs", '{"depth": 2}'])
    assert model_constructor_args(scratch) == {"depth": 2}
    common = ["--model", f"local-dir:{tmp_path / 'source'}", "--pretrained", "true", "--in_chans", "1"]
    kept = build_model(parse_config(common), num_classes=4)
    assert len(kept.blocks) == 2 and kept.embed_dim == 32
    carried = model_constructor_args(parse_config(common))  # timm >= 1.0.31 records more (global_pool, ...)
    assert {k: carried[k] for k in ("in_chans", "patch_size", "depth", "embed_dim", "num_heads")} == \
        {"in_chans": 1, **{k: v for k, v in vit_args.items() if k != "img_size"}}
    assert carried["img_size"] in (32, [32, 32]) and "num_classes" not in carried
    assert torch.equal(kept.head.weight, source.head.weight)  # same class count: timm loads the head
    torch.manual_seed(0)
    fresh = build_model(parse_config([*common, "--reset_classifier", "true"]), num_classes=4)
    assert torch.equal(fresh.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    assert not torch.equal(fresh.head.weight, source.head.weight)


def test_torch_compile_resumes_exactly_and_exports_the_plain_backbone(imagefolder, tmp_path):
    """--torch_compile through Accelerate: checkpoints hold the plain model, a resume from one of them ends on the
    uninterrupted compiled run's weights, and the export is the plain backbone."""
    from recipe_utils import assert_same_weights

    # 36 images, batch 8: 5 steps per epoch (the last batch smaller), 2 epochs; resumed from step 6, mid-epoch 2
    common = ["--dataset", str(imagefolder), "--imbalance", "none", "--epochs", "2", "--checkpointing_steps", "2",
              "--checkpoints_total_limit", "10", "--seed", "3", "--verify_images", "false", "--torch_compile", "true",
              *SMALL]
    full = tmp_path / "full"
    run([*common, "--output_dir", str(full)], launcher="python")
    checkpoint = full / "checkpoints" / "step_00000006"
    state = load_file(checkpoint / "model.safetensors")
    assert "progress.seen" in state and "generator_state.state" in state
    assert not any(key.startswith("_orig_mod") for key in state)
    resumed = tmp_path / "resumed"
    run([*common, "--output_dir", str(resumed), "--resume_from_checkpoint", str(checkpoint)], launcher="python")
    assert_same_weights(full, resumed)
    exported = load_file(full / "export" / "model.safetensors")
    assert not any(key.startswith(("_orig_mod", "backbone.", "progress.")) for key in exported)
    assert "torch_compile: true" in (full / "training_config.yaml").read_text()


def test_torch_compile_options_follow_transformers():
    from procrustean.errors import UsageError
    from procrustean.train.config import parse_config

    assert parse_config([]).torch_compile is False
    assert parse_config(["--torch_compile_mode", "max-autotune"]).torch_compile is True  # a mode turns it on
    assert parse_config(["--torch_compile_backend", "aot_eager"]).torch_compile is True
    with pytest.raises(UsageError, match="--torch_compile_mode"):
        parse_config(["--torch_compile_mode", "fastest"])
    with pytest.raises(UsageError, match="--torch_compile_backend"):
        parse_config(["--torch_compile_backend", "inductorr"])


def test_fine_tuning_resolves_auto_from_the_fine_tuning_map_and_says_what_was_measured(imagefolder, tmp_path):
    """--pretrained true: auto takes the fine-tuning location (a family without a fine-tuning ablation of its own gets
    the fine-tuning rule, pre_logits), the start-up lines say so, and the run records it."""
    import timm
    from timm.models import save_for_hf

    import procrustean  # noqa: F401  (registers resnet8_cifar)

    source = timm.create_model("resnet8_cifar", num_classes=5)
    save_for_hf(source, tmp_path / "source", model_args={"num_classes": 5}, safe_serialization=True)
    out = tmp_path / "tuned"
    proc = run(["--dataset", str(imagefolder), "--imbalance", "exp:3", "--epochs", "1", "--output_dir", str(out),
                "--verify_images", "false", "--checkpointing_steps", "no", *SMALL,
                "--model", f"local-dir:{tmp_path / 'source'}", "--pretrained", "true", "--reset_classifier", "true"],
               launcher="python")
    assert "at pre_logits (auto: the rule for fine-tuned backbones" in proc.stdout
    assert ("Measured for CifarResNet: nothing for this family itself in fine-tuning; on the families fine-tuned"
            in proc.stdout) and "--weakening false" in proc.stdout
    assert json.loads((out / "all_results.json").read_text())["weakening_location"] == "pre_logits"
