"""Error types. Each maps to one exit code in `cli/common.py`; messages say what to do."""

from __future__ import annotations


class ToposError(Exception):
    """Base class for errors caused by the user's input or environment (not bugs)."""

    exit_code = 2


class UsageError(ToposError):
    """Bad arguments, missing or corrupt input files, bad values (exit 2)."""

    exit_code = 2


class MeshError(UsageError):
    """A mesh file that cannot be used: missing, unreadable, empty, NaN/Inf coordinates (exit 2)."""


class TemplateMismatch(UsageError):
    """A mesh, checkpoint or dataset whose topology differs from the template's (exit 2)."""


class MissingWeights(UsageError):
    """A weights file the user must supply is absent (exit 2). The message names the file and where it goes."""


class DiskFull(ToposError):
    """The disk (or quota) filled while writing an output (exit 2). The message names the file and how much of
    it was written; the partial file is removed and finished items stay done (a rerun skips them)."""

    exit_code = 2


class PartialFailure(ToposError):
    """Some items of a batch failed (exit 3); the failures are listed in OUT/failures.jsonl."""

    exit_code = 3

    def __init__(self, message: str, failures: list[dict] | None = None):
        super().__init__(message)
        self.failures = failures or []
