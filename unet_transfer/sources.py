"""Where a dataset comes from: a simulator (unet_transfer.simulate) or a reader over files on
disk (unet_transfer.data.readers). This module joins the two; `dataset=` configs build one.

A source knows its name, its target size, a key that changes whenever its content would, and
how to build its SegmentationSet. Listing files is cheap and happens first, so a missing
folder fails in a second, before the training stack is even imported. What looks wrong in the
data (DataWarning: empty masks, masks without an image, tiny images) travels with the data:
found when listing or building, kept in the cache entry, and handed to every run.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from unet_transfer.data.arrays import SegmentationSet
from unet_transfer.data.cache import cache_folder, cached_set, ensure_cached
from unet_transfer.data.checks import captured, check_masks
from unet_transfer.errors import ConfigError
from unet_transfer.rules import whole

SIMULATOR_VERSION = 2  # bump when a simulator's output changes, so caches are rebuilt


class Source:
    """What the DataModule and the run need of a dataset, whatever its origin."""

    name: str
    image_size: int
    settings: dict
    listing_warnings: tuple[str, ...] = ()  # DataWarnings raised while listing the files

    _keys: dict

    def cache_key(self, cache_dir: Path) -> dict:
        """Everything the content depends on (computed once per source: it may read every file)."""
        raise NotImplementedError

    def build(self) -> SegmentationSet:
        raise NotImplementedError

    def key(self, cache_dir: Path | str) -> dict:
        if "_keys" not in self.__dict__:
            self._keys = {}
        if str(cache_dir) not in self._keys:
            self._keys[str(cache_dir)] = self.cache_key(Path(cache_dir))
        return self._keys[str(cache_dir)]

    def cache_folder(self, cache_dir: Path | str) -> Path:
        """The cache entry of this content (its name is the content's digest)."""
        return cache_folder(cache_dir, self.name, self.key(cache_dir))

    def checked_build(self) -> SegmentationSet:
        """build(), with the DataWarnings it raised and the checks of its content attached."""

        def make():
            data = self.build()
            check_masks(self.name, data)
            return data

        data, found = captured(make)
        return data.with_warnings(found)

    def prepare(self, cache_dir: Path | str) -> Path:
        """Make sure the cache entry exists (preprocess on first use); reads nothing."""
        return ensure_cached(cache_dir, self.name, self.key(cache_dir), self.checked_build)

    def load(self, cache_dir: Path | str) -> tuple[SegmentationSet, Path]:
        """The data, from the cache when it is there (built and stored on first use), with every
        DataWarning about it, from listing and from building."""
        data, folder = cached_set(cache_dir, self.name, self.key(cache_dir), self.checked_build)
        found = [*self.listing_warnings, *(w for w in data.warnings if w not in self.listing_warnings)]
        return data.with_warnings(found), folder


class SimulatedSource(Source):
    """A deterministic synthetic set from one of unet_transfer.simulate's generators."""

    def __init__(self, name: str, kind: str, n_images: int, image_size: int, seed: int = 0, **settings):
        from unet_transfer.simulate import SIMULATORS

        if kind not in SIMULATORS:
            raise ConfigError(f"dataset.kind={kind!r} is not a simulator; choose one of {sorted(SIMULATORS)}.")
        whole(n_images, "dataset.n_images", 1, " (how many images to simulate)")
        self.name, self.kind, self.n_images, self.image_size, self.seed = name, kind, n_images, image_size, seed
        self.settings = dict(settings)

    def cache_key(self, cache_dir: Path) -> dict:
        return {"simulator": self.kind, "version": SIMULATOR_VERSION, "n": self.n_images,
                "size": self.image_size, "seed": self.seed, "settings": self.settings}

    def build(self) -> SegmentationSet:
        from unet_transfer.simulate import SIMULATORS

        return SIMULATORS[self.kind](self.n_images, self.image_size, self.seed, **self.settings)


class ReaderSource(Source):
    """Image/mask files in one of the known layouts (see unet_transfer.data.readers)."""

    def __init__(self, name: str, reader: str, root: str, image_size: int, on_size_mismatch: str = "error",
                 mask_threshold: float | None = None, **options):
        if root is None or not str(root).strip():
            raise ConfigError(f"dataset.root={root!r} is not a folder: dataset={name} reads your images from a folder; "
                              "give it, e.g. dataset.root=path/to/data.")
        self.name, self.reader, self.root, self.image_size = name, reader, Path(root), image_size
        self.on_size_mismatch, self.mask_threshold, self.options = on_size_mismatch, mask_threshold, dict(options)
        self.settings: dict = {}

    @cached_property
    def samples(self):
        from unet_transfer.data.readers import read_dataset

        samples, self.listing_warnings = captured(lambda: read_dataset(self.reader, self.root, **self.options))
        return samples

    def cache_key(self, cache_dir: Path) -> dict:
        from unet_transfer.data.digests import FileDigests
        from unet_transfer.data.preprocess import fingerprint

        return {"reader": self.reader, "size": self.image_size, "fingerprint": fingerprint(
            self.samples, FileDigests(cache_dir / "file_digests.json"), image_size=self.image_size,
            on_size_mismatch=self.on_size_mismatch, mask_threshold=self.mask_threshold, options=self.options)}

    def build(self) -> SegmentationSet:
        from unet_transfer.data.preprocess import preprocess

        return preprocess(self.samples, self.image_size, on_size_mismatch=self.on_size_mismatch,
                          mask_threshold=self.mask_threshold, name=self.name)


def keyword_defaults(function, skip: tuple[str, ...] = ()) -> dict:
    """A function's keyword settings with plain defaults (numbers, strings, booleans, None)."""
    import inspect

    plain = (bool, int, float, str, type(None))
    return {name: parameter.default for name, parameter in inspect.signature(function).parameters.items()
            if name not in skip and parameter.default is not inspect.Parameter.empty
            and isinstance(parameter.default, plain)}


def dataset_defaults() -> dict[str, dict[str, dict]]:
    """Every simulator's and reader's settings with their defaults, read from the functions
    themselves, the one place they are written: the dataset configs take them from here
    (`defaults: [/simulator/ultrasound@_here_]`, config.register_defaults), so a setting can be
    swept (`dataset.speckle=0,1`) without being repeated in YAML."""
    from unet_transfer.data.readers import DATASETS
    from unet_transfer.simulate import SIMULATORS

    source = keyword_defaults(ReaderSource.__init__, skip=("self", "name", "reader", "root", "image_size"))
    return {"simulator": {kind: keyword_defaults(simulate) for kind, simulate in SIMULATORS.items()},
            "reader": {name: {**keyword_defaults(info.reader), **source} for name, info in DATASETS.items()}}


SOURCE_SETTINGS = {  # what each kind of source takes besides its simulator's or reader's own settings
    "SimulatedSource": ("_target_", "name", "kind", "n_images", "image_size", "seed"),
    "ReaderSource": ("_target_", "name", "reader", "root", "image_size", "on_size_mismatch", "mask_threshold"),
}


def check_dataset_settings(dataset) -> None:
    """Every `dataset.*` setting is one its source, simulator or reader takes: a leftover (say
    `n_images` from a simulated dataset in a config that switched to `dataset=busi`) is one line
    naming it and the settings there are, before any work, not a TypeError in every run."""
    import inspect

    from unet_transfer.data.readers import DATASETS
    from unet_transfer.simulate import SIMULATORS

    kind = str(dataset.get("_target_", "")).rsplit(".", 1)[-1]
    if kind not in SOURCE_SETTINGS:
        return  # a source of the user's own: its constructor checks its settings
    function, what = ((SIMULATORS.get(dataset.get("kind")), f"the {dataset.get('kind')} simulator")
                      if kind == "SimulatedSource" else (DATASETS[dataset.reader].reader
                                                         if dataset.get("reader") in DATASETS else None,
                                                         f"the {dataset.get('reader')} reader"))
    if function is None:
        return  # an unknown kind or reader: the source names it with the choices
    own = [name for name in inspect.signature(function).parameters if name not in ("n", "size", "seed", "root")]
    known = {*SOURCE_SETTINGS[kind], *own}
    unknown = sorted(set(dataset) - known)
    if unknown:
        raise ConfigError(f"dataset.{unknown[0]} is not a setting of dataset={dataset.get('name')} ({what}); its "
                          f"settings are {sorted(known - {'_target_'})}. Remove it (a leftover of another dataset "
                          "config?) or use ~dataset." + unknown[0] + " in an override.")
