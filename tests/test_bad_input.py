"""Bad input met late (an unreadable image during training, a resume with a differently shaped model) and in
config files: each one line `error: ...`, exit 2, naming the problem and the fix; nothing lost."""
import shutil

import pytest

from recipe_utils import SMALL, run


def _refused(proc):
    """The one-line error of a refused run (exit 2, no traceback)."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def _copy(imagefolder, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(imagefolder, root)
    return root


@pytest.mark.parametrize("data_path", ["pil", "in_memory"])
def test_unreadable_image_without_verification_names_index_path_and_the_check(imagefolder, tmp_path, data_path):
    root = _copy(imagefolder, tmp_path)
    bad = root / "train" / "bee" / "3.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated: the header opens, the pixels do not
    out = tmp_path / "run"
    proc = run(["--dataset", str(root), "--imbalance", "none", "--epochs", "1", "--verify_images", "false",
                "--data_path", data_path, "--output_dir", str(out), *SMALL], launcher="python", check=False)
    line = _refused(proc)
    assert "Split 'train', index 17" in line  # bee is class 1 (12 images each): its 6th file (0, 1, 10, 11, 2, 3, ...)
    assert str(bad) in line and "--verify_images true" in line
    assert not (out / "checkpoints").exists() and not (out / "export").exists()


def test_an_image_that_breaks_during_training_leaves_the_last_checkpoint_to_resume(imagefolder, tmp_path):
    """The image breaks after the first epoch's checkpoint: the run stops naming it and that checkpoint, which
    resumes to the end once the image is fixed."""
    root = _copy(imagefolder, tmp_path)
    bad = root / "train" / "ant" / "0.png"
    original = bad.read_bytes()
    out = tmp_path / "run"
    args = ["--dataset", str(root), "--imbalance", "none", "--epochs", "2", "--output_dir", str(out), *SMALL]
    proc = run(args, launcher="python", check=False, faults=["--corrupt_after_checkpoint", "5", str(bad)])
    line = _refused(proc)  # 36 images, batch 8: 5 steps per epoch, the checkpoint of epoch 0 is step 5
    checkpoint = out / "checkpoints" / "step_00000005"
    assert str(bad) in line and "during training" in line and "passed --verify_images's check" in line
    assert f"the last checkpoint, {checkpoint}, is intact" in line and "--resume_from_checkpoint latest" in line
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000005"]
    assert not (out / "export").exists()
    bad.write_bytes(original)
    run([*args, "--resume_from_checkpoint", "latest"], launcher="python")
    assert (out / "export" / "model.safetensors").is_file()


def test_unreadable_image_read_by_a_dataloader_worker_is_still_one_line(imagefolder, tmp_path):
    root = _copy(imagefolder, tmp_path)
    bad = root / "train" / "cat" / "2.png"
    bad.write_bytes(b"not an image")
    proc = run(["--dataset", str(root), "--imbalance", "none", "--epochs", "1", "--verify_images", "false",
                "--num_workers", "1", "--output_dir", str(tmp_path / "run"), *SMALL], launcher="python", check=False)
    line = _refused(proc)
    assert str(bad) in line and "UnidentifiedImageError" in line and "index" in line


@pytest.mark.parametrize("text, where, seen", [
    ("epochs: 3\nlr_decay_epochs: [1, 2\nseed: 1\n", "line 3, column 5", "expected ',' or ']', but got ':'"),
    ("epochs: 3\n  lr: 0.1\n", "line 2, column 5", "mapping values are not allowed here"),
    ("epochs: 3\n\tlr: 0.1\n", "line 2, column 1", "found character '\\t' that cannot start any token"),
    ('dataset: "fashion_mnist\n', "line 2, column 1", "found unexpected end of stream"),
])
def test_a_yaml_syntax_error_names_file_line_and_what_the_parser_saw(tmp_path, text, where, seen):
    from procrustean.errors import UsageError
    from procrustean.train.config import parse_config

    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        parse_config(["--config", str(path)])
    message = str(info.value)
    assert message.startswith(f"Config file {path} is not valid YAML: {where}: {seen}")
    assert "\n" not in message and "option: value" in message


@pytest.mark.parametrize("text, message", [
    ("epochs: [1, 2]\n", "'epochs' must be an integer, got [1, 2] (list); write e.g. 'epochs: 30'"),
    ("epochs: 1.5\n", "'epochs' must be an integer, got 1.5 (float)"),
    ("max_train_steps: true\n", "'max_train_steps' must be an integer, got True (bool)"),
    ("seed:\n", "'seed' has no value; give it an integer or remove the line"),
    ("mean: [0.5, x]\n", "'mean' must be a list of numbers, got [0.5, 'x']"),
    ("dataset: [a, b]\n", "'dataset' must be a string"),
    ("- epochs: 3\n", "must hold a mapping of option: value"),
    ("epoch: 3\n", "Unknown option(s) in"),
])
def test_config_file_values_of_the_wrong_type_are_refused_naming_the_option(tmp_path, text, message):
    from procrustean.errors import UsageError
    from procrustean.train.config import parse_config

    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        parse_config(["--config", str(path)])
    assert message in str(info.value) and str(path) in str(info.value)


def test_config_file_values_the_command_line_would_accept_are_read_as_it_reads_them(tmp_path):
    from procrustean.train.config import parse_config

    path = tmp_path / "config.yaml"
    path.write_text("checkpointing_steps: 500\nlr: 1e-3\nlr_decay_epochs: 7\nmean: 0.5\nmodel_kwargs: '{\"a\": 1}'\n")
    config = parse_config(["--config", str(path)])
    assert (config.checkpointing_steps, config.lr, config.lr_decay_epochs, config.mean) == ("500", 1e-3, [7], [0.5])
    path.write_bytes(b"epochs: \xff\xfe\n")
    from procrustean.errors import UsageError

    with pytest.raises(UsageError, match="is not UTF-8 text"):
        parse_config(["--config", str(path)])


@pytest.fixture(scope="module")
def finished_run(imagefolder, tmp_path_factory):
    """A one-epoch run with its checkpoint (step 5), to resume with other options."""
    out = tmp_path_factory.mktemp("resume") / "run"
    run(["--dataset", str(imagefolder), "--imbalance", "none", "--epochs", "1", "--output_dir", str(out), *SMALL],
        launcher="python")
    return out


@pytest.mark.parametrize("args, said", [
    (["--model", "resnet20_cifar"], ["--model 'resnet8_cifar' in the checkpoint, 'resnet20_cifar' now",
                                     "tensor(s) of this run are not in the checkpoint"]),
    (["--in_chans", "1"], ["--in_chans 3 in the checkpoint, 1 now", "backbone.conv1.weight is [16, 3, 3, 3] in the "
                                                                    "checkpoint, [16, 1, 3, 3] now"]),
    (["--weakening_rule", "power"], ["--weakening_rule 'progress' in the checkpoint, 'power' now",
                                     "tensor(s) of the checkpoint are not in this run (e.g. progress."]),
    (["--model_kwargs", '{"normed_head": true}'], ["--model_kwargs None in the checkpoint, '{\"normed_head\": true}' now"]),
    (["--optimizer", "adamw"], ["the optimizer's state is of another kind",
                                "--optimizer 'sgd' in the checkpoint, 'adamw' now"]),
    (["--weight_decay", "0"], ["the optimizer's parameter groups hold", "--weight_decay 0.0002 in the checkpoint, 0.0 now"]),
])
def test_resume_with_a_differently_shaped_state_names_the_option_both_values_and_the_way_out(finished_run, imagefolder,
                                                                                             args, said):
    before = {p: p.stat().st_mtime_ns for p in finished_run.rglob("*") if p.is_file()}
    proc = run(["--dataset", str(imagefolder), "--imbalance", "none", "--epochs", "2", "--output_dir",
                str(finished_run), "--resume_from_checkpoint", "latest", *SMALL, *args], launcher="python", check=False)
    line = _refused(proc)
    assert f"--resume_from_checkpoint {finished_run / 'checkpoints' / 'step_00000005'}: this run's state" in line
    assert all(s in line for s in said), line
    assert "Resume with the checkpoint's options, or start a new run: another --output_dir, or --overwrite_output_dir" \
        in line
    assert {p: p.stat().st_mtime_ns for p in finished_run.rglob("*") if p.is_file()} == before  # nothing touched


def test_resume_with_more_classes_names_the_classifier_and_the_data(finished_run, imagefolder, tmp_path):
    root = _copy(imagefolder, tmp_path)
    for split in ("train", "test"):
        shutil.copytree(root / split / "cat", root / split / "dog")
    proc = run(["--dataset", str(root), "--imbalance", "none", "--epochs", "2", "--output_dir", str(finished_run),
                "--resume_from_checkpoint", "latest", *SMALL], launcher="python", check=False)
    line = _refused(proc)
    assert "backbone.fc.weight is [3, 64] in the checkpoint, [4, 64] now" in line
    assert f"--dataset '{imagefolder}' in the checkpoint, '{root}' now" in line


def test_resume_that_would_weaken_elsewhere_names_both_locations(finished_run, imagefolder):
    """The location keeps the state's shape, so only the run's record of it (auto resolved) can tell."""
    before = {p: p.stat().st_mtime_ns for p in finished_run.rglob("*") if p.is_file()}
    proc = run(["--dataset", str(imagefolder), "--imbalance", "none", "--epochs", "2", "--output_dir",
                str(finished_run), "--resume_from_checkpoint", "latest", *SMALL, "--weakening_location", "stage:2"],
               launcher="python", check=False)
    line = _refused(proc)
    assert "the checkpoint's run weakened at stage:1, and this run would weaken at stage:2" in line
    assert "Resume with --weakening_location stage:1, or start a new run." in line
    assert {p: p.stat().st_mtime_ns for p in finished_run.rglob("*") if p.is_file()} == before  # nothing touched


def test_resume_with_options_that_keep_the_state_continues_and_says_what_changed(finished_run, imagefolder, tmp_path):
    resumed = tmp_path / "resumed"
    shutil.copytree(finished_run, resumed)
    proc = run(["--dataset", str(imagefolder), "--imbalance", "none", "--epochs", "2", "--output_dir", str(resumed),
                "--resume_from_checkpoint", "latest", *SMALL, "--lr", "0.01"], launcher="python")
    assert "Changed since the checkpoint (they apply from the resumed step): --epochs 1 in the checkpoint, 2 now; " \
           "--lr 0.05 in the checkpoint, 0.01 now" in proc.stdout
    assert (resumed / "checkpoints" / "step_00000010").is_dir()


@pytest.mark.parametrize("argv, message", [
    (["--lr", "0"], "--lr must be > 0, got 0.0"),
    (["--momentum", "1.5"], "--momentum must be >= 0 and < 1, got 1.5"),
    (["--weight_decay", "-1"], "--weight_decay must be >= 0"),
    (["--seed", "-1"], "--seed must be >= 0 and <= 4294967295, got -1"),
    (["--drw_epoch", "-1"], "--drw_epoch must be >= 0"),
    (["--checkpoints_total_limit", "0"], "--checkpoints_total_limit must be >= 1 (none: no limit), got 0"),
    (["--drw_beta", "1"], "--drw_beta must be >= 0 and < 1"),
    (["--img_size", "2"], "--img_size must be >= 8, got 2"),
    (["--in_chans", "2"], "--in_chans must be 1 (grey) or 3 (RGB), got 2"),
    (["--mean", "0.5", "0.5"], "--mean has 2 values but --in_chans is 3: give 1 or 3"),
    (["--std", "0"], "--std values must be > 0"),
    (["--lr_decay_epochs", "30", "20"], "--lr_decay_epochs must be increasing epoch numbers >= 0, got [30, 20]"),
    (["--optimizer", "adamx"], "--optimizer 'adamx' is not a timm optimizer (did you mean"),
    (["--report_to", "tensorbord"], "--report_to 'tensorbord': unknown tracker(s) ['tensorbord']"),
    (["--dataset", " "], "--dataset is empty"),
    (["--progress_display", "quiet"], "--progress_display 'quiet' is not one of ['auto', 'bar', 'lines']"),
])
def test_options_out_of_their_meaning_are_refused_while_parsing(argv, message):
    from procrustean.errors import UsageError
    from procrustean.train.config import parse_config

    with pytest.raises(UsageError) as info:
        parse_config(argv)
    assert message in str(info.value)


@pytest.mark.parametrize("args, message", [
    (["--model_kwargs", '{"depth": 3}'], "--model resnet8_cifar does not take an argument it was given"),
    (["--pretrained", "true"], "--pretrained true: timm has no pretrained weights for resnet8_cifar"),
    (["--model", "local-dir:/nonexistent/export"], "/nonexistent/export is not a model export (no config.json"),
    (["--model", "hf-hub:someone/not-cached"], "its files are not in the local Hugging Face cache and the Hub cannot "
                                               "be reached (offline): download it once online"),
])
def test_models_that_cannot_be_built_are_refused_naming_the_option(imagefolder, tmp_path, args, message):
    proc = run(["--dataset", str(imagefolder), "--imbalance", "none", "--output_dir", str(tmp_path / "run"), *SMALL,
                *args], launcher="python", check=False, env_extra={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)})
    assert message in _refused(proc)


def test_an_image_size_the_model_cannot_take_is_refused_before_the_data_is_read(imagefolder, tmp_path):
    """ConvNeXt downsamples by 32 with stride-2 windows: at 16 px its third downsampling has a 1x1 map."""
    proc = run(["--dataset", str(imagefolder), "--imbalance", "none", "--output_dir", str(tmp_path / "run"), *SMALL,
                "--model", "convnext_atto"], launcher="python", check=False)
    line = _refused(proc)
    assert "--model convnext_atto cannot take 16x16 images" in line and "Pass a larger --img_size" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_config_folder_and_a_class_order_that_is_not_a_permutation_are_named(tmp_path):
    from datasets import Dataset

    from procrustean.data import make_imbalanced
    from procrustean.errors import UsageError
    from procrustean.train.config import parse_config

    with pytest.raises(UsageError, match="is a folder; pass the YAML file"):
        parse_config(["--config", str(tmp_path)])
    labels = Dataset.from_dict({"label": [0] * 4 + [1] * 4 + [2] * 4})
    with pytest.raises(UsageError, match=r"must be a permutation of the 3 class ids 0..2 .*got \[0, 0, 1\]"):
        make_imbalanced(labels, "step:2", class_order=[0, 0, 1])


def test_a_weakening_location_the_model_lacks_lists_the_ones_it_has(imagefolder, tmp_path):
    proc = run(["--dataset", str(imagefolder), "--imbalance", "none", "--output_dir", str(tmp_path / "run"), *SMALL,
                "--weakening_location", "stage:9"], launcher="python", check=False)
    assert "'stage:9' is not supported for CifarResNet; supported: ['input', 'stage:0'" in _refused(proc)


def test_the_resume_check_reads_keys_saved_through_ddp_or_torch_compile(tmp_path):
    """accelerate saves the prepared model's state as it is: DDP's module. and torch.compile's _orig_mod. prefixes
    must not read as a different model."""
    import torch
    from safetensors.torch import save_file

    from procrustean.errors import UsageError
    from procrustean.train.resume_check import check_model_fits
    from procrustean.train.config import TrainConfig

    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    for i, prefix in enumerate(("module.", "_orig_mod.", "module._orig_mod.", "")):
        folder = tmp_path / f"checkpoint{i}"
        folder.mkdir()
        save_file({f"{prefix}{k}": v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
        check_model_fits(folder, TrainConfig(), model)
    with pytest.raises(UsageError, match=r"0.weight is \[3, 4\] in the checkpoint, \[2, 4\] now"):
        check_model_fits(folder, TrainConfig(), torch.nn.Sequential(torch.nn.Linear(4, 2)))
