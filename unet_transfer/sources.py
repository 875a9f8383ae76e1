"""Where a dataset comes from: a simulator (unet_transfer.simulate) or a reader over files on
disk (unet_transfer.data.readers). This module joins the two; `dataset=` configs build one.

A source knows its name, its target size, a key that changes whenever its content would, and
how to build its SegmentationSet. Listing files is cheap and happens first, so a missing
folder fails in a second, before the training stack is even imported.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from unet_transfer.data.arrays import SegmentationSet
from unet_transfer.data.cache import cache_folder, cached_set, ensure_cached
from unet_transfer.errors import ConfigError

SIMULATOR_VERSION = 2  # bump when a simulator's output changes, so caches are rebuilt


class Source:
    """What the DataModule and the run need of a dataset, whatever its origin."""

    name: str
    image_size: int
    settings: dict

    def cache_key(self) -> dict:
        """Everything the content depends on (computed once per source: it may stat every file)."""
        raise NotImplementedError

    def build(self) -> SegmentationSet:
        raise NotImplementedError

    @cached_property
    def _key(self) -> dict:
        return self.cache_key()

    def cache_folder(self, cache_dir: Path | str) -> Path:
        """The cache entry of this content (its name is the content's digest)."""
        return cache_folder(cache_dir, self.name, self._key)

    def prepare(self, cache_dir: Path | str) -> Path:
        """Make sure the cache entry exists (preprocess on first use); reads nothing."""
        return ensure_cached(cache_dir, self.name, self._key, self.build)

    def load(self, cache_dir: Path | str) -> tuple[SegmentationSet, Path]:
        """The data, from the cache when it is there (built and stored on first use)."""
        return cached_set(cache_dir, self.name, self._key, self.build)


class SimulatedSource(Source):
    """A deterministic synthetic set from one of unet_transfer.simulate's generators."""

    def __init__(self, name: str, kind: str, n_images: int, image_size: int, seed: int = 0, **settings):
        from unet_transfer.simulate import SIMULATORS

        if kind not in SIMULATORS:
            raise ConfigError(f"dataset.kind={kind!r} is not a simulator; choose one of {sorted(SIMULATORS)}.")
        self.name, self.kind, self.n_images, self.image_size, self.seed = name, kind, n_images, image_size, seed
        self.settings = dict(settings)

    def cache_key(self) -> dict:
        return {"simulator": self.kind, "version": SIMULATOR_VERSION, "n": self.n_images,
                "size": self.image_size, "seed": self.seed, "settings": self.settings}

    def build(self) -> SegmentationSet:
        from unet_transfer.simulate import SIMULATORS

        return SIMULATORS[self.kind](self.n_images, self.image_size, self.seed, **self.settings)


class ReaderSource(Source):
    """Image/mask files in one of the known layouts (see unet_transfer.data.readers)."""

    def __init__(self, name: str, reader: str, root: str, image_size: int, on_size_mismatch: str = "error",
                 mask_threshold: float | None = None, **options):
        self.name, self.reader, self.root, self.image_size = name, reader, Path(root), image_size
        self.on_size_mismatch, self.mask_threshold, self.options = on_size_mismatch, mask_threshold, dict(options)
        self.settings: dict = {}

    @cached_property
    def samples(self):
        from unet_transfer.data.readers import read_dataset

        return read_dataset(self.reader, self.root, **self.options)

    def cache_key(self) -> dict:
        from unet_transfer.data.preprocess import fingerprint

        return {"reader": self.reader, "size": self.image_size, "fingerprint": fingerprint(
            self.samples, image_size=self.image_size, on_size_mismatch=self.on_size_mismatch,
            mask_threshold=self.mask_threshold, options=self.options)}

    def build(self) -> SegmentationSet:
        from unet_transfer.data.preprocess import preprocess

        return preprocess(self.samples, self.image_size, on_size_mismatch=self.on_size_mismatch,
                          mask_threshold=self.mask_threshold)
