"""What a finished run leaves behind, one function per file or folder (the recipe calls them in order):

    all_results.json   write_results      final metrics, class counts, throughput
    plots/             write_plots        per-class test accuracy, per-class training progress
    README.md          run_model_card     the model card (into the export)
    export/            export_run         timm's Hub layout, verified, written atomically

Everything here runs on the main process only. Publishing the export is the recipe's last step
(``procrustean.hub``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from torch import nn

from .._atomic import atomic_write_text
from .state import RunState


def write_results(output_dir: Path, state: RunState, class_counts: Sequence[int],
                  class_names: Sequence[str]) -> Dict[str, Any]:
    """``all_results.json``: the last epoch's metrics (never best-on-test), counts and training throughput, and
    where the weakening was (``--weakening_location auto`` resolved; None: no weakening)."""
    last = state.history[-1] if state.history else {}
    results = {"epochs_completed": state.epoch, "steps": state.step, "weakening_location": state.weakening_location,
               "train_seconds": round(state.train_seconds, 3),
               "train_samples_per_second": round(state.train_samples / state.train_seconds, 2)
               if state.train_seconds else None,
               **{k: v for k, v in last.items() if not k.endswith("per_class_accuracy")},
               "eval_per_class_accuracy": last.get("eval_per_class_accuracy"),
               "train_per_class_accuracy": last.get("train_per_class_accuracy"),
               "train_class_counts": [int(n) for n in class_counts], "class_names": list(class_names)}
    atomic_write_text(Path(output_dir) / "all_results.json", json.dumps(results, indent=2))
    return results


def write_plots(output_dir: Path, history: Sequence[Mapping[str, Any]], class_names: Sequence[str],
                class_counts: Sequence[int]) -> List[Path]:
    """``plots/per_class_accuracy.png`` (last evaluation) and ``plots/training_progress.png`` (every epoch)."""
    from .plots import plot_per_class_accuracy, plot_training_progress

    plots_dir = Path(output_dir) / "plots"
    plots_dir.mkdir(exist_ok=True)
    plots = []
    last = history[-1] if history else {}
    if last.get("eval_per_class_accuracy"):
        plots.append(plot_per_class_accuracy(last["eval_per_class_accuracy"], class_names, list(class_counts),
                                             plots_dir / "per_class_accuracy.png",
                                             title="Per-class test accuracy (last epoch)"))
    if history:
        plots.append(plot_training_progress(history, class_names, plots_dir / "training_progress.png",
                                            class_counts=list(class_counts)))
    return [Path(p) for p in plots]


def run_model_card(config: Any, policy: Optional[Any], results: Mapping[str, Any], plots: Sequence[Path]) -> str:
    """The model card of this run: data, the weakening (``policy``; None: a baseline), metrics, plots, command."""
    from ..hub import render_model_card

    location = results.get("weakening_location") or config.weakening_location
    if config.weakening_location == "auto":
        location += " (auto)"
    weakening = None if policy is None else {"enabled": True, "location": location,
                                             "stop_epoch": config.weakening_stop_epoch, **policy.config()}
    metrics = {k: v for k, v in results.items() if k.startswith("eval_") and isinstance(v, (int, float))}
    return render_model_card(
        repo_id_or_name=config.push_to_hub or Path(config.output_dir).name, model_name=config.model,
        dataset=config.dataset, class_names=results["class_names"], class_counts=results["train_class_counts"],
        imbalance=config.imbalance, weakening=weakening, training_config=config.to_dict(),
        metrics={**metrics, "per_class_accuracy": results.get("eval_per_class_accuracy")},
        plots=[f"plots/{p.name}" for p in plots], command=redacted_command(sys.argv))


def redacted_command(argv: Sequence[str]) -> str:
    """The command line as the card shows it, with the value of ``--hub_token`` hidden."""
    shown, hide_next = [], False
    for arg in argv:
        if hide_next:
            shown.append("<hidden>")
        elif arg.startswith("--hub_token="):
            shown.append("--hub_token=<hidden>")
        else:
            shown.append(arg)
        hide_next = arg == "--hub_token"
    return " ".join(shown)


def export_run(backbone: nn.Module, output_dir: Path, *, card: str, plots: Sequence[Path], config: Any,
               class_names: Sequence[str], data_config: Optional[Mapping[str, Any]] = None, verify: bool = True) -> Path:
    """``export/``: the backbone in timm's Hub layout with the card, plots, results and resolved config.

    ``verify=False`` skips reloading it with timm and transformers (the interim exports published while
    training; the final export is always verified)."""
    from ..hub import export_model
    from .setup import model_constructor_args

    extra = {f"plots/{p.name}": p for p in plots}
    extra["all_results.json"] = Path(output_dir) / "all_results.json"
    return export_model(backbone, Path(output_dir) / "export", label_names=class_names, model_card=card,
                        extra_files=extra, training_config=config.to_dict(),
                        data_config={k: data_config[k] for k in ("input_size", "mean", "std", "interpolation",
                                                                 "crop_pct") if k in data_config} if data_config else None,
                        model_args=model_constructor_args(config), verify=verify)
