"""The model card (README.md) of an export: what was trained, on what imbalance, how it was weakened, results."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from ..metrics import SCALAR_METRICS
from .export import to_plain

CARD_TAGS = ["image-classification", "timm", "procrustean", "long-tail", "imbalanced"]

_PAPER = ('Han-Jia Ye, De-Chuan Zhan, Wei-Lun Chao, "Procrustean Training for Imbalanced Deep Learning", '
          "ICCV 2021 ([arXiv:2104.01769](https://arxiv.org/abs/2104.01769))")
_BIBTEX = """@inproceedings{ye2021procrustean,
  title     = {Procrustean Training for Imbalanced Deep Learning},
  author    = {Ye, Han-Jia and Zhan, De-Chuan and Chao, Wei-Lun},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  pages     = {92--102},
  year      = {2021}
}"""

_SUMMARY_METRICS = SCALAR_METRICS  # (metrics key, label) for the summary table and the model-index, in order
_REQUIRED_METRICS = ("image_averaged_accuracy", "class_averaged_accuracy")


def _metric(metrics: Mapping[str, Any], key: str) -> Any:
    """``key``, or the same with the ``eval_`` / ``test_`` prefix Trainer-style loops add."""
    for name in (key, f"eval_{key}", f"test_{key}"):
        if name in metrics:
            return metrics[name]
    return None


def _pct(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * float(value):.2f}"


def _is_hub_dataset(dataset: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if dataset.startswith((".", "/", "~")) or Path(dataset).exists():
        return False
    try:
        validate_repo_id(dataset)
    except HFValidationError:
        return False
    return True


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_model_card(*, repo_id_or_name: str, model_name: str, dataset: str, class_names: Sequence[str],
                      class_counts: Sequence[int], imbalance: str, weakening: Optional[Mapping[str, Any]],
                      training_config: Mapping[str, Any], metrics: Mapping[str, Any], plots: Sequence[str] = (),
                      command: Optional[str] = None, license: str = "apache-2.0", eval_split: str = "test",
                      base_model: Optional[str] = None) -> str:
    """README.md for an export: Hub metadata (``ModelCardData``, model-index) + what, how, data, results.

    ``metrics`` is the long-tail accuracy dict (``procrustean.metrics``; fractions in [0, 1]; keys may
    carry an ``eval_`` prefix), ``weakening`` the policy's ``config()`` (with ``probabilities``, one
    per class) plus any settings such as ``location``; ``None`` for a baseline without weakening.
    ``plots`` are file names inside the export.
    """
    import yaml
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    names = [str(n) for n in class_names]
    counts = [int(n) for n in class_counts]
    if len(names) != len(counts):
        raise ValueError(f"class_names has {len(names)} entries but class_counts {len(counts)}; one count per class.")
    missing = [k for k in _REQUIRED_METRICS if _metric(metrics, k) is None]
    evaluated = any(_metric(metrics, k) is not None for k, _ in _SUMMARY_METRICS)
    if missing and evaluated:  # no metrics at all is a run without a held-out split; a partial dict is a bug
        raise ValueError(f"metrics lacks {missing}; pass the dict of procrustean.metrics.compute_long_tail_accuracy.")
    title = repo_id_or_name.rstrip("/").split("/")[-1]
    hub_dataset = _is_hub_dataset(dataset)
    dataset_name = f"{dataset} ({imbalance})" if imbalance else dataset
    eval_results = [
        EvalResult(task_type="image-classification", task_name="Image Classification",
                   dataset_type=dataset if hub_dataset else "custom", dataset_name=dataset_name,
                   dataset_split=eval_split, metric_type="accuracy", metric_name=f"{label} (%)",
                   metric_value=round(100 * float(_metric(metrics, key)), 2))
        for key, label in _SUMMARY_METRICS if _metric(metrics, key) is not None
    ]
    card_data = ModelCardData(
        library_name="timm", license=license, tags=list(CARD_TAGS), pipeline_tag="image-classification",
        datasets=[dataset] if hub_dataset else None, metrics=["accuracy"], base_model=base_model,
        model_name=title, eval_results=eval_results)

    sections = [
        f"# {title}",
        _card_intro(model_name, dataset, imbalance, weakening),
        _card_usage(repo_id_or_name, model_name),
        _card_data(dataset, imbalance, names, counts),
        _card_weakening(weakening, names, counts),
        _card_results(metrics, names, counts, eval_split),
    ]
    if plots:
        sections.append("## Plots\n\n" + "\n\n".join(f"![{Path(p).stem}]({Path(p).as_posix()})" for p in plots))
    config_yaml = yaml.safe_dump(to_plain(training_config), sort_keys=False, allow_unicode=True).rstrip()
    sections.append(f"## Training configuration\n\nThe full resolved configuration of this run:\n\n"
                    f"```yaml\n{config_yaml}\n```")
    if command:
        sections.append(f"## Reproduce\n\n```bash\n{command}\n```")
    sections.append(f"## Citation\n\nThe method:\n\n```bibtex\n{_BIBTEX}\n```")
    content = f"---\n{card_data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"
    card = ModelCard(content)  # parses the front matter again: fails here, not on the Hub, if it is invalid
    if card.data.library_name != "timm" or len(card.data.eval_results or []) != len(eval_results):
        raise RuntimeError("The rendered model card metadata did not round-trip; please report this.")
    return str(card)


def _card_intro(model_name: str, dataset: str, imbalance: str, weakening: Optional[Mapping[str, Any]]) -> str:
    how = ("with **Procrustean training**" if weakening else "as a **baseline without weakening** (Procrustean "
           "recipe, weakening off)")
    return (f"A `{model_name}` image classifier (timm) trained on the class-imbalanced data set `{dataset}` "
            f"(imbalance: `{imbalance}`) {how}.\n\n"
            "## What it is\n\n"
            f"Procrustean training ({_PAPER}) equalises the training progress across classes: the features "
            "of major-class samples are mixed with the features of other samples of the mini-batch while they "
            "keep their own labels, so the network cannot fit the major classes first and leave the minor ones "
            "under-fitted. The paper's exact rules are not public: **the weakening settings used here (who is "
            "weakened with what probability, how strongly, with which partner, where in the network) are our "
            "own design**, listed below. Inference is never weakened: the published weights are a plain timm "
            "model.")


def _card_usage(repo: str, model_name: str) -> str:
    custom = _is_procrustean_architecture(model_name)
    pre = "import procrustean  # registers the custom architecture in timm\n" if custom else ""
    note = (f"\n\n`{model_name}` is defined by the `procrustean` package, not by timm: `import procrustean` "
            "before loading, with timm or transformers." if custom else "")
    return ("## How to use\n\n"
            f"With timm:\n\n```python\n{pre}import timm\n\n"
            f'model = timm.create_model("hf-hub:{repo}", pretrained=True).eval()\n'
            "data_config = timm.data.resolve_data_config(model=model)\n"
            "transform = timm.data.create_transform(**data_config)\n"
            'label_names = model.pretrained_cfg["label_names"]\n```\n\n'
            f"With transformers:\n\n```python\n{pre}from transformers import AutoImageProcessor, "
            "AutoModelForImageClassification\n\n"
            f'model = AutoModelForImageClassification.from_pretrained("{repo}").eval()\n'
            f'processor = AutoImageProcessor.from_pretrained("{repo}")\n'
            "# model.config.id2label maps class ids to names\n```" + note)


def _is_procrustean_architecture(model_name: str) -> bool:
    import timm

    from .. import models  # noqa: F401  (registers the CIFAR ResNets)

    if not timm.is_model(model_name):
        return model_name.endswith("_cifar")
    module = timm.models.model_entrypoint(model_name).__module__
    return module.split(".")[0] == "procrustean"


def _card_data(dataset: str, imbalance: str, names: Sequence[str], counts: Sequence[int]) -> str:
    total, largest = sum(counts), max(counts, default=0)
    smallest = min(counts, default=0)
    ratio = f"{largest / smallest:.1f}" if smallest > 0 else "inf (empty classes)"
    rows = ["| id | class | training images | share |", "|---:|---|---:|---|"]
    for c, (name, n) in enumerate(zip(names, counts)):
        bar = "█" * max(1 if n else 0, round(20 * n / largest)) if largest else ""
        rows.append(f"| {c} | {_md(name)} | {n} | {bar} |")
    return (f"## Data\n\nTraining set: `{dataset}`, imbalance profile `{imbalance}`: {len(counts)} classes, "
            f"{total} images, largest class {largest}, smallest {smallest}, imbalance ratio "
            f"n_max / n_min = {ratio}.\n\n" + "\n".join(rows))


def _card_weakening(weakening: Optional[Mapping[str, Any]], names: Sequence[str], counts: Sequence[int]) -> str:
    if not weakening:
        return "## Weakening\n\nNone: this run trains without feature weakening (a baseline)."
    settings = {k: v for k, v in weakening.items() if k not in ("probabilities", "class_counts")}
    lines = ["## Weakening (our settings)", "",
             "| setting | value |", "|---|---|"]
    lines += [f"| {_md(k)} | `{_md(json.dumps(to_plain(v)))}` |" for k, v in settings.items()]
    probabilities = weakening.get("probabilities")
    if probabilities is not None:
        probabilities = to_plain(probabilities)
        if len(probabilities) != len(counts):
            raise ValueError(f"weakening['probabilities'] has {len(probabilities)} values for {len(counts)} classes.")
        when = (" at the end of training (the progress rule moves them with each class's training accuracy)"
                if weakening.get("rule") == "progress" else "")
        lines += ["", f"Per-class probability that a training sample is weakened{when}:", "",
                  "| id | class | training images | p(weaken) |", "|---:|---|---:|---:|"]
        lines += [f"| {c} | {_md(n)} | {k} | {float(p):.4f} |"
                  for c, (n, k, p) in enumerate(zip(names, counts, probabilities))]
    return "\n".join(lines)


def _card_results(metrics: Mapping[str, Any], names: Sequence[str], counts: Sequence[int], split: str) -> str:
    if not any(_metric(metrics, key) is not None for key, _ in _SUMMARY_METRICS):
        return ("## Results\n\nNo held-out split was evaluated (the data set has no validation or test split), "
                "so this card reports no test metrics.")
    lines = ["## Results", "",
             f"On the `{split}` split. Image-averaged accuracy is the usual top-1 over images; class-averaged "
             "accuracy is the mean of the per-class accuracies (balanced accuracy). Shot groups: many-shot "
             "classes have more than 100 training images, medium-shot 20 to 100, few-shot fewer than 20; major "
             "classes have more training images than the median class. Group accuracies are class-averaged.", "",
             "| metric | value (%) |", "|---|---:|"]
    lines += [f"| {label} | {_pct(_metric(metrics, key))} |" for key, label in _SUMMARY_METRICS
              if _metric(metrics, key) is not None]
    shown = {key for key, _ in _SUMMARY_METRICS}
    others = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
              and not any(k.endswith(s) for s in shown)}
    if others:
        lines += ["", "Other metrics:", "", "| metric | value |", "|---|---:|"]
        lines += [f"| {_md(k)} | {v:.6g} |" for k, v in others.items()]
    per_class = _metric(metrics, "per_class_accuracy")
    if per_class is not None:
        eval_counts = _metric(metrics, "per_class_count") or [None] * len(per_class)
        group = {}
        for key, label in (("many_shot_classes", "many"), ("medium_shot_classes", "medium"),
                           ("few_shot_classes", "few"), ("major_classes", "major"), ("minor_classes", "minor")):
            for c in _metric(metrics, key) or []:
                group.setdefault(int(c), []).append(label)
        lines += ["", "Per class:", "", "| id | class | training images | eval images | accuracy (%) | group |",
                  "|---:|---|---:|---:|---:|---|"]
        for c, acc in enumerate(per_class):
            name = names[c] if c < len(names) else str(c)
            count = counts[c] if c < len(counts) else ""
            n_eval = "" if eval_counts[c] is None else eval_counts[c]
            lines.append(f"| {c} | {_md(name)} | {count} | {n_eval} | {_pct(acc)} | {', '.join(group.get(c, []))} |")
    return "\n".join(lines)
