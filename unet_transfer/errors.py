"""Errors a user can act on: each names the thing, the value, and the fix."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class UserError(Exception):
    """Bad input or settings; printed as one clear message, without a traceback."""


class DatasetError(UserError):
    """A dataset folder, file or sample that cannot be used as it is."""


class ConfigError(UserError):
    """A setting whose value is outside what the project accepts."""


class DivergedError(UserError):
    """Training went non-finite (training/module.py): whatever the run would score is no result.
    In a sweep the other runs go on, and the sweep ends with this line for each (sweeper.py)."""


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


INTERRUPTED = "Interrupted: finished runs are kept; run the same command again to resume."
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C
# Set in every process below a command that says INTERRUPTED itself: a child (a study's sweep)
# stops quietly with exit code 130, and the command says the line once.
_SAID_ABOVE = "UNET_TRANSFER_INTERRUPT_SAID_ABOVE"


class _Interrupts:
    """Ctrl-C presses seen by this process: the first one stops the command (KeyboardInterrupt);
    the next one is ignored while it stops (killing its workers, which a second KeyboardInterrupt
    would cut short); a third one stops it at once."""

    count = 0

    @classmethod
    def handler(cls, signum, frame) -> None:
        cls.count += 1
        if cls.count != 2:
            raise KeyboardInterrupt


class _LightningInterruptLine(logging.Filter):
    """Lightning answers Ctrl-C in fit/test with its own line and `sys.exit(1)`: the command's
    line says it already."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Detected KeyboardInterrupt" not in record.getMessage()


@contextmanager
def stop_cleanly(say: Callable[[str], object] | None = None) -> Iterator[None]:
    """Around a whole command: Ctrl-C (anywhere in it, also inside Lightning, which turns it into
    `sys.exit(1)`) becomes the one line INTERRUPTED and exit code 130, without a traceback.
    Results are written atomically at their end, so what was interrupted left no result.
    A command started with Ctrl-C ignored (a background job of a script) keeps ignoring it."""
    try:
        ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        previous = None if ignored else signal.signal(signal.SIGINT, _Interrupts.handler)
    except ValueError:  # not the main thread: leave Ctrl-C as it is
        previous = None
    _Interrupts.count = 0
    quiet = _LightningInterruptLine()
    lightning = [logging.getLogger(f"{name}.utilities.rank_zero") for name in ("pytorch_lightning", "lightning.pytorch")]
    for logger in lightning:
        logger.addFilter(quiet)
    said_above = os.environ.get(_SAID_ABOVE) == "1"
    os.environ[_SAID_ABOVE] = "1"
    try:
        yield
    except KeyboardInterrupt:
        raise SystemExit(interrupted_exit(said_above, say)) from None
    except SystemExit as error:
        if not _Interrupts.count or error.code in (0, None, EXIT_INTERRUPTED):
            raise
        raise SystemExit(interrupted_exit(said_above, say)) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        for logger in lightning:
            logger.removeFilter(quiet)
        if not said_above:
            os.environ.pop(_SAID_ABOVE, None)


def interrupted_exit(quietly: bool = False, say: Callable[[str], object] | None = None) -> int:
    """The line (unless the command above this process says it) and exit code 130."""
    if not quietly:
        (say or (lambda line: print(line, file=sys.stderr, flush=True)))(INTERRUPTED)
    return EXIT_INTERRUPTED


def run_child(command: list[str], **popen) -> int:
    """A child command's exit code (a study's sweep). Ctrl-C reaches the child too (one process
    group): wait for it to stop its own workers, where subprocess.run would kill it after 0.25 s
    and leave them running; a child stopped by Ctrl-C stops this command too."""
    process = subprocess.Popen(command, **popen)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    if code in (EXIT_INTERRUPTED, -signal.SIGINT):
        raise KeyboardInterrupt
    return code
