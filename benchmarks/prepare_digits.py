"""The fine-tuning target: OpenCV's handwritten digits as an HF ``DatasetDict`` (balanced test split + training pool).

    apt-get download opencv-doc && dpkg-deb --fsys-tarfile opencv-doc_*.deb \\
        | tar x ./usr/share/doc/opencv-doc/examples/data/digits.png
    python benchmarks/prepare_digits.py --digits_png usr/share/doc/opencv-doc/examples/data/digits.png \\
        --output_dir data/digits

Why this target: 5,000 grey 20x20 digits (10 classes x 500) from a Debian package, so it is reachable without
the Hub, and its classes share nothing with Fashion-MNIST (clothing), the pretraining source: a fine-tuning
task whose classes the backbone has never seen, as when a user fine-tunes an ImageNet model on their own labels.

The split is seeded and balanced: ``--test_per_class`` images of each class form ``test`` (balanced, so
class-averaged and image-averaged accuracy agree), the rest form ``train``, a balanced pool that the recipe
makes long-tailed (``--imbalance step:10`` keeps the first n_c images of a seeded shuffle per class).
The result is a ``save_to_disk`` folder: ``recipes/train.py --dataset data/digits``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

GRID_ROWS, GRID_COLS, SIDE, PER_CLASS = 50, 100, 20, 500


def load_digits_png(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(5000, 20, 20) uint8 images and their labels from OpenCV's 2000x1000 sheet (each class fills 5 rows)."""
    from PIL import Image

    sheet = np.asarray(Image.open(path).convert("L"))
    if sheet.shape != (GRID_ROWS * SIDE, GRID_COLS * SIDE):
        raise SystemExit(f"error: {path} is {sheet.shape[1]}x{sheet.shape[0]} pixels, not OpenCV's 2000x1000 "
                         "digits.png (opencv-doc: usr/share/doc/opencv-doc/examples/data/digits.png).")
    images = sheet.reshape(GRID_ROWS, SIDE, GRID_COLS, SIDE).transpose(0, 2, 1, 3).reshape(-1, SIDE, SIDE)
    return images, np.repeat(np.arange(10), PER_CLASS)


def split_balanced(labels: np.ndarray, test_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a balanced test split and of the training pool, from one seeded shuffle per class."""
    rng = np.random.default_rng(seed)
    test, train = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        test.append(members[:test_per_class])
        train.append(members[test_per_class:])
    return np.sort(np.concatenate(test)), np.sort(np.concatenate(train))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digits_png", required=True, type=Path)
    parser.add_argument("--output_dir", required=True, type=Path)
    parser.add_argument("--test_per_class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0, help="seed of the test / pool split (not of any run)")
    args = parser.parse_args(argv)
    if not args.digits_png.is_file():
        parser.error(f"{args.digits_png} does not exist; fetch it as the docstring shows")
    if not 0 < args.test_per_class < PER_CLASS:
        parser.error(f"--test_per_class must be in 1..{PER_CLASS - 1}")

    import datasets

    images, labels = load_digits_png(args.digits_png)
    test, train = split_balanced(labels, args.test_per_class, args.seed)
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=[str(d) for d in range(10)])})

    def split(indices: np.ndarray) -> datasets.Dataset:
        return datasets.Dataset.from_dict({"image": [images[i] for i in indices], "label": labels[indices].tolist()},
                                          features=features)

    data = datasets.DatasetDict({"train": split(train), "test": split(test)})
    data.save_to_disk(str(args.output_dir))
    summary = {"source": str(args.digits_png), "seed": args.seed, "train_per_class": PER_CLASS - args.test_per_class,
               "test_per_class": args.test_per_class, "train": len(train), "test": len(test)}
    (args.output_dir / "prepare_digits.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
