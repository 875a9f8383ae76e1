"""The report's parts, each a registered entry: adding a table, figure or analysis is one new
module in unet_transfer/report/ with one `@entry` function; `write_report` finds it.

An entry gets the `Report` (the study's runs and summary rows) and the output folder, writes
its files and returns {file name: path}; it may add notes for summary.md. An entry that fails
becomes a note: a figure must never stop the report.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Report:
    """What every entry may read."""

    root: Path
    runs: list[dict]
    rows: list[dict]
    notes: list[str] = field(default_factory=list)
    written: dict[str, Path] = field(default_factory=dict)  # by the entries that ran before
    sections: list[str] = field(default_factory=list)  # markdown an entry adds to summary.md


@dataclass(frozen=True)
class Entry:
    name: str
    order: int  # position in write_report's listing (summary first)
    write: Callable[[Report, Path], dict[str, Path]]


ENTRIES: dict[str, Entry] = {}
DESCRIPTIONS: dict[str, str] = {"summary.md": "results tables (contracting vs expanding, k table), warnings"}


def entry(name: str, order: int = 50, describes: dict[str, str] | None = None):
    """Register `function(report, out) -> {file name: path}` as a part of every report;
    `describes` says what its files are (for the command line's listing)."""

    def register(function):
        ENTRIES[name] = Entry(name, order, function)
        DESCRIPTIONS.update(describes or {})
        return function

    return register


def discover() -> list[Entry]:
    """Every entry of the report package, in order (imports each module once)."""
    import unet_transfer.report as package

    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")
    return sorted(ENTRIES.values(), key=lambda e: (e.order, e.name))
