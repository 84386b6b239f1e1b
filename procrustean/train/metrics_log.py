"""Per-epoch metrics: ``metrics.jsonl`` + ``metrics.csv`` (fixed columns) and Accelerate's trackers."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Dict, List, Tuple


from .._atomic import atomic_write_text
from ..metrics import SCALAR_METRICS
from .state import RunState


class MetricsLog:
    """metrics.jsonl + metrics.csv (one row per epoch) and the accelerate trackers, main process only."""

    SCALARS = tuple(key for key, _ in SCALAR_METRICS)

    COLUMNS = ("epoch", "step", "lr", "weakening", "train_image_averaged_accuracy", "train_class_averaged_accuracy",
               *(f"eval_{k}" for k in SCALARS), "eval_num_samples", "train_clean_class_averaged_accuracy")

    def __init__(self, output_dir: Path, accelerator: Any):
        self.output_dir, self.accelerator = Path(output_dir), accelerator

    def restore(self, history: List[Dict[str, Any]]) -> None:
        """After a resume: rewrite the per-epoch files from the checkpoint's history, so that epochs
        logged after the checkpoint (and re-run now) are not listed twice."""
        if not self.accelerator.is_main_process:
            return
        atomic_write_text(self.output_dir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
        csv_path = self.output_dir / "metrics.csv"
        if csv_path.exists():
            csv_path.unlink()
        for entry in history:
            self._append_csv(entry)

    def _append_csv(self, row: Dict[str, Any]) -> None:
        csv_path = self.output_dir / "metrics.csv"
        new = not csv_path.exists()
        with open(csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self.COLUMNS), restval="", extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def write_json(self, name: str, payload: Any) -> None:
        if self.accelerator.is_main_process:
            atomic_write_text(self.output_dir / name, json.dumps(payload, indent=2))

    @staticmethod
    def tracker_config(config: Any) -> Dict[str, Any]:
        return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in config.to_dict().items()}

    def epoch(self, state: RunState, epoch: int, train: Dict[str, Any], evaluation: Dict[str, Any], lr: float,
              weakening: bool) -> None:
        row: Dict[str, Any] = {"epoch": epoch, "step": state.step, "lr": lr, "weakening": weakening,
                               "train_image_averaged_accuracy": train["image_averaged_accuracy"],
                               "train_class_averaged_accuracy": train["class_averaged_accuracy"]}
        row.update({f"eval_{k}": evaluation.get(k) for k in self.SCALARS if k in evaluation})
        if "num_samples" in evaluation:
            row["eval_num_samples"] = evaluation["num_samples"]
        if train.get("clean_class_averaged_accuracy") is not None:
            row["train_clean_class_averaged_accuracy"] = train["clean_class_averaged_accuracy"]
        state.history.append({**row, "train_per_class_accuracy": train["per_class_accuracy"],
                              "eval_per_class_accuracy": evaluation.get("per_class_accuracy"),
                              **{f"train_{k}": train[k] for k in ("clean_per_class_accuracy", "feature_gradient_norm",
                                                                   "progress_accuracy", "weakening_probabilities")
                                 if k in train}})
        if not self.accelerator.is_main_process:
            return
        from tqdm.auto import tqdm

        tqdm.write(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()
                                                 if isinstance(v, float) and k != "lr"))  # not inside the bar
        scalars = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        scalars.update({f"train_class_{c}_accuracy": a for c, a in enumerate(train["per_class_accuracy"])
                        if a is not None})
        if self.accelerator.log_with:
            self.accelerator.log(scalars, step=state.step)
        with open(self.output_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(state.history[-1]) + "\n")
        self._append_csv(row)  # fixed columns: epochs without evaluation leave the eval cells empty

    def non_finite_loss(self, state: RunState, where: Tuple[int, int, int]) -> int:
        epoch, step, batch = where
        self.accelerator.print(
            f"ERROR: the loss became non-finite (nan or inf) at step {step} (epoch {epoch}, batch {batch} of the "
            f"epoch). Stopped without saving. Last good checkpoint: {state.last_checkpoint or 'none'}. Lower --lr, "
            "set --max_grad_norm, or check the data, then resume with --resume_from_checkpoint latest.")
        return 3
