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
