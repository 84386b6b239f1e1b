"""The recipe's one configuration object: a dataclass read from YAML, overridable from the CLI.

    accelerate launch recipes/train.py --config recipes/configs/fmnist_lt_step100.yaml --epochs 5

YAML keys and ``--flags`` are the field names below (the HF examples' spelling where one exists);
``--option none`` unsets an option whose default is none (a config file's ``drw_epoch``, say).
Parsing uses transformers' ``HfArgumentParser``; the resolved config is saved with every run,
checkpoint and export (``training_config.yaml``).
"""
from __future__ import annotations

import dataclasses
import difflib
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from ..model import DEFAULT_LOCATION
from ..errors import MissingInputError, UsageError


@dataclass
class TrainConfig:
    # ---------------------------------------------------------------- data
    dataset: str = field(default="fashion_mnist", metadata={"help": "Hub name, save_to_disk folder, parquet "
                         "file/folder, imagefolder tree (train/ + validation/ or test/), or 'fashion_mnist'."})
    dataset_config: Optional[str] = field(default=None, metadata={"help": "Hub dataset configuration name."})
    image_column: str = field(default="image", metadata={"help": "Column holding the images."})
    label_column: str = field(default="label", metadata={"help": "Column holding the class labels."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: Optional[str] = field(default=None, metadata={"help": "Held-out split (default: validation, "
                                      "else test)."})
    imbalance: str = field(default="step:100", metadata={"help": "Imbalance profile for the training split: "
                           "'exp:RATIO', 'step:RATIO' or 'none'."})
    imbalance_class_order: Optional[List[int]] = field(default=None, metadata={"help": "Which class takes the "
                                                       "profile's k-th count, largest first (a permutation of the "
                                                       "class ids; default: label order)."})
    max_per_class: Optional[int] = field(default=None, metadata={"help": "n_max of the profile (default: the "
                                         "largest class available); with --imbalance none, a balanced subset of "
                                         "max_per_class images of every class."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Evaluate on a seeded subset."})
    verify_images: bool = field(default=True, metadata={"help": "Open every image once before training."})
    data_path: str = field(default="pil", metadata={"help": "pil: timm's per-sample transforms in the DataLoader; "
                           "in_memory: decode the training images once into uint8 tensors and crop, flip and "
                           "normalise whole batches on the device (small images that fit in memory; --train_crop "
                           "pad4 only)."})
    num_workers: Optional[int] = field(default=None, metadata={"help": "DataLoader worker processes (default: "
                                       "none when training on the CPU or with --data_path in_memory, else one "
                                       "per spare CPU core, at most 8 per process)."})
    # ---------------------------------------------------------------- model
    model: str = field(default="resnet8_cifar", metadata={"help": "Any timm model name, 'hf-hub:<repo>' or "
                       "'local-dir:<path>'."})
    pretrained: bool = field(default=False, metadata={"help": "Start from the model's pretrained weights."})
    reset_classifier: bool = field(default=False, metadata={"help": "Give the pretrained model a new, freshly "
                                   "initialised classifier (timm's reset_classifier): fine-tuning on classes other than "
                                   "the source's. Implied when the class counts differ."})
    in_chans: int = field(default=3, metadata={"help": "Image channels the model takes (1 = grey; images "
                          "are converted to match)."})
    img_size: Optional[int] = field(default=None, metadata={"help": "Input size (default: the model's)."})
    mean: Optional[List[float]] = field(default=None, metadata={"help": "Normalisation mean (default: the "
                                        "model's pretrained_cfg)."})
    std: Optional[List[float]] = field(default=None, metadata={"help": "Normalisation std (default: the "
                                       "model's)."})
    crop_pct: Optional[float] = field(default=None, metadata={"help": "Eval crop fraction: resize to img_size / "
                                      "crop_pct, then centre-crop (default: the model's pretrained_cfg; 1.0 keeps the "
                                      "whole image, as small-image protocols do)."})
    interpolation: Optional[str] = field(default=None, metadata={"help": "Resize interpolation: bilinear, bicubic, "
                                         "nearest (default: the model's pretrained_cfg)."})
    train_crop: str = field(default="pad4", metadata={"help": "Train augmentation: 'pad4' (random crop with "
                            "4 px padding + flip, the CIFAR protocol) or 'rrc' (timm's RandomResizedCrop)."})
    drop_rate: float = field(default=0.0, metadata={"help": "Classifier dropout."})
    model_kwargs: Optional[str] = field(default=None, metadata={"help": "Extra timm.create_model kwargs as JSON, "
                                        "e.g. '{\"normed_head\": true}' (cosine classifier for LDAM)."})
    # ---------------------------------------------------------------- weakening
    weakening: bool = field(default=True, metadata={"help": "Procrustean weakening on/off (off = baseline). Measured "
                            "to help on top of a re-balancing loss in long training from scratch (the CIFAR ResNets, "
                            "200 epochs); in short budgets from scratch and in fine-tuning it did not, on any family "
                            "measured: there use the loss alone, --weakening false (docs/RESULTS.md; with the "
                            "weakening on, the start-up lines give the model's family's numbers)."})
    weakening_location: str = field(default=DEFAULT_LOCATION, metadata={"help": "auto (default: the location measured "
                                    "for the model's family, from scratch or, with --pretrained true, in fine-tuning; "
                                    "for a family never measured the rule measured across families: from scratch "
                                    "stage:1 if it downsamples in stages, input if it is isotropic like a ViT; "
                                    "procrustean/location_map.py, printed at start-up with its evidence), input, "
                                    "stage:K, pre_logits or random."})
    weakening_rule: str = field(default="progress", metadata={"help": "progress (default, and every shipped "
                                "config's: from the measured per-class training accuracy, the count rule as prior; "
                                "best measured with LDAM-DRW in long training; in short budgets level with its loss "
                                "alone on the CIFAR ResNets, MobileNetV3 and RegNet, below it on a ViT) or power "
                                "((n_c / n_max) ** gamma from the class counts; with logit adjustment in long "
                                "training the stronger on some class orders). docs/RESULTS.md, Defaults."})
    weakening_gamma: float = field(default=1.0, metadata={"help": "Exponent of the power rule."})
    lam_min: float = field(default=0.5, metadata={"help": "Smallest own share (uniform)."})
    lam_max: float = field(default=1.0, metadata={"help": "Largest own share (uniform)."})
    weakening_partner: str = field(default="any", metadata={"help": "any or larger_or_equal."})
    progress_margin: float = field(default=0.5, metadata={"help": "progress rule: weaken a class with probability "
                                   "min(1, (its training accuracy - the lowest class's) / margin)."})
    progress_momentum: float = field(default=0.9, metadata={"help": "progress rule: decay of the running per-class "
                                     "counts at each refresh."})
    progress_interval: int = field(default=10, metadata={"help": "progress rule: batches between refreshes of the "
                                   "probabilities (each batch's counts are summed over processes as it is seen)."})
    progress_samples: str = field(default="all", metadata={"help": "progress rule: accuracy over all training "
                                  "samples as trained ('all', measured best) or only those not weakened ('unweakened'; "
                                  "a class whose samples in a batch were all weakened is counted on all of them)."})
    weakening_stop_epoch: Optional[int] = field(default=None, metadata={"help": "Stop weakening at this epoch "
                                                "(default: never)."})
    # ---------------------------------------------------------------- loss
    loss: str = field(default="logit_adjusted", metadata={"help": "logit_adjusted (default: best measured with "
                      "either weakening rule without a schedule, docs/RESULTS.md), ldam (with --drw_epoch and "
                      "--model_kwargs '{\"normed_head\": true}': LDAM-DRW, the 200-epoch configs' choice), ce, "
                      "balanced_softmax, cdt, focal. --weakening false --loss ce is plain training."})
    loss_tau: float = field(default=1.0, metadata={"help": "Logit adjustment tau."})
    ldam_max_margin: float = field(default=0.5, metadata={"help": "LDAM largest margin."})
    ldam_scale: float = field(default=30.0, metadata={"help": "LDAM logit scale."})
    cdt_gamma: float = field(default=0.1, metadata={"help": "CDT temperature exponent."})
    focal_gamma: float = field(default=1.0, metadata={"help": "Focal loss gamma."})
    drw_epoch: Optional[int] = field(default=None, metadata={"help": "Deferred re-weighting from this epoch."})
    drw_beta: float = field(default=0.9999, metadata={"help": "Class-balanced weight beta for DRW."})
    mixup_alpha: float = field(default=0.0, metadata={"help": "timm Mixup alpha (labels mixed too: the 'is it "
                               "just mixup?' control). Replaces weakening when > 0."})
    cutmix_alpha: float = field(default=0.0, metadata={"help": "timm CutMix alpha (labels mixed)."})
    # ---------------------------------------------------------------- optimisation
    epochs: int = field(default=30, metadata={"help": "Training epochs."})
    max_train_steps: Optional[int] = field(default=None, metadata={"help": "Stop after this many optimizer "
                                           "steps (overrides epochs)."})
    batch_size: int = field(default=128, metadata={"help": "Per-device training batch size."})
    eval_batch_size: int = field(default=256, metadata={"help": "Per-device evaluation batch size."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches per optimizer step."})
    optimizer: str = field(default="sgd", metadata={"help": "Any timm optimizer name: sgd, adamw, ..."})
    lr: float = field(default=0.1, metadata={"help": "Peak learning rate."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum."})
    weight_decay: float = field(default=2e-4, metadata={"help": "Weight decay."})
    lr_scheduler: str = field(default="multistep", metadata={"help": "timm scheduler: multistep, step, cosine, "
                              "constant."})
    warmup_epochs: int = field(default=1, metadata={"help": "Linear warm-up epochs."})
    lr_decay_epochs: List[int] = field(default_factory=lambda: [24, 27], metadata={"help": "multistep "
                                       "milestones."})
    lr_decay_rate: float = field(default=0.01, metadata={"help": "Factor applied at each milestone."})
    min_lr: float = field(default=0.0, metadata={"help": "Floor of the cosine schedule."})
    max_grad_norm: Optional[float] = field(default=None, metadata={"help": "Clip gradients to this norm."})
    mixed_precision: Optional[str] = field(default=None, metadata={"help": "no, fp16, bf16 (default: "
                                           "accelerate's config)."})
    keep_freed_memory: bool = field(default=True, metadata={"help": "Let glibc's malloc keep freed host memory "
                                    "for the next step instead of page-faulting it in again (Linux; see "
                                    "procrustean/train/memory.py)."})
    channels_last: bool = field(default=False, metadata={"help": "Train in the channels-last memory format (faster "
                                "convolutions in bf16 / fp16 on GPUs, as timm's --channels-last)."})
    torch_compile: bool = field(default=False, metadata={"help": "torch.compile the training model through "
                                "Accelerate (as transformers' torch_compile, timm's --torchcompile); the weakening "
                                "compiles with it, without graph breaks. Use it on GPUs for long runs: each graph "
                                "compiles for 0.5-2 minutes on a CPU (training, with the batch size dynamic; again "
                                "when the weakening stops or DRW starts; evaluation). Off by default: on this "
                                "project's 2-core CPU it gained 1.3x on ResNet-32, lost on ConvNeXt-atto (0.86x), "
                                "and the weakening cost more compiled than eager at stage:1 (docs/RESULTS.md, "
                                "Cost). Checkpoints hold the plain model (a run resumes with or without it); the "
                                "export is always the plain, uncompiled backbone."})
    torch_compile_mode: Optional[str] = field(default=None, metadata={"help": "torch.compile mode: default, "
                                              "reduce-overhead (CUDA graphs), max-autotune, "
                                              "max-autotune-no-cudagraphs. "
                                              "Setting it turns --torch_compile on (as in transformers)."})
    torch_compile_backend: Optional[str] = field(default=None, metadata={
        "help": "torch.compile backend (default inductor). Setting it turns --torch_compile on (as in transformers)."})
    # ---------------------------------------------------------------- run
    logging_steps: int = field(default=25, metadata={"help": "Every N optimizer steps: the loss on the progress bar "
                               "(or one progress line, see --progress_display) and the check for a non-finite loss "
                               "(also before every checkpoint and at every "
                               "epoch's end); the steps in between never wait for the device."})
    progress_display: str = field(default="auto", metadata={"help": "auto: a live progress bar when stderr is a "
                                  "terminal, else one line per --logging_steps (step, epoch, loss, lr, samples/s, "
                                  "ETA: a log file grows with the steps, not with time); bar or lines force either."})
    seed: int = field(default=0, metadata={"help": "Seed for data order, augmentation, init and weakening."})
    output_dir: str = field(default="outputs/run", metadata={"help": "Run directory."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace another run in output_dir."})
    checkpointing_steps: str = field(default="epoch", metadata={"help": "'epoch', an integer number of steps, "
                                     "or 'no'."})
    checkpoints_total_limit: Optional[int] = field(default=2, metadata={"help": "Keep only the newest N."})
    resume_from_checkpoint: Optional[str] = field(default=None, metadata={"help": "A checkpoint folder or "
                                                  "'latest'."})
    report_to: str = field(default="tensorboard", metadata={"help": "Accelerate trackers: tensorboard, wandb, "
                           "all, none, or a comma list."})
    push_to_hub: Optional[str] = field(default=None, metadata={"help": "Hub repo id ('owner/name') to publish to."})
    hub_strategy: str = field(default="end", metadata={"help": "What is published and when, as in transformers' Trainer: "
                              "end, every_save, checkpoint (plus last-checkpoint/) or all_checkpoints."})
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the Hub repo private."})
    hub_token: Optional[str] = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN or `hf auth login`); "
                                     "never written to the saved config."})
    hub_revision: Optional[str] = field(default=None, metadata={"help": "Branch of the Hub repo to publish to (created "
                                        "if missing)."})
    deterministic: bool = field(default=False, metadata={"help": "torch deterministic algorithms."})
    # ---------------------------------------------------------------- diagnostics
    eval_every_epochs: int = field(default=1, metadata={"help": "Evaluate every N epochs (and after the last)."})
    eval_train_accuracy: bool = field(default=False, metadata={"help": "Also measure per-class accuracy on the "
                                      "(imbalanced) training split in eval mode, without augmentation."})
    log_feature_gradients: bool = field(default=False, metadata={"help": "Log the per-class mean norm of the "
                                        "per-sample loss gradient w.r.t. the classifier's input feature."})

    def __post_init__(self) -> None:
        """Fail on malformed options at parse time, before any data is read, with the library's own checks."""
        from ..data.imbalance import parse_imbalance
        from ..hub.publisher import check_hub_strategy
        from ..hub.push import check_repo_id
        from ..losses import check_loss_name
        from ..model import check_location_name
        from ..policy import check_policy_settings

        parse_imbalance(self.imbalance)
        check_loss_name(self.loss)
        check_location_name(self.weakening_location)
        check_policy_settings(rule=self.weakening_rule, gamma=self.weakening_gamma, lam_range=(self.lam_min, self.lam_max),
                              partner=self.weakening_partner, progress_margin=self.progress_margin,
                              progress_momentum=self.progress_momentum, progress_interval=self.progress_interval,
                              progress_samples=self.progress_samples)
        check_hub_strategy(self.hub_strategy, checkpointing=self.checkpointing_steps != "no" or not self.push_to_hub)
        if self.push_to_hub:
            check_repo_id(self.push_to_hub)
        choices = {"train_crop": ("pad4", "rrc"), "data_path": ("pil", "in_memory"),
                   "lr_scheduler": ("multistep", "step", "cosine", "constant"),
                   "mixed_precision": (None, "no", "fp16", "bf16", "fp8"),
                   "progress_display": ("auto", "bar", "lines")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UsageError(f"--{name} {getattr(self, name)!r} is not one of {list(allowed)}.")
        if not (self.checkpointing_steps in ("epoch", "no") or self.checkpointing_steps.isdigit()
                and int(self.checkpointing_steps) > 0):
            raise UsageError(f"--checkpointing_steps {self.checkpointing_steps!r}: use 'epoch', 'no' or a positive "
                             "number of steps.")
        for name in ("epochs", "batch_size", "eval_batch_size", "gradient_accumulation_steps", "eval_every_epochs",
                     "in_chans", "logging_steps"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be >= 1, got {getattr(self, name)}.")
        self._check_ranges()
        if self.num_workers is not None and self.num_workers < 0:
            raise UsageError(f"--num_workers must be >= 0, got {self.num_workers}.")
        if self.max_train_steps is not None and self.max_train_steps < 1:
            raise UsageError(f"--max_train_steps must be >= 1, got {self.max_train_steps}.")
        if self.model_kwargs:
            import json

            try:
                if not isinstance(json.loads(self.model_kwargs), dict):
                    raise ValueError
            except ValueError:
                raise UsageError(f"--model_kwargs must be a JSON object, got {self.model_kwargs!r}.") from None
        if self.crop_pct is not None and not 0 < self.crop_pct <= 1:
            raise UsageError(f"--crop_pct must be in (0, 1], got {self.crop_pct}.")
        if self.interpolation not in (None, "bilinear", "bicubic", "nearest"):
            raise UsageError(f"--interpolation {self.interpolation!r} is not one of ['bilinear', 'bicubic', 'nearest'].")
        if self.data_path == "in_memory" and self.train_crop != "pad4":
            raise UsageError("--data_path in_memory does the pad-4 crop and flip on the device; with --train_crop "
                             f"{self.train_crop} use --data_path pil.")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise UsageError("--mixup_alpha / --cutmix_alpha must be >= 0.")
        self._check_torch_compile()

    def _check_torch_compile(self) -> None:
        """HF's spelling and rule: a mode or a backend turns compiling on; both are checked against torch's lists."""
        if self.torch_compile_mode is not None or self.torch_compile_backend is not None:
            self.torch_compile = True
        if not self.torch_compile:
            return
        modes = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
        if self.torch_compile_mode is not None and self.torch_compile_mode not in modes:
            raise UsageError(f"--torch_compile_mode {self.torch_compile_mode!r} is not one of {list(modes)}.")
        if self.torch_compile_backend is not None:
            import torch._dynamo

            backends = torch._dynamo.list_backends(exclude_tags=())
            if self.torch_compile_backend not in backends:
                raise UsageError(f"--torch_compile_backend {self.torch_compile_backend!r} is not one of {backends}.")

    def _check_ranges(self) -> None:
        """Numbers outside their meaning (a negative learning rate, a momentum of 1.5, ...) and names the libraries
        would refuse later with a traceback (optimizer, tracker), refused while parsing."""
        bounds = {  # name: (lowest, whether it is allowed, highest, whether it is allowed); None: unbounded
            "lr": (0, False, None, False), "weight_decay": (0, True, None, False), "momentum": (0, True, 1, False),
            "max_grad_norm": (0, False, None, False), "warmup_epochs": (0, True, None, False),
            "lr_decay_rate": (0, False, None, False), "min_lr": (0, True, None, False),
            "drw_epoch": (0, True, None, False), "weakening_stop_epoch": (0, True, None, False),
            "max_per_class": (1, True, None, False), "max_eval_samples": (1, True, None, False),
            "checkpoints_total_limit": (1, True, None, False), "loss_tau": (0, True, None, False),
            "focal_gamma": (0, True, None, False), "cdt_gamma": (0, True, None, False),
            "ldam_max_margin": (0, False, None, False), "ldam_scale": (0, False, None, False),
            "drw_beta": (0, True, 1, False), "drop_rate": (0, True, 1, False),
            "img_size": (8, True, None, False),  # smaller inputs vanish in the models' downsampling
            "seed": (0, True, 2**32 - 1, True)}  # numpy's seed range
        for name, (low, low_ok, high, high_ok) in bounds.items():
            value = getattr(self, name)
            if value is None:
                continue
            below = value < low or value == low and not low_ok
            above = high is not None and (value > high or value == high and not high_ok)
            if below or above:
                span = f"{'>=' if low_ok else '>'} {low}" + (f" and {'<=' if high_ok else '<'} {high}"
                                                             if high is not None else "")
                unset = " (none: no limit)" if name in ("checkpoints_total_limit", "max_grad_norm") else ""
                raise UsageError(f"--{name} must be {span}{unset}, got {value}.")
        if self.in_chans not in (1, 3):
            raise UsageError(f"--in_chans must be 1 (grey) or 3 (RGB), got {self.in_chans}: images are read as one or "
                             "the other.")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is not None and len(values) not in (1, self.in_chans):
                raise UsageError(f"--{name} has {len(values)} values but --in_chans is {self.in_chans}: give 1 or "
                                 f"{self.in_chans}.")
        if self.std is not None and min(self.std) <= 0:
            raise UsageError(f"--std values must be > 0, got {self.std}.")
        if sorted(set(self.lr_decay_epochs)) != list(self.lr_decay_epochs) or min(self.lr_decay_epochs, default=0) < 0:
            raise UsageError(f"--lr_decay_epochs must be increasing epoch numbers >= 0, got {self.lr_decay_epochs}.")
        if not self.dataset.strip():
            raise UsageError("--dataset is empty: name a Hub data set, a folder, a parquet file or 'fashion_mnist'.")
        self._check_names()

    def _check_names(self) -> None:
        """The optimizer and the trackers: names timm and accelerate would refuse with a traceback."""
        from accelerate.utils import LoggerType
        from timm.optim import list_optimizers

        optimizers = set(list_optimizers())
        name = self.optimizer.lower()
        if name not in optimizers and name.removeprefix("lookahead_") not in optimizers:
            close = difflib.get_close_matches(name, sorted(optimizers), n=3)
            raise UsageError(f"--optimizer {self.optimizer!r} is not a timm optimizer" + (
                f" (did you mean {', '.join(close)}?)" if close else "") + "; see timm.optim.list_optimizers().")
        trackers = {t.value for t in LoggerType} | {"none"}
        unknown = [t for t in self.report_to.split(",") if t.strip() not in trackers]
        if unknown:
            raise UsageError(f"--report_to {self.report_to!r}: unknown tracker(s) {unknown}; use none, all or a comma "
                             f"list of {sorted(trackers - {'none', 'all'})}.")

    def to_dict(self) -> Dict[str, Any]:
        """The resolved options, as saved with the run, its checkpoints, export and card (the token hidden)."""
        values = dataclasses.asdict(self)
        if values["hub_token"]:
            values["hub_token"] = "<hidden>"
        return values

    def save(self, path: Path | str) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _check_keys(keys: Sequence[str], source: str) -> None:
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = [k for k in keys if k not in names]
    if unknown:
        hints = {k: difflib.get_close_matches(k, names, n=1) for k in unknown}
        said = ", ".join(f"{k!r}" + (f" (did you mean {v[0]!r}?)" if v else "") for k, v in hints.items())
        raise UsageError(f"Unknown option(s) in {source}: {said}. See `recipes/train.py --help`.")


def _yaml_problem(error: yaml.YAMLError, path: Path) -> str:
    """Where the parser stopped and what it saw: 'line 3, column 7: <problem> (<context>); the line reads ...'."""
    mark = getattr(error, "problem_mark", None)
    problem = " ".join(str(getattr(error, "problem", None) or error).split())
    context = getattr(error, "context", None)
    if context:
        problem += f" ({context}" + (f" from line {error.context_mark.line + 1}" if error.context_mark else "") + ")"
    if mark is None:
        return problem
    lines = path.read_text(encoding="utf-8").splitlines()
    text = lines[mark.line].strip() if mark.line < len(lines) else ""
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" + (f"; the line reads {text!r}" if text else "")


def load_config_file(path: Path | str) -> Dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"Config file {path} is a folder; pass the YAML file, e.g. "
                         "recipes/configs/fmnist_lt_step100.yaml.")
    if not path.is_file():
        raise MissingInputError(f"Config file {path} does not exist.")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise UsageError(f"Config file {path} is not valid YAML: {_yaml_problem(error, path)}. Fix it: one "
                         "'option: value' per line, no indentation or tabs, lists as [1, 2], quote values holding ': ' "
                         "or ' #'.") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"Config file {path} is not UTF-8 text (byte {error.start}): is it the YAML file? "
                         "Save it as UTF-8.") from None
    if not isinstance(values, dict):
        raise UsageError(f"Config file {path} must hold a mapping of option: value.")
    _check_keys(list(values), str(path))
    return {key: _checked_value(key, value, path) for key, value in values.items()}


def _checked_value(key: str, value: Any, path: Path) -> Any:
    """A config file's value of the option's type (a string is left to the parser, as on the command line)."""
    hint = typing.get_type_hints(TrainConfig)[key]
    optional = type(None) in typing.get_args(hint)
    kind = next((t for t in typing.get_args(hint) if t is not type(None)), hint) if optional else hint
    element = typing.get_args(kind)[0] if typing.get_origin(kind) in (list, List) else None
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}

    def fits(item: Any, wanted: type) -> bool:
        if wanted is bool:
            return isinstance(item, (bool, str))
        if isinstance(item, bool):
            return False
        return isinstance(item, {int: (int, str), float: (int, float, str), str: (str, int, float)}[wanted])

    if value is None:
        if optional:
            return None
        wanted = f"a list of {names[element]}s" if element else names[kind]
        raise UsageError(f"Config file {path}: '{key}' has no value; give it {wanted} or remove the line.")
    if element is not None:
        items = value if isinstance(value, list) else [value]  # a scalar is a one-element list, as on the command line
        if all(fits(item, element) and not isinstance(item, str) for item in items):
            return items
        raise UsageError(f"Config file {path}: '{key}' must be a list of {names[element].split(' ', 1)[-1]}s, got "
                         f"{value!r}; write e.g. '{key}: [{', '.join(map(str, _example(key)))}]'.")
    if not fits(value, kind):
        raise UsageError(f"Config file {path}: '{key}' must be {names[kind]}, got {value!r} "
                         f"({type(value).__name__}); write e.g. '{key}: {_example(key)}'.")
    return str(value) if kind is str else value


def _example(key: str) -> Any:
    """The option's default as an example value (a representative one when the default is none)."""
    default = next(f for f in dataclasses.fields(TrainConfig) if f.name == key)
    value = default.default_factory() if default.default_factory is not dataclasses.MISSING else default.default
    if value is not None:
        return str(value).lower() if isinstance(value, bool) else value
    hint = typing.get_type_hints(TrainConfig)[key]
    kind = typing.get_args(hint)[0]
    element = typing.get_args(kind)[0] if typing.get_origin(kind) in (list, List) else None
    return {int: 10, float: 0.5, str: "value"}.get(kind) or ([0.5, 0.5, 0.5] if element is float else [0, 1, 2])


def _accept_none(parser) -> None:
    """``--option none`` unsets an option whose default is none (e.g. a config file's ``drw_epoch``)."""
    optional = {f.name for f in dataclasses.fields(TrainConfig) if f.default is None}
    for action in parser._actions:
        if action.dest in optional and action.type is not None and action.nargs is None:
            convert = action.type
            action.type = lambda value, convert=convert: None if value.lower() == "none" else convert(value)
            action.type.__name__ = convert.__name__  # argparse names the type in its "invalid ... value" error


def parse_config(argv: Optional[Sequence[str]] = None) -> TrainConfig:
    """``--config FILE`` gives defaults; every other ``--option value`` overrides them."""
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(TrainConfig, description=__doc__, allow_abbrev=False)
    parser.add_argument("--config", default=None, help="YAML file with any of the options below.")
    _accept_none(parser)
    known, _ = parser.parse_known_args(argv)
    if known.config:
        parser.set_defaults(**load_config_file(known.config))
    config, *_, rest = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if rest:
        flags = [r.lstrip("-").split("=")[0] for r in rest if r.startswith("--")]
        _check_keys(flags, "the command line")
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    return config
