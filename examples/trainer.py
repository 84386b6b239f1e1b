"""Procrustean training in ``transformers.Trainer``: the long-regime winner on Fashion-MNIST-LT, with resume and a
push-ready export.

    python examples/trainer.py                                   # about 2 minutes on 2 CPU cores
    python examples/trainer.py --resume_from_checkpoint latest   # continue the run in --output_dir
    python examples/trainer.py --epochs 200 --stop_epoch 160 --max_per_class 6000 --torch_compile   # full scale, GPU

The configuration that won the long regime (docs/RESULTS.md, issue 9's verdict; recipes/configs/
cifar10_lt_step100.yaml): the progress rule at stage:1, LDAM with a normalised (cosine) head, DRW's
class-balanced weights from epoch 160 of 200 and the weakening stopped there. Here the schedule is scaled to
``--epochs`` (default 10, DRW and the stop at ``--stop_epoch``, default 8: 80% as 160 / 200) on a subsample of
Fashion-MNIST (``--max_per_class`` images of the largest class, step-100 imbalance), so that it runs on a CPU.
Scale up with the options above; the learning-rate schedule follows Trainer's ``lr_scheduler_type``.

What procrustean adds to a plain Trainer script: ``ProcrusteanModel`` (weakens in training only),
``ProcrusteanCollator(policy)`` (draws each batch's plan with the batch: exact resume, any number of workers),
``ProcrusteanCallback`` (the weakening stop and DRW by epoch, as the recipe does). Trainer's checkpoints
(``checkpoint-N/``) hold the whole wrapper, progress statistics included, so ``--resume_from_checkpoint``
continues exactly; the final ``save_model`` writes the plain timm backbone with its config and model card
(``procrustean.export_model``), which ``timm.create_model("local-dir:...")`` and ``AutoModelForImageClassification``
load and ``huggingface_hub.upload_folder`` (or ``--push_to_hub``) publishes as is.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Optional

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

import procrustean
from procrustean import (LDAMLoss, ProcrusteanCallback, ProcrusteanCollator, ProcrusteanModel, WeakeningPolicy,
                         export_model, render_model_card)
from procrustean.data import (SampleSeededDataset, build_transforms, class_histogram, load_image_dataset,
                              make_imbalanced, model_data_config, with_image_transform)

MEAN, STD = [0.2860], [0.3530]  # Fashion-MNIST's, as recipes/configs/fmnist_lt_step100.yaml


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/trainer_fmnist_lt")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--stop_epoch", type=int, default=8, help="DRW on and weakening off from this (0-based) epoch")
    parser.add_argument("--max_per_class", type=int, default=1000, help="images of the largest class (6000: all)")
    parser.add_argument("--max_eval_samples", type=int, default=2000)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume_from_checkpoint", default=None, help="a checkpoint-N folder, or 'latest'")
    parser.add_argument("--torch_compile", action="store_true", help="TrainingArguments(torch_compile=True): for GPUs")
    parser.add_argument("--push_to_hub", default=None, help="a Hub repo id to publish the export to, at the end")
    return parser.parse_args(argv)


class SeedAugmentationByEpoch(TrainerCallback):
    """``SampleSeededDataset`` seeds each image's augmentation by (seed, epoch, index): tell it the epoch, so that a
    resumed run augments the remaining batches as the uninterrupted run did."""

    def __init__(self, dataset: SampleSeededDataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs) -> None:
        self.dataset.set_epoch(int(math.floor(state.epoch or 0.0)))


class ExportingTrainer(Trainer):
    """Checkpoints as Trainer writes them (the whole ProcrusteanModel: exact resume); ``save_model()`` called by the
    user writes the push-ready export of the plain backbone instead."""

    def __init__(self, *args, class_names: list, data_config: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.class_names, self.data_config = class_names, data_config
        self.model_card: Optional[str] = None  # README.md of the export, once the results are known

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
        if _internal_call:  # a checkpoint
            return super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            export_model(self.model.backbone, output_dir or self.args.output_dir, label_names=self.class_names,
                         data_config=self.data_config, model_card=self.model_card)


def main(argv=None) -> None:
    args = parse_args(argv)
    data = load_image_dataset("fashion_mnist", eval_split="test")  # Debian's files offline, the Hub copy online
    train = make_imbalanced(data.train, "step:100", label_column=data.label_column, seed=args.seed,
                            max_per_class=args.max_per_class, num_classes=data.num_classes)
    test = data.eval.shuffle(seed=args.seed).select(range(min(args.max_eval_samples, len(data.eval))))
    histogram = class_histogram(train, label_column=data.label_column, num_classes=data.num_classes,
                                class_names=data.class_names)
    print(histogram.format())

    policy = WeakeningPolicy(histogram.counts, rule="progress", seed=args.seed)  # the recipe's defaults otherwise
    torch.manual_seed(args.seed)
    model = ProcrusteanModel.from_timm("resnet8_cifar", policy, location="stage:1", loss=LDAMLoss(histogram.counts),
                                       num_classes=data.num_classes, in_chans=1, normed_head=True)
    backbone = model.backbone
    train_tf = build_transforms(backbone, is_training=True, img_size=28, train_crop="pad4", mean=MEAN, std=STD)
    eval_tf = build_transforms(backbone, is_training=False, img_size=28, mean=MEAN, std=STD)
    train_data = SampleSeededDataset(with_image_transform(train, train_tf, data.image_column, data.label_column, 1),
                                     seed=args.seed)
    test_data = with_image_transform(test, eval_tf, data.image_column, data.label_column, 1)

    training_args = TrainingArguments(
        output_dir=args.output_dir, num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=256, learning_rate=args.lr, weight_decay=2e-4, optim="sgd",
        optim_args="momentum=0.9", lr_scheduler_type="cosine", warmup_steps=0.05, seed=args.seed,
        eval_strategy="epoch", save_strategy="epoch", save_total_limit=2, logging_steps=25, report_to=[],
        dataloader_num_workers=0, remove_unused_columns=False, torch_compile=args.torch_compile,
        push_to_hub=False, use_cpu=not torch.cuda.is_available())
    trainer = ExportingTrainer(
        model=model, args=training_args, train_dataset=train_data, eval_dataset=test_data,
        data_collator=ProcrusteanCollator(policy),  # each batch's weakening plan, drawn with the batch
        callbacks=[ProcrusteanCallback(weakening_stop_epoch=args.stop_epoch, drw_epoch=args.stop_epoch),
                   SeedAugmentationByEpoch(train_data)],
        class_names=data.class_names, data_config=model_data_config(backbone, img_size=28, mean=MEAN, std=STD))

    resume = args.resume_from_checkpoint
    if resume == "latest":
        resume = get_last_checkpoint(args.output_dir)
        if resume is None:
            raise SystemExit(f"error: no checkpoint-N folder in {args.output_dir} to resume")
    trainer.train(resume_from_checkpoint=resume)

    predictions = trainer.predict(test_data)  # eval mode: the plain backbone, never weakened
    metric = procrustean.load_long_tail_accuracy()
    results = metric.compute(predictions=predictions.predictions.argmax(-1), references=predictions.label_ids,
                             train_class_counts=list(histogram.counts))
    for key in ("image_averaged_accuracy", "class_averaged_accuracy", "major_class_accuracy", "minor_class_accuracy"):
        print(f"{key}: {results[key]:.4f}")

    export_dir = Path(args.output_dir) / "export"
    trainer.model_card = render_model_card(
        repo_id_or_name=args.push_to_hub or export_dir.name, model_name="resnet8_cifar", dataset="fashion_mnist",
        class_names=data.class_names, class_counts=list(histogram.counts), imbalance="step:100",
        weakening=policy.config(), training_config={**vars(args), "loss": "ldam", "drw_epoch": args.stop_epoch,
                                                    "weakening_stop_epoch": args.stop_epoch,
                                                    "model_kwargs": {"normed_head": True}},
        metrics=results, command="python examples/trainer.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    trainer.save_model(str(export_dir))  # push-ready: timm + transformers layout, the plain backbone
    print(f"Export: {export_dir}  (timm.create_model('local-dir:{export_dir}'), "
          "AutoModelForImageClassification.from_pretrained)")
    if args.push_to_hub:
        from huggingface_hub import create_repo, upload_folder

        create_repo(args.push_to_hub, exist_ok=True)
        upload_folder(repo_id=args.push_to_hub, folder_path=str(export_dir), commit_message="Procrustean training")


if __name__ == "__main__":
    main()
