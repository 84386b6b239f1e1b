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
