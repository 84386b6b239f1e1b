"""Errors that mean "the input is wrong", as opposed to a bug.

Validation code raises :class:`UsageError` (or a subclass) with a message that names the problem and
the fix; the recipe catches only these, prints that one line and exits with status 2. Anything else
is a bug and keeps its traceback. They subclass the built-in types a library user would expect
(``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError`` keeps working.
"""


class UsageError(ValueError):
    """A bad option, config file or data set; the message says how to fix it."""


class MissingInputError(UsageError, FileNotFoundError):
    """A file, folder, checkpoint or data set that was named does not exist."""


class MissingColumnError(UsageError, KeyError):
    """A data set lacks the column it was asked for."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OutputConflictError(UsageError, FileExistsError):
    """An output path already holds something that must not be replaced."""


class NotEnoughSpaceError(UsageError, OSError):
    """The output disk cannot hold what the run will write."""


class OutputNotWritableError(UsageError, PermissionError):
    """The output directory cannot be written."""


class UnsafeCheckpointError(UsageError):
    """A checkpoint holds something that loading could execute (not plain tensors and numbers)."""


class UnreadableImageError(UsageError):
    """An image of the data set cannot be decoded (corrupt, truncated, missing file); the message names it.

    Constructed from one message string, so that PyTorch's DataLoader can re-raise it from a worker process
    (it passes the worker's formatted traceback as the message; only its last line, ours, is kept).
    """

    def __init__(self, message: str):
        if "Original Traceback" in message:  # re-raised by a DataLoader worker: "...\n<module>.<name>: <message>"
            message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
        super().__init__(message)
