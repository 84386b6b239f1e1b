"""The reference of ``benchmarks/throughput.py``: the training loop a user writes by hand, nothing else.

    python benchmarks/bare_loop.py --dataset DIR --data_path pil|in_memory --steps 45 [--batch_size 128]

The same model (CIFAR ResNet-8, 1 channel, 28 px), SGD, cross-entropy and augmentation (pad-4 random
crop, horizontal flip, normalisation) as the recipe's Fashion-MNIST config, on the training split saved
at ``DIR`` (``datasets.save_to_disk``). ``pil``: torchvision transforms per sample through the HF data
set's ``with_transform``, default collation, no workers. ``in_memory``: the images decoded once into a
uint8 tensor, each batch indexed, cropped, flipped and normalised with a few tensor ops.
"""
from __future__ import annotations

import argparse

import datasets
import numpy as np
import timm
import torch
from torch.utils.data import DataLoader, default_collate

import procrustean  # noqa: F401  (registers resnet8_cifar with timm)

MEAN, STD = 0.2860, 0.3530


def pil_batches(train: datasets.Dataset, batch_size: int):
    from torchvision import transforms as T

    transform = T.Compose([T.RandomCrop(28, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize([MEAN], [STD])])
    data = train.with_transform(lambda b: {"x": [transform(im) for im in b["image"]], "y": b["label"]})
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=default_collate,
                        generator=torch.Generator().manual_seed(0))
    while True:
        for batch in loader:
            yield batch["x"], batch["y"]


def in_memory_batches(train: datasets.Dataset, batch_size: int):
    images = torch.from_numpy(np.stack([np.asarray(im, dtype=np.uint8) for im in train["image"]]))[:, None]
    labels = torch.as_tensor(train["label"])
    base = torch.arange(28)
    while True:
        for index in torch.randperm(len(labels)).split(batch_size):
            padded = torch.nn.functional.pad(images[index], (4, 4, 4, 4))
            rows = torch.randint(0, 9, (len(index), 1)) + base
            cols = torch.randint(0, 9, (len(index), 1)) + base
            crops = padded[torch.arange(len(index))[:, None, None], 0, rows[:, :, None], cols[:, None, :]][:, None]
            flip = torch.rand(len(index)) < 0.5
            crops = torch.where(flip[:, None, None, None], crops.flip(3), crops)
            yield (crops.float() / 255.0 - MEAN) / STD, labels[index]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data_path", choices=["pil", "in_memory"], default="pil")
    parser.add_argument("--steps", type=int, default=45)
    parser.add_argument("--batch_size", type=int, default=128)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    train = datasets.load_from_disk(args.dataset)["train"]
    batches = (pil_batches if args.data_path == "pil" else in_memory_batches)(train, args.batch_size)
    model = timm.create_model("resnet8_cifar", num_classes=10, in_chans=1).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    for _ in range(args.steps):
        x, y = next(batches)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


if __name__ == "__main__":
    main()
