"""Export a trained backbone as a Hub-ready folder that timm and transformers both load.

The folder is timm's Hub layout, written by :func:`timm.models.save_for_hf`: ``config.json`` +
``model.safetensors``, plus ``README.md`` (the model card, :func:`render_model_card`), the resolved
``training_config.yaml`` and any extra files (plots, ``all_results.json``). It loads with
``timm.create_model("local-dir:DIR", pretrained=True)`` / ``"hf-hub:owner/repo"`` and with
``transformers.AutoModelForImageClassification.from_pretrained(DIR)`` (``TimmWrapper``), with the
class names (``label_names`` in config.json; transformers turns them into ``id2label``).

What timm's own ``save_for_hf`` leaves out, and we fill in:

* ``model_args``: constructor arguments a rebuild needs that the architecture name does not imply
  (``in_chans`` != 3, ``img_size`` of ViT-like models, ...). transformers' ``TimmWrapper`` ignores
  ``pretrained_cfg`` and calls ``timm.create_model(architecture, num_classes=..., **model_args)``, so
  they must be here -- but never ``num_classes`` (transformers 5.x passes it itself: "got multiple
  values for keyword argument 'num_classes'"; timm 1.0.31 writes it, we drop it).
* ``pretrained_cfg``: the model's default config describes the *upstream* weights (ImageNet 1000
  classes, 3x160x160, ...). We rewrite ``num_classes``, ``input_size`` (channels and training
  resolution) and ``mean``/``std`` (one value per input channel, else timm's data config asserts),
  so that ``timm.data.resolve_data_config`` and transformers' image processor preprocess correctly.

The export is atomic: it is built and verified (both loaders rebuild the model and give the same
logits as the original) in a hidden sibling directory, then renamed into place; a failure leaves the
previous export untouched and no temporary directory behind.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from ._timm import inner_timm_model

PathLike = Union[str, "os.PathLike[str]"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "README.md"
TRAINING_CONFIG_NAME = "training_config.yaml"
REQUIRED_FILES = (CONFIG_NAME, WEIGHTS_NAME)

# Upstream-weights provenance that does not describe an exported (re-trained) model; keys config.json
# keeps at its root.
_DROPPED_CFG_KEYS = ("architecture", "tag", "hf_hub_id", "url", "file", "source", "label_names", "label_descriptions")
# Data-config keys a caller may set (what the training pipeline actually used).
DATA_CONFIG_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")

__all__ = ["export_model", "export_model_args", "export_pretrained_cfg", "render_model_card", "to_plain",
           "unwrap_backbone"]


# ----------------------------------------------------------------------------------------------- model
def unwrap_backbone(model: nn.Module) -> nn.Module:
    """The plain timm model inside ProcrusteanModel / DDP / torch.compile / transformers' TimmWrapper."""
    model = inner_timm_model(model)
    if not isinstance(getattr(model, "pretrained_cfg", None), Mapping) or not hasattr(model, "num_classes"):
        raise TypeError(f"export_model needs a timm classification model (from timm.create_model), got "
                        f"{type(model).__name__} without `pretrained_cfg` / `num_classes`.")
    return model


def _input_channels(model: nn.Module) -> int:
    from .models import hf_model_args

    return int(hf_model_args(model).get("in_chans", 3))


def _img_size(model: nn.Module) -> Optional[tuple]:
    """Image size fixed at construction (ViT-like models: ``patch_embed.img_size``), else None."""
    img_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if img_size is None:
        return None
    return tuple(int(s) for s in img_size) if isinstance(img_size, (tuple, list)) else (int(img_size),) * 2


def export_model_args(model: nn.Module, extra: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Constructor args for ``config.json``'s ``model_args``: ``in_chans`` (!= 3), ``img_size``, ``extra``.

    ``num_classes`` is refused: the root ``num_classes`` carries it, and transformers' TimmWrapper
    fails when it is in ``model_args`` too.
    """
    from .models import hf_model_args

    args = dict(hf_model_args(model))
    img_size = _img_size(model)
    if img_size is not None:
        args["img_size"] = list(img_size)
    for key, value in (extra or {}).items():
        if key == "num_classes":
            raise ValueError("model_args must not contain 'num_classes': config.json stores it at the root, "
                             "and transformers' TimmWrapper fails with 'got multiple values for keyword argument "
                             "num_classes' when it is in model_args too. Remove it.")
        args[key] = list(value) if isinstance(value, tuple) else value
    args.pop("num_classes", None)
    return args


def _per_channel(values: Sequence[float], in_chans: int, name: str) -> list:
    values = [float(v) for v in values]
    if len(values) == in_chans:
        return values
    if len(values) == 1:
        return values * in_chans
    if in_chans == 1:  # e.g. RGB statistics on a grey-scale model: the channel mean is the usual choice
        return [sum(values) / len(values)]
    raise ValueError(f"pretrained_cfg {name} has {len(values)} values but the model takes {in_chans} input "
                     f"channels; pass data_config={{'{name}': [...]}} (one value per channel) to export_model.")


def export_pretrained_cfg(model: nn.Module, data_config: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The model's ``pretrained_cfg`` made true for the exported weights (see the module docstring)."""
    from timm.models._pretrained import filter_pretrained_cfg

    unknown = set(data_config or {}) - set(DATA_CONFIG_KEYS)
    if unknown:
        raise ValueError(f"Unknown data_config keys {sorted(unknown)}; allowed: {list(DATA_CONFIG_KEYS)}.")
    cfg = filter_pretrained_cfg(dict(model.pretrained_cfg), remove_source=True, remove_null=True)
    for key in _DROPPED_CFG_KEYS:
        cfg.pop(key, None)
    cfg.update({k: v for k, v in (data_config or {}).items() if v is not None})
    in_chans = _input_channels(model)
    input_size = list(cfg.get("input_size") or (3, 224, 224))
    if data_config is None or "input_size" not in data_config:
        img_size = _img_size(model)
        input_size = [in_chans, *(img_size or input_size[-2:])]
    if len(input_size) != 3 or int(input_size[0]) != in_chans:
        raise ValueError(f"input_size {input_size} does not match the model's {in_chans} input channels; "
                         "use input_size=(channels, height, width).")
    cfg["input_size"] = [int(s) for s in input_size]
    for name in ("mean", "std"):
        if cfg.get(name) is not None:
            cfg[name] = _per_channel(cfg[name], in_chans, name)
    cfg["num_classes"] = int(model.num_classes)
    return cfg


# ----------------------------------------------------------------------------------------------- export
def export_model(backbone: nn.Module, output_dir: PathLike, *, label_names: Sequence[str],
                 model_card: Optional[str] = None, extra_files: Optional[Mapping[str, PathLike]] = None,
                 training_config: Optional[Mapping[str, Any]] = None,
                 data_config: Optional[Mapping[str, Any]] = None, model_args: Optional[Mapping[str, Any]] = None,
                 verify: bool = True) -> Path:
    """Write ``backbone`` (a timm model, or a wrapper around one) to ``output_dir`` atomically; return it.

    Args:
        label_names: class names in classifier order (config.json ``label_names``; transformers'
            ``id2label``); one unique name per class.
        model_card: README.md text (see :func:`render_model_card`).
        extra_files: ``{name in the export: source file}``, e.g. plots, ``all_results.json``.
        training_config: the resolved training configuration, written as ``training_config.yaml``.
        data_config: what the training pipeline used (``input_size``, ``mean``, ``std``,
            ``interpolation``, ``crop_pct``, ``crop_mode``); recorded in ``pretrained_cfg``.
        model_args: extra constructor args needed to rebuild the architecture (merged over the
            inferred ``in_chans`` / ``img_size``).
        verify: reload the export the way timm and transformers do and compare logits before the swap.
    """
    import timm.models

    model = unwrap_backbone(backbone)
    output_dir = Path(output_dir).expanduser().absolute()
    names = _check_label_names(label_names, int(model.num_classes))
    copies = _check_extra_files(extra_files, model_card is not None, training_config is not None)
    _check_replaceable(output_dir)
    args = export_model_args(model, model_args)
    model_config: Dict[str, Any] = {"label_names": names, "pretrained_cfg": export_pretrained_cfg(model, data_config)}

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.parent / f".{output_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        timm.models.save_for_hf(model, tmp, model_config=model_config, model_args=args or None,
                                safe_serialization=True)
        _drop_model_args_num_classes(tmp / CONFIG_NAME)
        if training_config is not None:
            import yaml

            (tmp / TRAINING_CONFIG_NAME).write_text(
                yaml.safe_dump(to_plain(training_config), sort_keys=False, allow_unicode=True), encoding="utf-8")
        for name, source in copies.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, tmp / name)
        if model_card is not None:
            (tmp / MODEL_CARD_NAME).write_text(model_card, encoding="utf-8")
        if verify:
            _verify_export(tmp, model)
        _swap_in(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output_dir


def _check_label_names(label_names: Sequence[str], num_classes: int) -> list:
    if isinstance(label_names, str):
        raise TypeError("label_names must be a list of class names, not one string.")
    names = [str(n) for n in label_names]
    if len(names) != num_classes:
        raise ValueError(f"label_names has {len(names)} names but the model has {num_classes} classes; "
                         "pass one name per classifier output, in class-id order.")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"label_names must be unique (transformers builds label2id from them); duplicated: "
                         f"{duplicates}.")
    return names


def _check_extra_files(extra_files: Optional[Mapping[str, PathLike]], has_card: bool,
                       has_training_config: bool) -> Dict[str, Path]:
    reserved = set(REQUIRED_FILES) | ({MODEL_CARD_NAME} if has_card else set()) | (
        {TRAINING_CONFIG_NAME} if has_training_config else set())
    copies: Dict[str, Path] = {}
    for name, source in (extra_files or {}).items():
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"extra_files name {name!r} must be a relative path inside the export "
                             "(e.g. 'plots/x.png').")
        if rel.as_posix() in reserved:
            raise ValueError(f"extra_files name {name!r} would overwrite a file export_model writes itself; rename it.")
        source = Path(source)
        if not source.is_file():
            raise FileNotFoundError(f"extra_files[{name!r}]: {source} is not a file.")
        copies[rel.as_posix()] = source
    return copies


def _check_replaceable(output_dir: Path) -> None:
    """Refuse to replace a directory that is not an earlier export (it would be deleted)."""
    if not output_dir.exists():
        return
    if not output_dir.is_dir():
        raise FileExistsError(f"{output_dir} exists and is not a directory; choose another output_dir.")
    entries = list(output_dir.iterdir())
    if not entries:
        return
    names = {e.name for e in entries}
    looks_like_export = set(REQUIRED_FILES) <= names
    training_state = [e.name for e in entries if e.name.startswith("checkpoint") or e.name in
                      ("trainer_state.json", "optimizer.pt", "optimizer.bin")]
    if not looks_like_export or training_state:
        raise FileExistsError(f"{output_dir} is not empty and is not a model export (it would be replaced, and its "
                              f"contents deleted); export to a new or empty directory, e.g. {output_dir / 'export'}.")


def _drop_model_args_num_classes(config_path: Path) -> None:
    """timm 1.0.31 puts num_classes in model_args, which breaks transformers' TimmWrapper: remove it."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    model_args = config.get("model_args")
    if isinstance(model_args, dict) and "num_classes" in model_args:
        model_args.pop("num_classes")
        if not model_args:
            config.pop("model_args")
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")


@torch.no_grad()
def _verify_export(export_dir: Path, original: nn.Module) -> None:
    """Rebuild the export as timm (``local-dir:``) and transformers' TimmWrapper do; compare logits."""
    import safetensors.torch
    import timm

    config = json.loads((export_dir / CONFIG_NAME).read_text(encoding="utf-8"))
    shape = config["pretrained_cfg"]["input_size"]
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    param = next(original.parameters(), None)
    device, dtype = (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)
    was_training = original.training
    original.eval()
    try:
        expected = original(x.to(device=device, dtype=dtype)).float().cpu()
    finally:
        original.train(was_training)

    hint = ("pass the constructor arguments that differ from the architecture's defaults as "
            "export_model(..., model_args={...})")
    rebuilt = {}
    try:
        rebuilt["timm local-dir"] = timm.create_model(f"local-dir:{export_dir}", pretrained=True)
        wrapper_like = timm.create_model(config["architecture"], pretrained=False, num_classes=config["num_classes"],
                                         **config.get("model_args", {}))
        wrapper_like.load_state_dict(safetensors.torch.load_file(export_dir / WEIGHTS_NAME), strict=True)
        rebuilt["transformers TimmWrapper"] = wrapper_like
    except (RuntimeError, TypeError, ValueError) as e:
        detail = " ".join(line.strip() for line in str(e).strip().splitlines()[:2]) or type(e).__name__
        raise RuntimeError(f"The export does not rebuild ({type(e).__name__}: {detail[:300]}); {hint}.") from e
    for loader, model in rebuilt.items():
        got = model.eval().to(dtype=dtype)(x.to(dtype=dtype)).float()
        tol = (1e-4 if dtype == torch.float32 and device.type == "cpu" else 1e-2) * (1.0 + expected.abs().max().item())
        diff = (got - expected).abs().max().item()
        if got.shape != expected.shape or not math.isfinite(diff) or diff > tol:
            raise RuntimeError(f"The export rebuilt by {loader} gives different logits than the trained model "
                               f"(max |diff| {diff:.3g}); {hint}.")


def _swap_in(tmp: Path, output_dir: Path) -> None:
    """Rename the finished export into place; an old export is moved aside first and removed last.

    POSIX cannot rename a directory over a non-empty one, so for a moment the complete old export
    sits at ``.<name>.old-*`` next to ``output_dir`` (restored if the second rename fails).
    """
    if not output_dir.exists():
        os.replace(tmp, output_dir)
        return
    backup = output_dir.parent / f".{output_dir.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(output_dir, backup)
    try:
        os.replace(tmp, output_dir)
    except BaseException:
        os.replace(backup, output_dir)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def to_plain(obj: Any) -> Any:
    """Configs as YAML/JSON-safe builtins (paths, tuples, numpy/torch scalars and arrays, dataclasses)."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, (str, bool, int, float)) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy / torch arrays and scalars
        return to_plain(obj.tolist())
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


# ----------------------------------------------------------------------------------------------- model card
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

# (metrics key, label) for the summary table and the model-index, in that order
_SUMMARY_METRICS = (
    ("image_averaged_accuracy", "Image-averaged accuracy (top-1)"),
    ("class_averaged_accuracy", "Class-averaged accuracy"),
    ("many_shot_accuracy", "Many-shot accuracy"),
    ("medium_shot_accuracy", "Medium-shot accuracy"),
    ("few_shot_accuracy", "Few-shot accuracy"),
    ("major_class_accuracy", "Major-class accuracy"),
    ("minor_class_accuracy", "Minor-class accuracy"),
)
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

    from . import models  # noqa: F401  (registers the CIFAR ResNets)

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
        lines += ["", "Per-class probability that a training sample is weakened:", "",
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
