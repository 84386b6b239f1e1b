"""Decoding a data set's images at training time, and naming the one that cannot be decoded.

With ``--verify_images false`` (or a file that breaks after the check), a corrupt or missing image is only
met when a batch reads it. datasets would then raise PIL's own error from deep inside the DataLoader, with
neither the row nor the file. Here the image column is read undecoded and decoded by :func:`decode_image`
(datasets' own decoder, so the pixels are the same), which turns the decoding errors into an
:class:`~procrustean.errors.UnreadableImageError` naming the file; :class:`NamedReads` adds the row's index,
and :func:`stop_on_unreadable_images` what the run does about it.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence

import datasets
from torch.utils.data import Dataset

from ..errors import UnreadableImageError

VERIFY_HINT = "--verify_images true (the default) opens every image before training and would have named it then"


def decode_image(entry: Any, feature: datasets.Image) -> Any:
    """An undecoded ``{"bytes", "path"}`` entry of an Image column -> PIL image, as datasets decodes it; anything
    else (a PIL image, an array) is returned as it is. Raises :class:`UnreadableImageError` naming the file."""
    import PIL.Image

    if entry is None:
        raise UnreadableImageError("the image is missing (null)")
    if not isinstance(entry, (dict, str)):
        return entry
    path = entry if isinstance(entry, str) else entry.get("path")
    try:
        return feature.decode_example(entry)
    except (OSError, PIL.Image.DecompressionBombError, ValueError) as error:  # UnidentifiedImageError is an OSError
        where = f"{path}" if path else "bytes stored in the data set"
        reason = " ".join(str(error).replace(f" {path!r}", "").split())[:200] or type(error).__name__
        raise UnreadableImageError(f"the image ({where}) cannot be read: {type(error).__name__}: {reason}") from None


class NamedReads(Dataset):
    """A map-style data set whose reads name the row of an image that cannot be decoded.

    A batch is read at once (``__getitems__``); when it fails, its rows are read again one by one to find the
    index (only then: the error path costs a batch, the normal path nothing).
    """

    def __init__(self, dataset: Any, split: str):
        self.dataset, self.split = dataset, split

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except UnreadableImageError as error:
            raise UnreadableImageError(f"Split {self.split!r}, index {index}: {error}") from None

    def __getitems__(self, indices: Sequence[int]) -> List[Any]:
        read = getattr(self.dataset, "__getitems__", None)
        if read is None:
            return [self[i] for i in indices]
        try:
            return read(list(indices))
        except UnreadableImageError:
            for index in indices:
                self[index]  # raises, naming the index
            raise


def stop_on_unreadable_images(batches: Iterable[Any], last_checkpoint: Callable[[], Optional[str]],
                              verified: bool) -> Iterator[Any]:
    """``batches``, but an unreadable image ends the run with what to do: the image, what ``--verify_images`` would
    have done (``verified``: whether it ran), and the last checkpoint (intact: nothing is saved from the interrupted
    epoch)."""
    try:
        yield from batches
    except UnreadableImageError as error:
        checkpoint = last_checkpoint()
        check = ("It passed --verify_images's check before training (PIL's verify does not decode every pixel: a "
                 "truncated file can pass it; or the file changed since)" if verified else VERIFY_HINT)
        kept = (f"the last checkpoint, {checkpoint}, is intact: fix or remove the image (or pass --verify_images true "
                "to list every bad one), then continue with --resume_from_checkpoint latest"
                if checkpoint else "no checkpoint had been written yet: fix or remove the image and start again")
        raise UnreadableImageError(f"{error} (during training). {check}; {kept}.") from None
