"""ProcrusteanModel + ProcrusteanCollator inside transformers.Trainer (CPU, offline)."""
import torch
from datasets import Dataset

from procrustean import ProcrusteanCollator, ProcrusteanModel, WeakeningPolicy


def test_trainer_trains_and_evaluates(tmp_path):
    from transformers import Trainer, TrainingArguments

    g = torch.Generator().manual_seed(0)
    labels = [0] * 24 + [1] * 6 + [2] * 2
    images = torch.rand(len(labels), 1, 16, 16, generator=g)
    ds = Dataset.from_dict({"pixel_values": images.numpy(), "labels": labels}).with_format("torch")
    policy = WeakeningPolicy.from_dataset(ds, label_column="labels", num_classes=3, seed=0)
    model = ProcrusteanModel.from_timm("resnet8_cifar", policy, location="random", num_classes=3, in_chans=1)
    before = [p.detach().clone() for p in model.backbone.parameters()]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=8,
                             per_device_eval_batch_size=16, learning_rate=0.05, report_to=[], use_cpu=True,
                             save_strategy="no", logging_steps=1, seed=0, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=ds, eval_dataset=ds,
                      data_collator=ProcrusteanCollator())
    result = trainer.train()
    assert result.global_step == 4 and torch.isfinite(torch.tensor(result.training_loss))
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.backbone.parameters()))
    assert model.last_plan is not None  # the weakening ran during training
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and torch.isfinite(torch.tensor(metrics["eval_loss"]))
    prediction = trainer.predict(ds)
    assert prediction.predictions.shape == (len(labels), 3)
    model.eval()
    with torch.no_grad():
        expected = model.backbone(images).numpy()
    assert abs(prediction.predictions - expected).max() < 1e-5  # no weakening at inference


def test_trainer_with_the_progress_rule(tmp_path):
    """The progress statistics follow the Trainer's training forwards and move the probabilities."""
    from transformers import Trainer, TrainingArguments

    g = torch.Generator().manual_seed(0)
    labels = [0] * 24 + [1] * 6 + [2] * 2
    ds = Dataset.from_dict({"pixel_values": torch.rand(len(labels), 1, 16, 16, generator=g).numpy(),
                            "labels": labels}).with_format("torch")
    policy = WeakeningPolicy.from_dataset(ds, label_column="labels", num_classes=3, rule="progress",
                                          progress_interval=2, seed=0)
    prior = policy.probabilities.clone()
    model = ProcrusteanModel.from_timm("resnet8_cifar", policy, num_classes=3, in_chans=1)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=8, per_device_train_batch_size=8, learning_rate=0.05,
                             report_to=[], use_cpu=True, save_strategy="no", seed=0, dataloader_num_workers=0)
    Trainer(model=model, args=args, train_dataset=ds, data_collator=ProcrusteanCollator()).train()
    assert policy.progress.batches == 8 and policy.progress.refreshes == 4
    assert policy.progress.seen.sum() > 0 and not torch.equal(policy.probabilities, prior)
