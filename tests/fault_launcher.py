"""Run recipes/train.py with faults and reports injected from outside (the tests' launcher; never used in production).

    python tests/fault_launcher.py [--kill_after_checkpoint N] [--kill_in_checkpoint N] [--rank_report DIR] \
        -- [recipe options]
    accelerate launch ... tests/fault_launcher.py ... -- [recipe options]

The recipe itself has no test switches: this launcher patches library functions the recipe calls,
then runs the recipe as ``__main__``:

* ``--kill_after_checkpoint N``: SIGKILL right after the checkpoint of step N is complete (every rank);
* ``--kill_in_checkpoint N``: SIGKILL after accelerate wrote the state of step N into its temporary
  folder, before the rename that publishes it;
* ``--raise_at_batch N``: a ``KeyError`` (a stand-in for a bug) inside the training loop at batch N;
* ``--corrupt_after_checkpoint N FILE``: truncate FILE (an image of the data set) right after the checkpoint of
  step N is complete, so a later read fails (an image that breaks during training);
* ``--rank_report DIR``: at the end of training each rank writes ``DIR/rank<i>.json`` (parameter
  digest, class counts, probabilities, progress statistics, the largest plan and partner index it
  applied, epoch history), for the distributed tests to compare.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import runpy
import signal
import sys
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "train.py"


def parameter_digest(model) -> str:
    import torch

    """sha256 over all parameters and buffers in state_dict order (bitwise identity across ranks)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def install_kills(after_checkpoint: int | None, in_checkpoint: int | None) -> None:
    import accelerate

    import procrustean.train.checkpoints as checkpoints

    if after_checkpoint is not None:
        save = checkpoints.save_checkpoint

        def save_then_kill(accelerator, output_dir, step, *args, **kwargs):
            path = save(accelerator, output_dir, step, *args, **kwargs)
            if step == after_checkpoint:
                os.kill(os.getpid(), signal.SIGKILL)
            return path

        checkpoints.save_checkpoint = save_then_kill
    if in_checkpoint is not None:
        save_state = accelerate.Accelerator.save_state

        def save_state_then_kill(self, output_dir=None, *args, **kwargs):
            result = save_state(self, output_dir, *args, **kwargs)
            if Path(str(output_dir)).name == f".tmp-step_{in_checkpoint:08d}":
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        accelerate.Accelerator.save_state = save_state_then_kill


def install_corruption(after_checkpoint: int, file: Path) -> None:
    import procrustean.train.checkpoints as checkpoints

    save = checkpoints.save_checkpoint

    def save_then_corrupt(accelerator, output_dir, step, *args, **kwargs):
        path = save(accelerator, output_dir, step, *args, **kwargs)
        if step == after_checkpoint:
            file.write_bytes(file.read_bytes()[:40])
        return path

    checkpoints.save_checkpoint = save_then_corrupt


def install_bug(at_batch: int) -> None:
    from procrustean.train.distributed import NonFiniteWatch

    update, calls = NonFiniteWatch.update, [0]

    def update_until(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == at_batch:
            raise KeyError("simulated bug inside the training loop")
        return update(self, *args, **kwargs)

    NonFiniteWatch.update = update_until


def install_rank_report(folder: Path) -> None:
    import accelerate

    from procrustean import WeakeningPolicy
    from procrustean.train.state import RunState

    applied = {"max_batch": 0, "max_partner": -1}
    states = []
    run_state_init = RunState.__init__

    def recording_init(self, *args, **kwargs):
        run_state_init(self, *args, **kwargs)
        states.append(self)

    RunState.__init__ = recording_init
    resolve = WeakeningPolicy.resolve

    def recording_resolve(self, draws, labels):
        plan = resolve(self, draws, labels)
        applied["max_batch"] = max(applied["max_batch"], len(plan))
        applied["max_partner"] = max(applied["max_partner"], int(plan.partner.max()))
        return plan

    WeakeningPolicy.resolve = recording_resolve
    end_training = accelerate.Accelerator.end_training

    def end_training_with_report(self):
        model = self.unwrap_model(self._models[0])
        state = states[-1]
        policy = model.policy
        report = {
            "process_index": self.process_index, "num_processes": self.num_processes,
            "parameter_digest": parameter_digest(model.backbone),
            "class_counts": policy.class_counts.tolist() if policy else None,
            "probabilities": policy.probabilities.tolist() if policy else None,
            "progress_seen": model.progress.seen.tolist() if model.progress is not None else None,
            "max_plan_batch": applied["max_batch"], "max_partner": applied["max_partner"],
            "steps": state.step, "train_accuracy_history": [h["train_image_averaged_accuracy"] for h in state.history],
            "eval_num_samples": [h.get("eval_num_samples") for h in state.history],
        }
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"rank{self.process_index}.json").write_text(json.dumps(report, indent=2))
        return end_training(self)

    accelerate.Accelerator.end_training = end_training_with_report


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--kill_after_checkpoint", type=int, default=None)
    parser.add_argument("--kill_in_checkpoint", type=int, default=None)
    parser.add_argument("--raise_at_batch", type=int, default=None)
    parser.add_argument("--rank_report", type=Path, default=None)
    parser.add_argument("--corrupt_after_checkpoint", nargs=2, metavar=("N", "FILE"), default=None)
    # the launcher's flags, then "--" (launchers may drop it), then the recipe's options
    args, recipe_args = parser.parse_known_args(sys.argv[1:])
    recipe_args = recipe_args[1:] if recipe_args[:1] == ["--"] else recipe_args
    install_kills(args.kill_after_checkpoint, args.kill_in_checkpoint)
    if args.raise_at_batch is not None:
        install_bug(args.raise_at_batch)
    if args.rank_report is not None:
        install_rank_report(args.rank_report)
    if args.corrupt_after_checkpoint is not None:
        install_corruption(int(args.corrupt_after_checkpoint[0]), Path(args.corrupt_after_checkpoint[1]))
    sys.argv = [str(RECIPE), *recipe_args]
    runpy.run_path(str(RECIPE), run_name="__main__")


if __name__ == "__main__":
    main()
