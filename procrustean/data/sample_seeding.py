"""Augmentation that depends only on (seed, epoch, the indices read): exact resume, any worker count.

Random train transforms normally draw from the global RNGs of whichever process loads the sample,
and Accelerate's loaders fetch one batch ahead, so a run resumed mid-epoch would augment differently
from an uninterrupted one. Here the transforms run under RNG states seeded from (seed, epoch, index)
for one sample, or (seed, epoch, the batch's indices) for a batch read at once, and the caller's RNG
states are restored afterwards.

A DataLoader reads a whole batch through ``__getitems__`` when the data set has one: an HF data set
then reads the batch from Arrow and runs its transform once, instead of once per row (per-row reads
cost about a third of the data time on Fashion-MNIST; ``benchmarks/throughput.py``'s profile).
"""
from __future__ import annotations

import random
from typing import Any, List, Sequence

import torch
from torch.utils.data import Dataset


class SampleSeededDataset(Dataset):
    """Wrap a map-style dataset whose ``__getitem__`` applies random transforms; call ``set_epoch`` each epoch."""

    def __init__(self, dataset: Any, seed: int):
        self.dataset, self.seed = dataset, int(seed)
        # in shared memory, so that DataLoader workers kept across epochs (persistent_workers) see set_epoch
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self._seeded(self.dataset.__getitem__, int(index), _mix(self.seed, self.epoch, int(index)))

    def __getitems__(self, indices: Sequence[int]) -> List[Any]:
        """A batch in one read when the data set can (HF datasets), seeded by its indices; a batch of one
        index is seeded as ``__getitem__`` seeds it."""
        indices = [int(i) for i in indices]
        read = getattr(self.dataset, "__getitems__", None)
        if read is None:
            return [self[i] for i in indices]
        return self._seeded(read, indices, _mix(self.seed, self.epoch, *indices))

    @staticmethod
    def _seeded(read: Any, key: Any, seed: int) -> Any:
        python_state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            # CPU generator only: torch.manual_seed would also queue lazy CUDA/XPU seeding (with a
            # formatted stack trace) for every call. timm's and torchvision's transforms draw from
            # torch's and Python's RNGs; NumPy's is not used by them and is left alone.
            torch.default_generator.manual_seed(seed)
            random.seed(seed)
            try:
                return read(key)
            finally:
                random.setstate(python_state)


def _mix(*values: int) -> int:
    """SplitMix64-style mixing of (seed, epoch, index) into one well-spread 63-bit seed."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (value & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        state = (state ^ (state >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return (state ^ (state >> 29)) & 0x7FFFFFFFFFFFFFFF
