"""Progress output that suits a log file: one line per logging step when stderr is not a terminal."""
import io
import os
import subprocess
import sys

from recipe_utils import ROOT, SMALL, TRAIN

from procrustean.train.progress_log import TrainingProgress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_one_line_per_logging_step_and_nothing_in_between():
    stream = io.StringIO()
    with TrainingProgress(100, mode="auto", stream=stream) as progress:
        for step in range(1, 101):
            progress.update()
            if step % 10 == 0:
                progress.log(step, epoch=step // 50, loss=1.0 / step, lr=0.1, samples=64 * step)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in stream.getvalue()
    assert lines[0].startswith("step 10/100 (10.0%) | epoch 0 | loss 0.1000 | lr 0.1 | ")
    assert lines[-1].startswith("step 100/100 (100.0%) | epoch 2 | loss 0.0100")
    assert all(" samples/s | elapsed " in line and " | ETA " in line for line in lines)


def test_on_a_terminal_a_live_bar_and_lines_when_asked():
    terminal = _Terminal()
    with TrainingProgress(20, stream=terminal) as progress:
        progress.update(20)
        progress.log(20, epoch=1, loss=0.5, lr=0.1, samples=640)
    assert "\r" in terminal.getvalue() and "20/20" in terminal.getvalue() and "loss=0.500" in terminal.getvalue()
    forced = _Terminal()
    with TrainingProgress(20, stream=forced, mode="lines") as progress:
        progress.update(20)
        progress.log(20, epoch=1, loss=0.5, lr=0.1, samples=640)
    assert forced.getvalue().count("\n") == 1 and "\r" not in forced.getvalue()


def _train_with_stderr_to_a_file(imagefolder, tmp_path, logging_steps):
    """The recipe with stderr redirected to a file, as under SLURM or nohup: the log's progress lines."""
    log = tmp_path / f"log-{logging_steps}.txt"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "w") as stderr:
        subprocess.run([sys.executable, TRAIN, "--dataset", str(imagefolder), "--imbalance", "none", "--verify_images",
                        "false", "--checkpointing_steps", "no", "--max_train_steps", "20", "--logging_steps",
                        str(logging_steps), "--output_dir", str(tmp_path / f"run-{logging_steps}"), *SMALL],
                       stdout=subprocess.DEVNULL, stderr=stderr, env=env, cwd=ROOT, check=True, timeout=600)
    text = log.read_text()
    return text, [line for line in text.splitlines() if line.startswith("step ")]


def test_a_run_logged_to_a_file_grows_with_logging_steps_not_with_time(imagefolder, tmp_path):
    every_step = _train_with_stderr_to_a_file(imagefolder, tmp_path, 1)[1]
    text_5, every_5 = _train_with_stderr_to_a_file(imagefolder, tmp_path, 5)
    assert "\r" not in text_5  # no bar updates at all
    assert len(every_step) == 20 and len(every_5) == 4  # 20 steps: one line per logging step
    assert [line.split(" (")[0] for line in every_5] == ["step 5/20", "step 10/20", "step 15/20", "step 20/20"]
    assert sum(len(line) + 1 for line in every_5) < 4 * 140  # about a hundred bytes a line
