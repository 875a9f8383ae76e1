"""Serves one cross-validation fold of a SegmentationSet: training rows (augmented) and the
held-out rows (never augmented, scored at the end).

`SegmentationDataModule` serves a given set and held-out ids. `FoldDataModule` is what a run
builds from its config, following Lightning's contract: `prepare_data` fills the
preprocessing cache (once), `setup` reads it and takes the fold from the shared splits.json.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from unet_transfer.data import augment as augmentation
from unet_transfer.data import splits
from unet_transfer.data.arrays import SegmentationSet
from unet_transfer.data.cache import cached_set
from unet_transfer.data.checks import say_once
from unet_transfer.errors import ConfigError

log = logging.getLogger("unet_transfer")


class ArrayDataset(Dataset):
    """Rows of uint8 images and bool masks as float tensors in [0, 1]; also yields each row's
    index in the original set, so results and leak checks can name the source image."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, sources: np.ndarray, transform=None):
        self.images, self.masks, self.sources, self.transform = images, masks, np.asarray(sources), transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, row: int):
        image, mask = self.images[row], self.masks[row]
        if self.transform is not None:
            image, mask = augmentation.apply(self.transform, np.ascontiguousarray(image), mask)
        image = torch.from_numpy(np.ascontiguousarray(image)).unsqueeze(0).float().div_(255.0)
        mask = torch.from_numpy(np.ascontiguousarray(mask)).unsqueeze(0).float()
        return image, mask, int(self.sources[row])


def seed_worker_transform(worker_id: int) -> None:
    """Each loader worker holds a copy of the dataset's transform: reseed it from the worker's
    seed (drawn from the loader's seeded generator, new for every epoch's workers), so workers
    draw different augmentations, reproducibly, and not the same ones every epoch."""
    info = torch.utils.data.get_worker_info()
    transform = getattr(info.dataset, "transform", None)
    if transform is not None:
        transform.set_random_seed(info.seed % 2**32)


class SegmentationDataModule(pl.LightningDataModule):
    """Args:
        data: the whole preprocessed set.
        held_out: ids of the held-out fold.
        augment: {"mode": none|online|offline, "total": ..., transform settings}.
        seed: seeds the augmentation, so a run is reproducible.
        offline_cache: folder to keep offline expansions in (built once per fold and seed).
    """

    def __init__(self, data: SegmentationSet | None, held_out: Sequence[str] = (), batch_size: int = 8,
                 augment: dict | None = None, seed: int = 0, num_workers: int = 0, pin_memory: bool = False,
                 persistent_workers: bool = False, offline_cache: Path | None = None):
        super().__init__()
        self.batch_size, self.seed = batch_size, seed
        self.augment = dict(augment or {"mode": "none"})
        if self.augment.get("mode", "none") not in augmentation.MODES:
            raise ConfigError(f"augment.mode={self.augment.get('mode')!r}; use one of {list(augmentation.MODES)}.")
        self.loader_options = {"num_workers": num_workers, "pin_memory": pin_memory,
                               "persistent_workers": persistent_workers and num_workers > 0,
                               "worker_init_fn": seed_worker_transform if num_workers > 0 else None}
        self.data: SegmentationSet | None = None
        self._train: ArrayDataset | None = None
        if data is not None:
            self.assign(data, held_out, offline_cache)

    def assign(self, data: SegmentationSet, held_out: Sequence[str], offline_cache: Path | None = None) -> None:
        """Serve `data` with the ids in `held_out` as the held-out fold."""
        self.data, self.offline_cache, self.held_out = data, offline_cache, list(held_out)
        held = set(held_out)
        self.test_rows = np.array([i for i, sample_id in enumerate(data.ids) if sample_id in held])
        self.train_rows = np.array([i for i, sample_id in enumerate(data.ids) if sample_id not in held])
        self._train = None

    def _transform_settings(self) -> dict:
        return {k: v for k, v in self.augment.items() if k not in ("mode", "total")}

    def train_dataset(self) -> ArrayDataset:
        if self._train is not None:
            return self._train
        images, masks = self.data.images[self.train_rows], self.data.masks[self.train_rows]
        mode = self.augment.get("mode", "none")
        if mode == "none":
            self._train = ArrayDataset(images, masks, self.train_rows)
        elif mode == "online":
            self._train = ArrayDataset(images, masks, self.train_rows,
                                       augmentation.paper_transform(**self._transform_settings(), seed=self.seed))
        else:
            self._train = self._offline(images, masks)
        return self._train

    def _offline(self, images: np.ndarray, masks: np.ndarray) -> ArrayDataset:
        total = int(self.augment.get("total", 600))
        train_ids = [self.data.ids[r] for r in self.train_rows]

        def build() -> SegmentationSet:
            transform = augmentation.paper_transform(**self._transform_settings(), seed=self.seed)
            out_images, out_masks, rows = augmentation.expand_offline(images, masks, total, transform)
            return SegmentationSet(out_images, out_masks, tuple(f"{train_ids[r]}#{i}" for i, r in enumerate(rows)))

        if self.offline_cache is None:
            expanded = build()
        else:
            key = {"train_ids": train_ids, "total": total, "seed": self.seed, "transform": self._transform_settings()}
            expanded, _ = cached_set(self.offline_cache, "offline", key, build)
        # Each copy's id is "<source id>#<n>": the source row is recoverable, cached or not.
        position = {sample_id: i for i, sample_id in enumerate(self.data.ids)}
        rows = np.array([position[copy_id.rsplit("#", 1)[0]] for copy_id in expanded.ids])
        return ArrayDataset(expanded.images, expanded.masks, rows)

    def test_dataset(self) -> ArrayDataset:
        return ArrayDataset(self.data.images[self.test_rows], self.data.masks[self.test_rows], self.test_rows)

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_dataset(), batch_size=self.batch_size, shuffle=True, drop_last=False,
                          generator=generator, **self.loader_options)

    def val_dataloader(self) -> DataLoader:
        """The held-out rows, for monitoring only (run with validate=true); the final weights
        are scored whatever validation says."""
        return self.test_dataloader()

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_dataset(), batch_size=self.batch_size, shuffle=False, **self.loader_options)

    def validation_split_dataloader(self) -> DataLoader:
        """The training images kept aside for choosing settings (validation_split > 0)."""
        rows = self.validation_rows
        return DataLoader(ArrayDataset(self.data.images[rows], self.data.masks[rows], rows), batch_size=self.batch_size,
                          shuffle=False, **self.loader_options)


class FoldDataModule(SegmentationDataModule):
    """One fold of a dataset source (unet_transfer.sources), cached and split as a study needs.

    Args:
        source: has `prepare(cache_dir)` (fill the cache) and `load(cache_dir) -> (SegmentationSet,
            cache folder)` (unet_transfer.sources).
        cache_dir: the preprocessing cache (shared by every run of a study).
        fold, folds, split_seed: which held-out fold of which k-fold split.
        hold_out: False trains on every image and holds none out (the final network of a
            recommended configuration, unet_transfer/inference/final.py; there is nothing to score).
        options: the SegmentationDataModule settings (batch_size, augment, seed, loader).
    """

    def __init__(self, source, cache_dir: Path | str, fold: int, folds: int, split_seed: int,
                 validation_split: float = 0.0, hold_out: bool = True, **options):
        super().__init__(None, **options)
        self.source, self.cache_dir = source, Path(cache_dir)
        self.fold, self.folds, self.split_seed, self.hold_out = fold, folds, split_seed, hold_out
        self.validation_split = validation_split
        self.cache_folder: Path | None = None
        self.validation_rows = np.array([], dtype=int)

    def prepare_data(self) -> None:
        self.source.prepare(self.cache_dir)  # decode and resize once; later runs read the cache

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        data, self.cache_folder = self.source.load(self.cache_dir)
        held_out = splits.load_or_create(self.cache_folder / "splits.json", data.ids, self.folds, self.split_seed,
                                         data.labels)[self.fold] if self.hold_out else []
        self.assign(data, held_out, offline_cache=self.cache_folder)
        if self.validation_split > 0:  # a part of the training folds, to choose settings on (never the held-out fold)
            rows = np.random.default_rng([self.split_seed, self.fold]).permutation(self.train_rows)
            count = max(1, round(self.validation_split * len(rows)))
            self.validation_rows, self.train_rows = np.sort(rows[:count]), np.sort(rows[count:])
        kept = f" ({len(self.validation_rows)} training images kept for validation)" if len(self.validation_rows) else ""
        if self.hold_out:
            log.info("Fold %d/%d of %s: %d train / %d held-out images%s", self.fold, self.folds, self.source.name,
                     len(self.train_rows), len(self.test_rows), kept)
        else:
            log.info("All of %s: %d train images, none held out%s", self.source.name, len(self.train_rows), kept)
        say_once(self.cache_folder, data.warnings, log)

