"""The per-run analysis measures, in one registry: every run records each one's `summary()` in
metrics.json (training/run.py), and the report's analysis.md and its plots show each one as it
says (report/block_report.py), as the fine-tuning methods' summaries are recorded.

A new measure is one file in unet_transfer/analysis/measures/: a `Measure` subclass with Lightning's hooks (it only
observes: no change to the training, no random numbers drawn) and `@measure` on it, with one
`Shown` per metrics.json key it writes. The report reads this registry without torch, so a
measure module imports torch, Lightning and the networks inside its hooks, never at the top;
build.py makes each measure a Lightning Callback when a run starts (`as_callback`).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Shown:
    """How the report shows one per-block measure (one metrics.json key)."""

    key: str  # the metrics.json key: {block number: value}
    title: str  # a table's heading and a plot's title
    meaning: str  # how to read a value ("0 = the block kept its loaded weights")
    short: str  # a heatmap's title
    colormap: str | None = None  # the k-sweep heatmap's colours; None: no heatmap
    low: float | None = 0.0  # the heatmap's colour range; None: the data's own
    high: float | None = None


class Measure:
    """A per-run analysis measure: Lightning callback hooks that observe a training (and its
    test) and `summary()`, what metrics.json records of it: {key: {block number: value}}."""

    shows: tuple[Shown, ...] = ()
    order: int = 100  # where its callback runs among the measures (the lower, the earlier)

    def __init__(self, model):
        """`model`: the network as loaded, before anything trains."""

    def summary(self) -> dict[str, dict[int, float]]:
        return {}


MEASURES: dict[str, type[Measure]] = {}  # class name -> the measure


def measure(cls: type[Measure]) -> type[Measure]:
    """Registers a measure (a class decorator); its keys must be new."""
    taken = {shown.key for other in MEASURES.values() if other is not cls for shown in other.shows}
    clash = [shown.key for shown in cls.shows if shown.key in taken]
    if clash:
        raise ValueError(f"{cls.__name__}: metrics.json key {clash[0]!r} is another measure's")
    MEASURES[cls.__name__] = cls
    return cls


def unregister(cls: type[Measure]) -> None:
    MEASURES.pop(cls.__name__, None)


def measures() -> list[type[Measure]]:
    """Every registered measure, in callback order (imports the measures/ modules once)."""
    discover()
    return sorted(MEASURES.values(), key=lambda cls: cls.order)


def shown() -> list[Shown]:
    """Every per-block key the measures write: what the report shows, in the order the measures
    registered (their modules' names, then any registered later)."""
    discover()
    return [entry for cls in MEASURES.values() for entry in cls.shows]


@cache
def discover() -> None:
    import unet_transfer.analysis.measures as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


@cache
def _callback_class(cls: type[Measure]) -> type:
    import pytorch_lightning as pl

    return type(cls.__name__, (cls, pl.Callback), {"__module__": cls.__module__, "__qualname__": cls.__qualname__})


def as_callback(cls: type[Measure], model):
    """The measure as a Lightning Callback for one run (its hooks first, Callback's no-ops for the rest)."""
    return _callback_class(cls)(model)


def summaries(callbacks) -> dict[str, dict[str, float]]:
    """What metrics.json records of the measures among `callbacks`, block numbers as strings."""
    return {key: {str(b): value for b, value in per_block.items()}
            for callback in callbacks if isinstance(callback, Measure)
            for key, per_block in callback.summary().items()}
