"""Augmentation that depends only on (seed, epoch, sample index): exact resume, any worker count.

Random train transforms normally draw from the global RNGs of whichever process loads the sample,
and Accelerate's loaders fetch one batch ahead, so a run resumed mid-epoch would augment differently
from an uninterrupted one. Here every sample's transform runs under RNG states seeded from
(seed, epoch, index) and the caller's RNG states are restored afterwards.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


class SampleSeededDataset(Dataset):
    """Wrap a map-style dataset whose ``__getitem__`` applies random transforms; call ``set_epoch`` each epoch."""

    def __init__(self, dataset: Any, seed: int):
        self.dataset, self.seed, self.epoch = dataset, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        sample_seed = int(np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(1)[0])
        python_state, numpy_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed)
            random.seed(sample_seed)
            np.random.seed(sample_seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(python_state)
                np.random.set_state(numpy_state)
