"""What looks wrong in a dataset's content without being an error: said once, recorded, never
swallowed (DataWarning; the run logs it and writes it into metrics.json `warnings`)."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from unet_transfer.data.arrays import SegmentationSet
from unet_transfer.errors import DataWarning

SMALL = 0.5  # images whose shorter side is below this fraction of the training size are "far smaller"


def warn(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=2)


def check_masks(name: str, data: SegmentationSet) -> None:
    empty = ~data.masks.reshape(len(data), -1).any(axis=1)
    if empty.all():
        warn(f"{name}: all {len(data)} masks are empty, so there is nothing to segment (a wrong mask folder, or "
             "soft masks that need dataset.mask_threshold?)")


def check_sizes(name: str, ids: Sequence[str], sizes: Sequence[tuple[int, int]], image_size: int) -> None:
    """`sizes`: each image's (height, width) before resizing."""
    small = [(min(h, w), i, h, w) for i, (h, w) in zip(ids, sizes, strict=True) if min(h, w) < SMALL * image_size]
    if small:
        _, example, h, w = min(small)
        warn(f"{name}: {len(small)} of {len(ids)} images are far smaller than the training size {image_size} px "
             f"(the smallest, '{example}', is {w}x{h}): they are enlarged more than {1 / SMALL:g}x; a smaller "
             "dataset.image_size may suit them better")


def captured(make: Callable):
    """(make()'s result, the DataWarning messages it raised, in order, each once); other
    warnings pass through."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = make()
    messages = []
    for item in caught:
        if issubclass(item.category, DataWarning):
            if str(item.message) not in messages:
                messages.append(str(item.message))
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    return result, messages


SAID = "warnings_said"  # in a cache entry: its warnings were logged in full once


def say_once(folder: Path, messages: Sequence[str], log: logging.Logger) -> None:
    """A dataset's warnings in full by the first run that reads its cache entry, then one short
    line: every run of a study reads the same entry, and a long warning per run buries the rest.
    metrics.json (`warnings`) and the report keep them all."""
    if not messages:
        return
    try:
        descriptor = os.open(Path(folder) / SAID, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        log.info("Data: %d warning(s) about this dataset, in full in the log of the first run that read it and "
                 "in metrics.json `warnings`", len(messages))
        return
    except OSError:  # a read-only cache: say them every time
        descriptor = None
    if descriptor is not None:
        with os.fdopen(descriptor, "w") as handle:
            handle.write("\n".join(messages) + "\n")
    for message in messages:
        log.warning("Data: %s", message)
