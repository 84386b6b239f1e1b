"""Small images that fit in memory: decoded once into uint8 tensors, augmented on the device a whole batch at a time.

Per-sample PIL transforms in DataLoader workers feed a CIFAR-sized network at a small fraction of what
a GPU trains. For data that fits in memory (the long-tail benchmarks), this path decodes every
training image once -- through the deterministic part of the model's timm eval transform, as the PIL
path does (resize, centre crop) -- into a uint8 tensor, and applies the random part on the device for
the whole batch: the CIFAR protocol's pad-4 random crop and horizontal flip, then the normalisation.

The same distribution as the PIL path: ``RandomCrop(size, padding=4)`` draws the crop's top-left corner
uniformly from ``{0, ..., 8}^2`` and pads with zeros; the flip has probability ``hflip``. A sample's
random numbers come from ``(seed, epoch, sample index)`` through a counter-based hash, so they do not
depend on the batch it lands in, on DataLoader workers or on a resume: exact resume keeps working.
timm's transforms stay the path for natural-image data sets and fine-tuning (``--data_path pil``).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..errors import UnreadableImageError, UsageError


def decode_images(dataset: Any, geometry: Callable, image_column: str, mode: str) -> torch.Tensor:
    """Every image of ``dataset`` through ``geometry`` (PIL -> PIL, deterministic) into one uint8 [N, C, H, W] tensor."""
    import datasets

    from .decoding import VERIFY_HINT, decode_image
    from .transforms import _to_pil

    view = dataset.with_format(None).select_columns([image_column])
    feature = view.features[image_column]
    if isinstance(feature, datasets.Image) and feature.decode:  # decoded here, naming a file that fails
        view = view.cast_column(image_column, datasets.Image(mode=feature.mode, decode=False))
    images = []
    for index, row in enumerate(view):
        value = row[image_column]
        if isinstance(feature, datasets.Image):
            try:
                value = decode_image(value, feature)
            except UnreadableImageError as error:
                split = str(dataset.split or "train")
                raise UnreadableImageError(f"Split {split!r}, index {index}: {error} (while decoding for --data_path "
                                           f"in_memory, before training). {VERIFY_HINT}; fix or remove the image "
                                           "and rerun.") from None
        array = np.asarray(geometry(_to_pil(value, mode)), dtype=np.uint8)
        images.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
    shapes = {a.shape for a in images}
    if len(shapes) != 1:
        raise UsageError(f"--data_path in_memory needs images of one size after resizing, found {sorted(shapes)[:3]}; "
                         "use --data_path pil.")
    return torch.from_numpy(np.stack(images))


class InMemoryImages(torch.utils.data.Dataset):
    """``{"pixel_values": uint8 [C, H, W], "labels": int, "sample_index": int}`` from tensors held in memory."""

    def __init__(self, images: torch.Tensor, labels: Sequence[int]):
        self.images, self.labels = images, torch.as_tensor(labels, dtype=torch.long)
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels.")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        return {"pixel_values": self.images[index], "labels": int(self.labels[index]), "sample_index": int(index)}


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 31-bit integer hash (xorshift-multiply rounds; products stay below 2**62, so int64 never overflows)."""
    for multiplier in (0x2C1B3C6D, 0x297A2D39, 0x5BD1E995):
        x = ((x ^ (x >> 15)) * multiplier) & 0x7FFFFFFF
    return x ^ (x >> 13)


def sample_uniforms(seed: int, epoch: int, indices: torch.Tensor, streams: int) -> torch.Tensor:
    """[B, streams] uniforms in [0, 1) that depend only on (seed, epoch, sample index, stream)."""
    base = (int(seed) * 1_000_003 + int(epoch) * 7_919) & 0x7FFFFFFF
    keys = (indices.long()[:, None] * streams + torch.arange(streams, device=indices.device)) & 0x7FFFFFFF
    return _mix(_mix(keys ^ base) ^ 0x1B873593).double() / 2**31


class DeviceAugment(nn.Module):
    """Pad-``padding`` random crop, horizontal flip and normalisation of a uint8 batch, on its device."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], padding: int = 4, hflip: float = 0.5,
                 seed: int = 0):
        super().__init__()
        self.padding, self.hflip, self.seed = int(padding), float(hflip), int(seed)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def draws(self, indices: torch.Tensor, epoch: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(top, left, flipped) of each sample: offsets into the padded image, and the flip."""
        u = sample_uniforms(self.seed, epoch, indices, 3)
        span = 2 * self.padding + 1
        top = (u[:, 0] * span).long().clamp_max(span - 1)
        left = (u[:, 1] * span).long().clamp_max(span - 1)
        return top, left, u[:, 2] < self.hflip

    @torch.no_grad()
    def forward(self, images: torch.Tensor, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        batch, channels, height, width = images.shape
        top, left, flipped = (t.to(images.device) for t in self.draws(indices.to(images.device), epoch))
        padded = nn.functional.pad(images, (self.padding,) * 4)
        rows = top[:, None] + torch.arange(height, device=images.device)
        columns = torch.arange(width, device=images.device).expand(batch, width)
        columns = left[:, None] + torch.where(flipped[:, None], width - 1 - columns, columns)
        crops = padded.gather(2, rows[:, None, :, None].expand(batch, channels, height, padded.shape[3]))
        crops = crops.gather(3, columns[:, None, None, :].expand(batch, channels, height, width))
        return (crops.float() / 255.0 - self.mean) / self.std
