"""Errors a user can act on: each names the thing, the value, and the fix."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """Bad input or settings; printed as one clear message, without a traceback."""


class DatasetError(UserError):
    """A dataset folder, file or sample that cannot be used as it is."""


class ConfigError(UserError):
    """A setting whose value is outside what the project accepts."""


class DataWarning(UserWarning):
    """Something in a dataset that looks wrong but does not stop a run (all masks empty, masks
    without an image, images far below the training size). Runs log each one and record it in
    metrics.json (`warnings`); the report lists them."""


def user_error_in(error: BaseException | None) -> UserError | None:
    """The UserError behind `error`, also when Hydra's instantiate wrapped it."""
    while error is not None:
        if isinstance(error, UserError):
            return error
        error = error.__cause__ or error.__context__
    return None


def one_line_exit(error: Exception, say: Callable[[str], object] | None = None) -> int:
    """A command's user error as one line and exit code 2; anything else is a bug: raised again."""
    cause = user_error_in(error)
    if cause is None:
        raise error
    (say or (lambda line: print(line, file=sys.stderr)))(f"Error: {cause}")
    return 2
