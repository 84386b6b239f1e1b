"""ProcrusteanModel + ProcrusteanCollator inside transformers.Trainer (CPU, offline): trains, weakens, resumes exactly."""
import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file

from procrustean import ProcrusteanCollator, ProcrusteanModel, WeakeningPolicy

LABELS = [0] * 24 + [1] * 6 + [2] * 2


def dataset():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(len(LABELS), 1, 16, 16, generator=g)
    return Dataset.from_dict({"pixel_values": images.numpy(), "labels": LABELS}).with_format("torch"), images


def model_and_collator(ds, rule="power", weaken=True, location="stage:1"):
    policy = WeakeningPolicy.from_dataset(ds, label_column="labels", num_classes=3, rule=rule, progress_interval=2,
                                          gamma=0.0, seed=0) if weaken else None
    torch.manual_seed(0)
    model = ProcrusteanModel.from_timm("resnet8_cifar", policy, location=location, num_classes=3, in_chans=1)
    return model, ProcrusteanCollator(policy)


def trainer_for(model, collator, ds, out, **overrides):
    from transformers import Trainer, TrainingArguments

    kwargs = dict(output_dir=str(out), max_steps=6, per_device_train_batch_size=8, per_device_eval_batch_size=16,
                  learning_rate=0.05, report_to=[], use_cpu=True, save_strategy="no", seed=0,
                  dataloader_num_workers=0, disable_tqdm=True)
    kwargs.update(overrides)
    return Trainer(model=model, args=TrainingArguments(**kwargs), train_dataset=ds, eval_dataset=ds,
                   data_collator=collator)


def weights(model):
    return {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}


def test_trainer_trains_weakens_and_predicts_unweakened(tmp_path):
    ds, images = dataset()
    model, collator = model_and_collator(ds)
    result = trainer_for(model, collator, ds, tmp_path / "a").train()
    assert result.global_step == 6 and torch.isfinite(torch.tensor(result.training_loss))
    baseline, plain = model_and_collator(ds, weaken=False)
    trainer_for(baseline, plain, ds, tmp_path / "b").train()
    trained, untouched = weights(model), weights(baseline)
    assert any(not torch.equal(trained[k], untouched[k]) for k in trained)  # the weakening changed the training
    trainer = trainer_for(model, collator, ds, tmp_path / "a")
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and torch.isfinite(torch.tensor(metrics["eval_loss"]))
    prediction = trainer.predict(ds)
    model.eval()
    with torch.no_grad():
        expected = model.backbone(images).numpy()
    assert abs(prediction.predictions - expected).max() < 1e-5  # no weakening at inference


@pytest.mark.parametrize("rule", ["power", "progress"])
def test_trainer_stop_and_resume_ends_with_identical_weights(tmp_path, rule):
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                control.should_save, control.should_training_stop = True, True

    ds, _ = dataset()
    full, collator = model_and_collator(ds, rule)
    trainer_for(full, collator, ds, tmp_path / "full").train()

    first, collator = model_and_collator(ds, rule)
    stopped = trainer_for(first, collator, ds, tmp_path / "run", save_strategy="steps", save_steps=100)
    stopped.add_callback(StopAfter())
    stopped.train()
    checkpoint = tmp_path / "run" / "checkpoint-3"
    assert checkpoint.is_dir()
    if rule == "progress":  # the statistics are part of the model's checkpoint
        assert "progress.seen" in load_file(checkpoint / "model.safetensors")

    resumed, collator = model_and_collator(ds, rule)
    trainer_for(resumed, collator, ds, tmp_path / "run").train(resume_from_checkpoint=str(checkpoint))
    a, b = weights(full), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    if rule == "progress":
        assert torch.equal(full.progress.seen, resumed.progress.seen) and resumed.progress._batches == 6


# ------------------------------------------------------------------------------------- ProcrusteanCallback
class RecordSchedule:
    """Records, before every step, the epoch Trainer is in, the weakening switch and the loss's class weight."""

    def __new__(cls):
        from transformers import TrainerCallback

        class Recorder(TrainerCallback):
            def __init__(self):
                self.steps = {}

            def on_step_begin(self, args, state, control, model=None, **kwargs):
                weight = model.loss.class_weight
                self.steps[state.global_step + 1] = (model.weakening_enabled,
                                                     None if weight is None else weight.clone())

        return Recorder()


def long_regime_model(ds):
    from procrustean import LDAMLoss

    policy = WeakeningPolicy.from_dataset(ds, label_column="labels", num_classes=3, rule="progress",
                                          progress_interval=2, seed=0)
    torch.manual_seed(0)
    return ProcrusteanModel.from_timm("resnet8_cifar", policy, loss=LDAMLoss(policy.class_counts), num_classes=3,
                                      in_chans=1, normed_head=True), ProcrusteanCollator(policy)


def test_callback_applies_the_recipes_schedule_and_resumes_exactly(tmp_path):
    from transformers import TrainerCallback

    from procrustean import DeferredReweighting, ProcrusteanCallback

    class StopAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 6:  # mid-epoch 1 (4 steps per epoch)
                control.should_save, control.should_training_stop = True, True

    ds, _ = dataset()  # 32 samples, batch 8: 4 steps per epoch, 3 epochs
    args = dict(max_steps=-1, num_train_epochs=3)
    schedule = dict(weakening_stop_epoch=2, drw_epoch=1)
    model, collator = long_regime_model(ds)
    full, recorded = trainer_for(model, collator, ds, tmp_path / "full", **args), RecordSchedule()
    full.add_callback(ProcrusteanCallback(**schedule))
    full.add_callback(recorded)
    full.train()

    drw = DeferredReweighting(model.policy.class_counts, start_epoch=1)
    for step, (weakening, weight) in recorded.steps.items():
        epoch = (step - 1) // 4  # as recipes/train.py: weakening while epoch < stop, DRW weights from drw_epoch
        assert weakening == (epoch < 2), step
        expected = drw.weight_for_epoch(epoch)
        assert (weight is None) if expected is None else torch.equal(weight, expected), step
    assert sorted(recorded.steps) == list(range(1, 13))

    first, collator = long_regime_model(ds)
    stopped = trainer_for(first, collator, ds, tmp_path / "run", save_strategy="steps", save_steps=100, **args)
    stopped.add_callback(ProcrusteanCallback(**schedule))
    stopped.add_callback(StopAfter())
    stopped.train()
    resumed_model, collator = long_regime_model(ds)
    resumed, after = trainer_for(resumed_model, collator, ds, tmp_path / "run", **args), RecordSchedule()
    resumed.add_callback(ProcrusteanCallback(**schedule))
    resumed.add_callback(after)
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-6"))
    assert sorted(after.steps) == list(range(7, 13))
    for step, (weakening, weight) in after.steps.items():  # the resumed run is in the same schedule
        assert weakening == recorded.steps[step][0] and torch.equal(weight, recorded.steps[step][1]), step
    a, b = weights(model), weights(resumed_model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_callback_refuses_drw_without_counts_or_a_weighted_loss():
    from procrustean import ProcrusteanCallback
    from procrustean.errors import UsageError

    plain = ProcrusteanModel.from_timm("resnet8_cifar", None, num_classes=3, in_chans=1)
    with pytest.raises(UsageError, match="class_counts"):
        ProcrusteanCallback(drw_epoch=1).apply(plain, 0)
    plain.loss = torch.nn.CrossEntropyLoss()  # torch's: takes no class weight after construction
    with pytest.raises(UsageError, match="LDAMLoss"):
        ProcrusteanCallback(drw_epoch=1, class_counts=[24, 6, 2]).apply(plain, 1)
    with pytest.raises(UsageError, match="weakening_stop_epoch"):
        ProcrusteanCallback(weakening_stop_epoch=-1)
    compiled = torch.compile(plain)  # what Trainer may hand over: the wrapper, unwrapped to set the switch
    ProcrusteanCallback(weakening_stop_epoch=1).apply(compiled, 1)
    assert plain.weakening_enabled is False


def test_callback_logs_what_was_measured_for_the_family_at_train_begin(caplog):
    """As the recipe prints it: informational where the weakening helped the family, a warning where it did not."""
    import logging
    from types import SimpleNamespace

    import timm

    from procrustean import ProcrusteanCallback
    from procrustean.location_map import MEASURED_OUTCOMES

    policy = WeakeningPolicy([24, 6, 2])
    state = SimpleNamespace(is_world_process_zero=True, epoch=0.0)
    with caplog.at_level(logging.INFO, logger="procrustean.trainer_callback"):
        cifar = ProcrusteanModel.from_timm("resnet8_cifar", policy, num_classes=3, in_chans=1)
        ProcrusteanCallback().on_train_begin(None, state, None, model=cifar)
        mobile = ProcrusteanModel(timm.create_model("mobilenetv3_small_050", num_classes=3), policy)
        ProcrusteanCallback().on_train_begin(None, state, None, model=torch.compile(mobile))
        ProcrusteanCallback().on_train_begin(None, state, None, model=ProcrusteanModel(mobile.backbone, None))
    (info, warning) = caplog.records  # nothing for a model without a policy: it does not weaken
    assert info.levelno == logging.INFO and MEASURED_OUTCOMES["CifarResNet"].summary in info.getMessage()
    assert warning.levelno == logging.WARNING and "Measured for MobileNetV3" in warning.getMessage()
    assert "at stage:0" in warning.getMessage() and "without a policy" in warning.getMessage()


# ------------------------------------------------------------------------------------- the generator-drawn path
@pytest.mark.parametrize("collator_kind, rule", [("procrustean", "power"), ("procrustean", "progress"),
                                                 ("default", "power")])
def test_generator_drawn_path_resumes_exactly(tmp_path, collator_kind, rule):
    """No draws from the collator: the model draws from its policy's generator, whose state is in the checkpoint."""
    from transformers import DefaultDataCollator, TrainerCallback

    class StopAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                control.should_save, control.should_training_stop = True, True

    def model_and_plain_collator():
        model, _ = model_and_collator(ds, rule)
        return model, ProcrusteanCollator() if collator_kind == "procrustean" else DefaultDataCollator()

    ds, _ = dataset()
    full, collator = model_and_plain_collator()
    trainer_for(full, collator, ds, tmp_path / "full").train()

    first, collator = model_and_plain_collator()
    stopped = trainer_for(first, collator, ds, tmp_path / "run", save_strategy="steps", save_steps=100)
    stopped.add_callback(StopAfter())
    stopped.train()
    checkpoint = tmp_path / "run" / "checkpoint-3"
    assert "generator_state.state" in load_file(checkpoint / "model.safetensors")

    resumed, collator = model_and_plain_collator()
    trainer_for(resumed, collator, ds, tmp_path / "run").train(resume_from_checkpoint=str(checkpoint))
    a, b = weights(full), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(full.policy.generator.get_state(), resumed.policy.generator.get_state())
