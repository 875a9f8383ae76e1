"""Errors a user can act on: each names the thing, the value, and the fix."""


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
