"""The procrustean API in one page: long-tailed data -> weakening policy -> weakened training -> LT metrics.

    python examples/quickstart.py

Builds a small synthetic 10-class image set (class = a noisy oriented bar pattern), makes it
step-imbalanced (ratio 20), trains the registered CIFAR ResNet-8 for a few epochs on the CPU with
feature weakening where ``auto`` (the default location) puts it for this family (stage:1), and prints the long-tail
metrics. About a minute on 2 cores.
"""
import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features, Array3D
from torch.utils.data import DataLoader

import procrustean
from procrustean import ProcrusteanCollator, ProcrusteanModel, WeakeningPolicy

NUM_CLASSES, SIZE, PER_CLASS = 10, 16, 400


def synthetic_split(seed: int, per_class: int) -> Dataset:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    images, labels = [], []
    for label in range(NUM_CLASSES):
        angle = np.pi * label / NUM_CLASSES
        pattern = np.cos(2 * np.pi * 3 * (xx * np.cos(angle) + yy * np.sin(angle)))
        for _ in range(per_class):
            shift = rng.uniform(0, 2 * np.pi)
            img = np.cos(np.arccos(np.clip(pattern, -1, 1)) + shift) + rng.normal(0, 0.8, pattern.shape)
            images.append(img[None].astype(np.float32))
            labels.append(label)
    features = Features({"pixel_values": Array3D((1, SIZE, SIZE), "float32"),
                         "label": ClassLabel(num_classes=NUM_CLASSES)})
    return Dataset.from_dict({"pixel_values": images, "label": labels}, features=features)


def main() -> None:
    torch.manual_seed(0)
    train = procrustean.make_imbalanced(synthetic_split(0, PER_CLASS), "step:20", label_column="label", seed=0)
    test = synthetic_split(1, 100)
    print(procrustean.class_histogram(train, label_column="label").format())

    policy = WeakeningPolicy.from_dataset(train, label_column="label", gamma=1.0, lam_range=(0.5, 1.0), seed=0)
    print(policy.summary())
    model = ProcrusteanModel.from_timm("resnet8_cifar", policy, num_classes=NUM_CLASSES, in_chans=1)
    print(f"Weakening at {model.location} ({model.location_evidence}).\nMeasured for this family: "
          f"{model.measured_outcome.summary}")

    to_torch = lambda ds: ds.rename_column("label", "labels").with_format("torch")  # noqa: E731
    # the collator draws each batch's weakening plan; the model applies it at model.location
    train_loader = DataLoader(to_torch(train), batch_size=64, shuffle=True, collate_fn=ProcrusteanCollator(policy),
                              generator=torch.Generator().manual_seed(0))
    test_loader = DataLoader(to_torch(test), batch_size=256, collate_fn=ProcrusteanCollator())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    for epoch in range(6):
        model.train()
        for batch in train_loader:
            loss = model(**batch).loss  # weakened forward: major-class stage-1 features mixed, labels kept
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: last batch loss {loss.item():.3f}")

    model.eval()  # no weakening at inference: this is exactly model.backbone
    metric = procrustean.load_long_tail_accuracy()
    with torch.no_grad():
        for batch in test_loader:
            metric.add_batch(predictions=model(batch["pixel_values"]).logits.argmax(-1), references=batch["labels"])
    results = metric.compute(train_class_counts=policy.class_counts.tolist())
    for key in ("image_averaged_accuracy", "class_averaged_accuracy", "major_class_accuracy", "minor_class_accuracy"):
        print(f"{key}: {results[key]:.3f}")


if __name__ == "__main__":
    main()
