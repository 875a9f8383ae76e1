"""Errors a user can act on: each names the thing, the value, and the fix."""


class UserError(Exception):
    """Bad input or settings; printed as one clear message, without a traceback."""


class DatasetError(UserError):
    """A dataset folder, file or sample that cannot be used as it is."""


class ConfigError(UserError):
    """A setting whose value is outside what the project accepts."""
