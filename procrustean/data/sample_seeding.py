"""Augmentation that depends only on (seed, epoch, sample index): exact resume, any worker count.

Random train transforms normally draw from the global RNGs of whichever process loads the sample,
and Accelerate's loaders fetch one batch ahead, so a run resumed mid-epoch would augment differently
from an uninterrupted one. Here every sample's transform runs under RNG states seeded from
(seed, epoch, index) and the caller's RNG states are restored afterwards.
"""
from __future__ import annotations

import random
from typing import Any

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
        sample_seed = _mix(self.seed, self.epoch, int(index))
        python_state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            # CPU generator only: torch.manual_seed would also queue lazy CUDA/XPU seeding (with a
            # formatted stack trace) for every sample. timm's and torchvision's transforms draw from
            # torch's and Python's RNGs; NumPy's is not used by them and is left alone.
            torch.default_generator.manual_seed(sample_seed)
            random.seed(sample_seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(python_state)


def _mix(*values: int) -> int:
    """SplitMix64-style mixing of (seed, epoch, index) into one well-spread 63-bit seed."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (value & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        state = (state ^ (state >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return (state ^ (state >> 29)) & 0x7FFFFFFFFFFFFFFF
