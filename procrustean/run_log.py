"""What a run keeps and reports: its resumable state, per-epoch metrics, evaluation and the final export."""
from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from .per_class import PerClassAccuracy


class RunState:
    """Counters and epoch history that ``save_state`` must carry for an exact (mid-epoch) resume."""

    def __init__(self, train_accuracy: PerClassAccuracy, gradients: Any = None):
        self.gradients = gradients  # an optional FeatureGradientMonitor
        self.epoch = 0
        self.step = 0
        self.batches_in_epoch = 0
        self.history: List[Dict[str, Any]] = []
        self.train_accuracy = train_accuracy
        self.last_checkpoint: Optional[str] = None
        self.train_seconds = 0.0  # wall time inside the training loop (all epochs, checkpoint saves included)
        self.train_samples = 0

    def next_epoch(self) -> None:
        self.epoch += 1
        self.batches_in_epoch = 0
        self.train_accuracy.reset()
        if self.gradients is not None:
            self.gradients.reset()

    def state_dict(self) -> Dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "batches_in_epoch": self.batches_in_epoch,
                "history_json": json.dumps(self.history), "train_accuracy": self.train_accuracy.state_dict(),
                "last_checkpoint": self.last_checkpoint or "",
                "train_seconds": self.train_seconds, "train_samples": self.train_samples,
                "gradients": self.gradients.state_dict() if self.gradients is not None else {}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.batches_in_epoch = int(state["batches_in_epoch"])
        self.history = json.loads(state["history_json"])
        self.train_accuracy.load_state_dict(state["train_accuracy"])
        self.last_checkpoint = state["last_checkpoint"] or None
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.train_samples = int(state.get("train_samples", 0))
        if self.gradients is not None and state.get("gradients"):
            self.gradients.load_state_dict(state["gradients"])


@torch.no_grad()
def evaluate_model(model: Any, loader: Any, accelerator: Any, train_class_counts: Any) -> Dict[str, Any]:
    """Long-tail metrics on the held-out split; ``gather_for_metrics`` drops the padding duplicates."""
    from .metrics import compute_long_tail_accuracy

    model.eval()
    predictions, references = [], []
    for batch in loader:
        logits = model(batch["pixel_values"]).logits
        preds, refs = accelerator.gather_for_metrics((logits.argmax(dim=-1), batch["labels"]))
        predictions.append(preds.cpu())
        references.append(refs.cpu())
    model.train()
    counts = [int(c) for c in torch.as_tensor(train_class_counts).tolist()]
    results = compute_long_tail_accuracy(predictions=torch.cat(predictions).tolist(),
                                         references=torch.cat(references).tolist(),
                                         train_class_counts=counts, num_classes=len(counts))
    results["num_samples"] = int(sum(len(p) for p in predictions))
    return results


class MetricsLog:
    """metrics.jsonl + metrics.csv (one row per epoch) and the accelerate trackers, main process only."""

    SCALARS = ("image_averaged_accuracy", "class_averaged_accuracy", "many_shot_accuracy", "medium_shot_accuracy",
               "few_shot_accuracy", "major_class_accuracy", "minor_class_accuracy")

    COLUMNS = ("epoch", "step", "lr", "weakening", "train_image_averaged_accuracy", "train_class_averaged_accuracy",
               *(f"eval_{k}" for k in SCALARS), "eval_num_samples", "train_clean_class_averaged_accuracy")

    def __init__(self, output_dir: Path, accelerator: Any):
        self.output_dir, self.accelerator = Path(output_dir), accelerator

    def restore(self, history: List[Dict[str, Any]]) -> None:
        """After a resume: rewrite the per-epoch files from the checkpoint's history, so that epochs
        logged after the checkpoint (and re-run now) are not listed twice."""
        if not self.accelerator.is_main_process:
            return
        _atomic_write(self.output_dir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
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
            _atomic_write(self.output_dir / name, json.dumps(payload, indent=2))

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

    def non_finite_loss(self, state: RunState, epoch: int, loss: torch.Tensor) -> int:
        self.accelerator.print(
            f"ERROR: the loss became {loss.item()} at step {state.step + 1} (epoch {epoch}, batch "
            f"{state.batches_in_epoch} of the epoch). Stopped without saving. Last good checkpoint: "
            f"{state.last_checkpoint or 'none'}. Lower --lr, set --max_grad_norm, or check the data, then resume "
            "with --resume_from_checkpoint latest.")
        return 3


def finish_run(config: Any, accelerator: Any, model: Any, state: RunState, data: Any, histogram: Any, policy: Any,
               output_dir: Path, data_config: Optional[Dict[str, Any]] = None) -> int:
    """all_results.json, plots, the Hub-layout export (always local first) and the optional push."""
    from .export import export_model, render_model_card
    from .plots import plot_per_class_accuracy, plot_training_progress

    accelerator.wait_for_everyone()
    accelerator.end_training()
    if not accelerator.is_main_process:
        return 0
    last = state.history[-1] if state.history else {}
    results = {"epochs_completed": state.epoch, "steps": state.step,
               "train_seconds": round(state.train_seconds, 3),
               "train_samples_per_second": round(state.train_samples / state.train_seconds, 2)
               if state.train_seconds else None,
               **{k: v for k, v in last.items() if not k.endswith("per_class_accuracy")},
               "eval_per_class_accuracy": last.get("eval_per_class_accuracy"),
               "train_per_class_accuracy": last.get("train_per_class_accuracy"),
               "train_class_counts": list(histogram.counts), "class_names": data.class_names}
    _atomic_write(output_dir / "all_results.json", json.dumps(results, indent=2))
    plots_dir = output_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    plots = []
    if last.get("eval_per_class_accuracy"):
        plot_per_class_accuracy(last["eval_per_class_accuracy"], data.class_names, results["train_class_counts"],
                                plots_dir / "per_class_accuracy.png", title="Per-class test accuracy (last epoch)")
        plots.append(plots_dir / "per_class_accuracy.png")
    if state.history:
        plot_training_progress(state.history, data.class_names, plots_dir / "training_progress.png",
                               class_counts=results["train_class_counts"])
        plots.append(plots_dir / "training_progress.png")
    weakened = config.weakening and config.mixup_alpha <= 0 and config.cutmix_alpha <= 0  # mixup replaces it
    weakening = {"enabled": True, "location": config.weakening_location, "stop_epoch": config.weakening_stop_epoch,
                 **policy.config()} if weakened else None  # None: the card says "baseline without weakening"
    metrics = {k: v for k, v in results.items() if k.startswith("eval_") and isinstance(v, (int, float))}
    card = render_model_card(
        repo_id_or_name=config.push_to_hub or Path(output_dir).name, model_name=config.model, dataset=config.dataset,
        class_names=data.class_names, class_counts=results["train_class_counts"], imbalance=config.imbalance,
        weakening=weakening, training_config=config.to_dict(), metrics={**metrics,
                                                                        "per_class_accuracy": last.get("eval_per_class_accuracy")},
        plots=[f"plots/{p.name}" for p in plots], command=" ".join(sys.argv))
    extra = {f"plots/{p.name}": p for p in plots}
    extra["all_results.json"] = output_dir / "all_results.json"
    export_dir = export_model(model.backbone, output_dir / "export", label_names=data.class_names, model_card=card,
                              extra_files=extra, training_config=config.to_dict(),
                              data_config={k: data_config[k] for k in ("input_size", "mean", "std")} if data_config else None)
    print(f"\nResults: {output_dir / 'all_results.json'}\nPlots: {plots_dir}\nExport (timm + transformers): {export_dir}")
    if config.push_to_hub:
        from .hub import HubPushError, push_export

        try:
            url = push_export(export_dir, config.push_to_hub, private=config.hub_private)
            print(f"Pushed to {url}")
        except HubPushError as error:
            print(f"ERROR: {error}", file=sys.stderr)
            return 1
    return 0


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
