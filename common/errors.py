"""User-facing errors.

Everything a user can cause (a wrong path, a corrupt file, a typo in a name, a checkpoint that does not fit)
raises a `TotoEvalError` whose message is one line naming the thing and the problem. The CLI prints that line
and exits non-zero; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class TotoEvalError(Exception):
    """An error caused by the user's input; `str(err)` is the whole, one-line explanation."""


class ConfigError(TotoEvalError):
    """A configuration value or flag is unknown, of the wrong type or out of range."""


class DataError(TotoEvalError):
    """A dataset file is missing, corrupt or malformed. The message starts with the file's path."""


class CheckpointError(TotoEvalError):
    """A checkpoint is missing, unreadable, or does not fit the architecture."""


def data_error(path: object, problem: str) -> DataError:
    """The conventional `<path>: <problem>` one-liner."""
    return DataError(f"{path}: {problem}")


def describe(err: BaseException, limit: int = 150) -> str:
    """`Type: first line` of an exception from another library, for a one-line message (torch's errors span pages)."""
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first[:limit]}"
