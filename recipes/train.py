"""Procrustean training of any timm model on an imbalanced image data set, with HF Accelerate.

    accelerate launch recipes/train.py --config recipes/configs/fmnist_lt_step100.yaml [--option value ...]
    python recipes/train.py --config ... (one process)

Runs on 1 CPU, 1 GPU, many GPUs and many nodes (whatever `accelerate launch` is configured for). Reads an HF dataset, makes
its training split imbalanced (``--imbalance``), trains with class-size-aware feature weakening
(``--weakening_location``, ``--weakening_rule``), evaluates long-tail metrics every epoch, checkpoints atomically (exact
resume with ``--resume_from_checkpoint latest``), and exports a checkpoint that loads with
``timm.create_model("local-dir:...")`` and ``AutoModelForImageClassification`` (``--push_to_hub REPO``).
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from procrustean import ProcrusteanCollator, ProcrusteanModel, WeakeningPolicy
from procrustean.data import (SampleSeededDataset, build_transforms, check_no_empty_classes, class_histogram,
                              load_image_dataset, make_imbalanced, model_data_config, verify_images,
                              with_image_transform)
from procrustean.data.counts import dataset_label_column
from procrustean.data.decoding import NamedReads, stop_on_unreadable_images
from procrustean.data.in_memory import DeviceAugment, InMemoryImages, decode_images
from procrustean.data.transforms import in_memory_pipeline
from procrustean.errors import UsageError
from procrustean.hub.publisher import HubPublisher
from procrustean.location_map import backbone_family
from procrustean.metrics.per_class import PerClassAccuracy
from procrustean.models import check_timm_model_name
from procrustean.train.checkpoints import (check_free_space, load_checkpoint, prepare_output_dir, resolve_resume,
                                          save_checkpoint)
from procrustean.train.config import TrainConfig, parse_config
from procrustean.train.diagnostics import FeatureGradientMonitor
from procrustean.train.distributed import NonFiniteWatch
from procrustean.train.evaluation import evaluate_model
from procrustean.train.loaders import loader_settings
from procrustean.train.memory import keep_freed_memory
from procrustean.train.metrics_log import MetricsLog
from procrustean.train.outputs import export_run, run_model_card, write_plots, write_results
from procrustean.train.progress_log import TrainingProgress, close_all as close_progress
from procrustean.train.resume_check import check_model_fits, check_optimizer_fits, check_weakening_location
from procrustean.train.setup import (build_loss_and_drw, build_mixup, build_model, build_optimizer_and_scheduler,
                                     check_input_size, compile_plugin, mark_batch_dynamic)
from procrustean.train.state import RunState


def training_function(config: TrainConfig) -> int:
    if config.keep_freed_memory:
        keep_freed_memory()  # activations reuse the same host pages step after step
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with=None if config.report_to == "none" else config.report_to.split(","),
        project_dir=os.path.join(config.output_dir, "logs"),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        dynamo_plugin=compile_plugin(config),
    )
    if accelerator.split_batches or accelerator.dispatch_batches:
        raise UsageError("split_batches / dispatch_batches are not supported: weakening partners must come from each "
                         "process's own batch. Remove them from the accelerate config.")
    check_timm_model_name(config.model)
    output_dir = Path(config.output_dir)
    if accelerator.is_main_process:
        prepare_output_dir(output_dir, resume=config.resume_from_checkpoint is not None,
                           overwrite=config.overwrite_output_dir)
    accelerator.wait_for_everyone()
    with accelerator.main_process_first():  # a Hub checkpoint is downloaded once, into the shared HF cache
        resume_path = resolve_resume(config.resume_from_checkpoint, output_dir, token=config.hub_token)
    publisher = None  # uploads in the background, main process only (--push_to_hub, --hub_strategy)
    if config.push_to_hub and accelerator.is_main_process:
        publisher = HubPublisher(config.push_to_hub, config.hub_strategy, staging_dir=output_dir / ".hub-staging",
                                 token=config.hub_token, private=config.hub_private_repo, revision=config.hub_revision)
    set_seed(config.seed)
    if config.deterministic:
        torch.use_deterministic_algorithms(True)

    # ---------------------------------------------------------------------------------- data
    data = load_image_dataset(config.dataset, dataset_config=config.dataset_config, image_column=config.image_column,
                              label_column=config.label_column, train_split=config.train_split,
                              eval_split=config.eval_split)
    train_set = data.train
    if config.imbalance != "none" or config.max_per_class is not None:  # with none: max_per_class of every class
        train_set = make_imbalanced(train_set, config.imbalance, label_column=data.label_column, seed=config.seed,
                                    max_per_class=config.max_per_class, num_classes=data.num_classes,
                                    class_order=config.imbalance_class_order)
    histogram = class_histogram(train_set, label_column=data.label_column, num_classes=data.num_classes,
                                class_names=data.class_names)
    check_no_empty_classes(histogram.counts, data.class_names)
    eval_set = data.eval
    if eval_set is not None and config.max_eval_samples and len(eval_set) > config.max_eval_samples:
        eval_set = eval_set.shuffle(seed=config.seed).select(range(config.max_eval_samples))
    if config.verify_images and accelerator.is_main_process:
        verify_images(train_set, data.image_column, config.train_split)
        if eval_set is not None:
            verify_images(eval_set, data.image_column, data.eval_split)

    # ---------------------------------------------------------------------------------- model and weakening
    backbone = build_model(config, data.num_classes)
    check_input_size(backbone, config)
    policy = WeakeningPolicy(histogram.counts, rule=config.weakening_rule, gamma=config.weakening_gamma,
                             lam_range=(config.lam_min, config.lam_max), partner=config.weakening_partner,
                             progress_margin=config.progress_margin, progress_momentum=config.progress_momentum,
                             progress_interval=config.progress_interval, progress_samples=config.progress_samples,
                             seed=config.seed)
    if accelerator.is_main_process:
        check_free_space(output_dir, backbone, checkpoints_kept=config.checkpoints_total_limit or 2)
    loss_fn, drw = build_loss_and_drw(config, histogram.counts)
    mixup, mixup_loss = build_mixup(config, data.num_classes)  # the labels-mixed control, not Procrustean
    weakening = config.weakening and mixup is None
    model = ProcrusteanModel(backbone, policy if weakening else None, location=config.weakening_location, loss=loss_fn,
                             fine_tuning=config.pretrained)
    weakening_location = model.location if weakening else None  # auto resolved: recorded with the run
    if resume_path is not None:  # the checkpoint's tensors must fit this model: else name the options that differ
        check_model_fits(resume_path, config, model)
        check_weakening_location(resume_path, weakening_location)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    accelerator.print(histogram.format())
    where = model.location + (f" ({config.weakening_location}: {model.location_evidence})"
                              if config.weakening_location == "auto" else "")
    accelerator.print(f"\nWeakening ({'on' if weakening else 'off'}, at {where}):\n"
                      + policy.summary(data.class_names))
    if weakening:  # what the weakening measured for this family, so a "no" is read before training, not after
        helps, summary = model.measured_outcome
        accelerator.print(f"Measured for {backbone_family(model.backbone)}: {summary}"
                          + ("" if helps else ". To train with the re-balancing loss alone: --weakening false."))

    geometry_options = dict(img_size=config.img_size, mean=config.mean, std=config.std, crop_pct=config.crop_pct,
                            interpolation=config.interpolation)
    eval_tf = build_transforms(backbone, is_training=False, **geometry_options)
    device_augment = None
    if config.data_path == "in_memory":  # decoded once; crop, flip and normalise on the device, batch by batch
        geometry, mean, std = in_memory_pipeline(backbone, **geometry_options)
        images = decode_images(train_set, geometry, data.image_column, "L" if config.in_chans == 1 else "RGB")
        train_data = InMemoryImages(images, dataset_label_column(train_set, data.label_column))
        device_augment = DeviceAugment(mean, std, seed=config.seed)
    else:  # timm's transforms per sample, seeded by (seed, epoch, the indices of each batch read)
        train_tf = build_transforms(backbone, is_training=True, train_crop=config.train_crop, **geometry_options)
        train_data = SampleSeededDataset(NamedReads(
            with_image_transform(train_set, train_tf, data.image_column, data.label_column, config.in_chans),
            config.train_split), seed=config.seed)
    # workers, pinned memory and persistent workers for this machine; the collator draws each batch's weakening
    # plan (from the policy's seed and the batch itself)
    loading = loader_settings(config.num_workers, config.data_path, accelerator.device)
    train_loader = DataLoader(train_data, batch_size=config.batch_size, shuffle=True, drop_last=mixup is not None,
                              collate_fn=ProcrusteanCollator(model.policy), **loading)

    def eval_loader_for(dataset, split):
        return DataLoader(NamedReads(with_image_transform(dataset, eval_tf, data.image_column, data.label_column,
                                                          config.in_chans), split),
                          batch_size=config.eval_batch_size, collate_fn=ProcrusteanCollator(),
                          **{**loading, "persistent_workers": False})

    eval_loader = eval_loader_for(eval_set, data.eval_split) if eval_set is not None else None
    train_eval_loader = eval_loader_for(train_set, config.train_split) if config.eval_train_accuracy else None

    # ---------------------------------------------------------------------------------- prepare
    steps_per_epoch = math.ceil(len(train_loader) / accelerator.num_processes / config.gradient_accumulation_steps)
    # --max_train_steps overrides --epochs (as in the HF examples)
    num_epochs = math.ceil(config.max_train_steps / steps_per_epoch) if config.max_train_steps else config.epochs
    total_steps = config.max_train_steps or num_epochs * steps_per_epoch
    optimizer, scheduler = build_optimizer_and_scheduler(config, model, steps_per_epoch, num_epochs)
    if resume_path is not None and (changed := check_optimizer_fits(resume_path, config, optimizer)):
        accelerator.print("Changed since the checkpoint (they apply from the resumed step): " + "; ".join(changed))
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    if device_augment is not None:
        device_augment.to(accelerator.device)
    eval_loader, train_eval_loader = (accelerator.prepare(loader) if loader is not None else None
                                      for loader in (eval_loader, train_eval_loader))
    gradients = FeatureGradientMonitor(backbone, data.num_classes) if config.log_feature_gradients else None
    state = RunState(PerClassAccuracy(data.num_classes), gradients,  # checkpointed as JSON (never pickle)
                     weakening_location=weakening_location)

    log = MetricsLog(output_dir, accelerator)
    if accelerator.is_main_process:
        config.save(output_dir / "training_config.yaml")
        log.write_json("class_histogram.json", histogram.to_dict())
    if accelerator.log_with:
        accelerator.init_trackers("procrustean", config=log.tracker_config(config))
    if resume_path is not None:
        accelerator.print(f"Resuming from {resume_path}")
        state.load_state_dict(load_checkpoint(accelerator, resume_path))
        log.restore(state.history)
    def write_outputs(verify: bool = True) -> Path:
        """all_results.json, plots/, the model card and export/ (main process): at the end, and at each save
        while publishing (so the Hub gets the latest weights and metrics)."""
        results = write_results(output_dir, state, histogram.counts, data.class_names)
        plots = write_plots(output_dir, state.history, data.class_names, histogram.counts)
        card = run_model_card(config, policy if weakening else None, results, plots)
        data_config = model_data_config(backbone, **geometry_options)
        return export_run(backbone, output_dir, card=card, plots=plots, config=config, class_names=data.class_names,
                          data_config=data_config, verify=verify)

    def checkpoint() -> None:
        state.last_checkpoint = str(save_checkpoint(accelerator, output_dir, state.step, config.checkpoints_total_limit,
                                                    run_state=state.state_dict()))
        if publisher is not None and config.hub_strategy != "end":
            publisher.publish(state.step, write_outputs(verify=False), Path(state.last_checkpoint))

    def read(loader):  # an unreadable image stops the run naming it, --verify_images and the last checkpoint
        return stop_on_unreadable_images(loader, lambda: state.last_checkpoint, verified=config.verify_images)

    def stop_on_non_finite_loss(where) -> int:
        if publisher is not None:
            publisher.close()  # what was queued before is still published
        return log.non_finite_loss(state, where)

    accelerator.print(f"\n{len(train_set)} training images, {steps_per_epoch} steps per epoch, "
                      f"{num_epochs} epochs, {total_steps} steps, {accelerator.num_processes} process(es)")

    # ---------------------------------------------------------------------------------- training loop
    # a live bar on a terminal; in a log file one line per --logging_steps (main process)
    progress = TrainingProgress(total_steps, state.step, initial_samples=state.train_samples,
                                mode=config.progress_display, enabled=accelerator.is_local_main_process)
    scheduler.step_update(state.step)
    unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)  # the schedules set its attributes
    watch = NonFiniteWatch(accelerator)
    for epoch in range(state.epoch, num_epochs):
        if state.step >= total_steps:
            break
        if device_augment is None:
            train_data.set_epoch(epoch)
        train_loader.set_epoch(epoch)
        unwrapped.weakening_enabled = config.weakening_stop_epoch is None or epoch < config.weakening_stop_epoch
        if drw is not None:
            drw.apply(unwrapped.loss, epoch)
        model.train()
        batches, epoch_start = train_loader, time.perf_counter()
        if state.batches_in_epoch:
            batches = accelerator.skip_first_batches(train_loader, state.batches_in_epoch)
        for batch in read(batches):
            if device_augment is not None:  # uint8 on the device -> cropped, flipped, normalised floats
                batch["pixel_values"] = device_augment(batch["pixel_values"], batch.pop("sample_index"), epoch)
            if config.channels_last:
                batch["pixel_values"] = batch["pixel_values"].contiguous(memory_format=torch.channels_last)
            if config.torch_compile:
                mark_batch_dynamic(batch)
            with accelerator.accumulate(model):
                if mixup is not None:  # labels mixed too: plain forward, soft-target loss
                    pixels, soft_targets = mixup(batch["pixel_values"], batch["labels"])
                    outputs = model(pixels)
                    outputs.loss = mixup_loss(outputs.logits, soft_targets)
                else:
                    outputs = model(**batch)  # weakened forward (training mode + labels + the batch's draws)
                accelerator.backward(outputs.loss)
                if gradients is not None:
                    gradients.update(batch["labels"], len(batch["labels"]) * config.gradient_accumulation_steps)
                if config.max_grad_norm and accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            watch.update(outputs.loss, epoch, state.step + 1, state.batches_in_epoch + 1)  # no host sync
            state.train_accuracy.update(outputs.logits.detach(), batch["labels"])
            state.batches_in_epoch += 1
            state.train_samples += len(batch["labels"]) * accelerator.num_processes
            if accelerator.sync_gradients:
                state.step += 1
                scheduler.step_update(state.step)
                progress.update(1)
                save_now = config.checkpointing_steps.isdigit() and state.step % int(config.checkpointing_steps) == 0
                log_now = state.step % config.logging_steps == 0 or state.step >= total_steps
                if (save_now or log_now) and (bad := watch.check()) is not None:  # every rank stops at the same step
                    return stop_on_non_finite_loss(bad)
                if log_now:  # the only host syncs for the loss
                    progress.log(state.step, epoch, outputs.loss.item(), optimizer.param_groups[0]["lr"],
                                 state.train_samples)
                if save_now:
                    checkpoint()
                if state.step >= total_steps:
                    break
        if (bad := watch.check()) is not None:  # before evaluating and checkpointing the epoch
            return stop_on_non_finite_loss(bad)

        # ------------------------------------------------------------------------------ evaluate (end of epoch)
        state.train_seconds += time.perf_counter() - epoch_start  # the training loop only, no evaluation
        train_metrics = state.train_accuracy.reduced(accelerator).compute()
        last_epoch = epoch == num_epochs - 1 or state.step >= total_steps
        evaluate_now = last_epoch or (epoch + 1) % config.eval_every_epochs == 0
        eval_metrics = evaluate_model(model, read(eval_loader), accelerator, histogram.counts) \
            if eval_loader is not None and evaluate_now else {}
        if train_eval_loader is not None and evaluate_now:
            clean = evaluate_model(model, read(train_eval_loader), accelerator, histogram.counts)
            train_metrics["clean_per_class_accuracy"] = clean["per_class_accuracy"]
            train_metrics["clean_class_averaged_accuracy"] = clean["class_averaged_accuracy"]
        if gradients is not None:
            train_metrics["feature_gradient_norm"] = gradients.compute(accelerator)
        if unwrapped.progress is not None:  # what the progress rule saw and decided (the same on every process)
            train_metrics["progress_accuracy"] = unwrapped.progress.accuracy().tolist()
            train_metrics["weakening_probabilities"] = unwrapped.progress.probabilities.tolist()
        log.epoch(state, epoch, train_metrics, eval_metrics, lr=optimizer.param_groups[0]["lr"],
                  weakening=weakening and unwrapped.weakening_enabled)
        state.next_epoch()
        if config.checkpointing_steps == "epoch":
            checkpoint()
    progress.close()

    # ---------------------------------------------------------------------------------- what the run leaves behind
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if not accelerator.is_main_process:
        return 0
    export_dir = write_outputs()  # all_results.json, plots/, the model card and export/, verified
    print(f"\nResults: {output_dir / 'all_results.json'}\nPlots: {output_dir / 'plots'}\n"
          f"Export (timm + transformers): {export_dir}")
    if publisher is not None:  # waits for the uploads still queued, then publishes the final export
        last = Path(state.last_checkpoint) if state.last_checkpoint else None
        if not publisher.finish(export_dir, last_checkpoint=last if last is not None and last.exists() else None):
            print(f"ERROR: the final publication to {config.push_to_hub} failed (see above); the local export and "
                  "checkpoints are intact.", file=sys.stderr)
            return 1
    return 0


def main() -> None:
    usage_error = None
    try:
        code = training_function(parse_config())
    except UsageError as error:  # bad input: one line, exit 2; anything else is a bug and keeps its traceback
        usage_error = error
    finally:
        close_progress()  # a bar's line ends before the error or the traceback is printed
    if usage_error is not None:
        print(f"error: {usage_error}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)


if __name__ == "__main__":
    main()
