"""Folds, cache, augmentation and the DataModule: the data path between readers and training."""

import json

import numpy as np
import pytest
import torch

from unet_transfer.data import augment
from unet_transfer.data.arrays import SegmentationSet
from unet_transfer.data.cache import cached_set
from unet_transfer.data.datamodule import SegmentationDataModule
from unet_transfer.data.splits import check_fold, kfold, load_or_create
from unet_transfer.errors import ConfigError, DatasetError


def toy_set(n=30, size=16, labelled=True) -> SegmentationSet:
    rng = np.random.default_rng(0)
    masks = np.zeros((n, size, size), bool)
    masks[:, 4:10, 3:12] = True
    images = (rng.random((n, size, size)) * 255).astype(np.uint8)
    labels = tuple("malignant" if i % 3 == 0 else "benign" for i in range(n)) if labelled else None
    return SegmentationSet(images, masks, tuple(f"img{i:03d}" for i in range(n)), labels)


def test_folds_partition_the_ids_and_do_not_depend_on_input_order():
    data = toy_set()
    folds = kfold(data.ids, 5, seed=0, labels=data.labels)
    assert sorted(i for fold in folds for i in fold) == sorted(data.ids)
    shuffled = list(zip(data.ids, data.labels, strict=True))[::-1]
    assert kfold([i for i, _ in shuffled], 5, 0, [label for _, label in shuffled]) == folds
    assert kfold(data.ids, 5, seed=1, labels=data.labels) != folds


def test_folds_are_stratified_by_class():
    data = toy_set(n=53)
    for fold in kfold(data.ids, 5, 0, data.labels):
        malignant = sum(data.labels[data.ids.index(i)] == "malignant" for i in fold)
        assert abs(malignant - 18 / 5) <= 1
        assert abs(len(fold) - 53 / 5) <= 1


def test_folds_are_written_once_and_reused(tmp_path):
    data = toy_set()
    path = tmp_path / "splits.json"
    first = load_or_create(path, data.ids, 5, 0, data.labels)
    stored = json.loads(path.read_text())
    assert stored["5-fold seed 0"]["held_out"] == first
    stored["5-fold seed 0"]["held_out"][0], stored["5-fold seed 0"]["held_out"][1] = first[1], first[0]
    path.write_text(json.dumps(stored))  # a reused file wins over recomputation
    assert load_or_create(path, data.ids, 5, 0, data.labels)[0] == first[1]


def test_bad_fold_settings_name_the_value():
    with pytest.raises(ConfigError, match=r"fold=5.*0\.\.4"):
        check_fold(5, 5)
    with pytest.raises(ConfigError, match="folds=1"):
        kfold(["a", "b"], 1, 0)
    with pytest.raises(DatasetError, match="fewer than folds=5"):
        kfold(["a", "b"], 5, 0)


def test_the_cache_is_built_once_and_read_afterwards(tmp_path):
    data = toy_set()
    built = []

    def build():
        built.append(1)
        return data

    first, folder = cached_set(tmp_path, "toy", {"v": 1}, build)
    second, folder_again = cached_set(tmp_path, "toy", {"v": 1}, build)
    assert built == [1] and folder == folder_again
    assert np.array_equal(second.images, data.images) and np.array_equal(second.masks, data.masks)
    assert second.ids == data.ids and second.labels == data.labels
    cached_set(tmp_path, "toy", {"v": 2}, build)  # a changed setting is a new entry
    assert built == [1, 1]


def test_a_failed_build_leaves_nothing_in_the_cache(tmp_path):
    def build():
        raise DatasetError("broken file")

    with pytest.raises(DatasetError):
        cached_set(tmp_path, "toy", {"v": 1}, build)
    assert not any(tmp_path.iterdir())


def test_augmentation_moves_image_and_mask_together():
    mask = np.zeros((64, 64), bool)
    mask[20:40, 10:30] = True
    image = (mask * 200 + 20).astype(np.uint8)
    transform = augment.paper_transform(shift=0.1, rotate=10, shear=5, zoom=0.1, hflip=0.5, seed=0)
    for _ in range(10):
        out_image, out_mask = augment.apply(transform, image, mask)
        assert out_mask.dtype == bool and set(np.unique(out_mask)) <= {False, True}
        agreement = np.mean((out_image > 110) == out_mask)
        assert agreement > 0.97


def test_offline_expansion_keeps_originals_and_reaches_the_total():
    data = toy_set(n=10)
    transform = augment.paper_transform(seed=0)
    images, masks, source = augment.expand_offline(data.images, data.masks, 25, transform)
    assert images.shape[0] == 25 and np.array_equal(images[:10], data.images)
    assert np.bincount(source).tolist() == [3, 3, 3, 3, 3, 2, 2, 2, 2, 2]
    with pytest.raises(ConfigError, match="augment.total=5"):
        augment.expand_offline(data.images, data.masks, 5, transform)


@pytest.mark.parametrize("mode", ["none", "online", "offline"])
def test_no_held_out_image_or_copy_of_one_is_ever_trained_on(tmp_path, mode):
    data = toy_set()
    folds = kfold(data.ids, 5, 0, data.labels)
    for fold in range(5):
        dm = SegmentationDataModule(data, folds[fold], batch_size=4, augment={"mode": mode, "total": 60},
                                    offline_cache=tmp_path)
        held_out_rows = {data.ids.index(i) for i in folds[fold]}
        trained_rows = set()
        for _ in range(2):  # two epochs
            for images, _, rows in dm.train_dataloader():
                trained_rows |= set(rows.tolist())
                assert images.dtype == torch.float32 and 0 <= images.min() and images.max() <= 1
        assert trained_rows == set(range(30)) - held_out_rows
        tested = {r for _, _, rows in dm.test_dataloader() for r in rows.tolist()}
        assert tested == held_out_rows
        if mode == "offline":
            assert len(dm.train_dataset()) == 60
    # the offline expansion was cached once per fold and is read back identically
    if mode == "offline":
        again = SegmentationDataModule(data, folds[4], augment={"mode": "offline", "total": 60}, offline_cache=tmp_path)
        assert np.array_equal(again.train_dataset().images, dm.train_dataset().images)


def test_held_out_images_are_never_augmented():
    data = toy_set()
    held_out = kfold(data.ids, 5, 0, data.labels)[0]
    dm = SegmentationDataModule(data, held_out, augment={"mode": "online", "rotate": 30})
    images, _, rows = next(iter(dm.test_dataloader()))
    assert torch.equal(images[:, 0], torch.from_numpy(data.images[rows.numpy()]).float() / 255)


def test_empty_and_duplicate_sets_are_refused():
    with pytest.raises(DatasetError, match="empty"):
        SegmentationSet(np.zeros((0, 4, 4), np.uint8), np.zeros((0, 4, 4), bool), ())
    with pytest.raises(DatasetError, match=r"Duplicate sample ids \['a'\]"):
        SegmentationSet(np.zeros((2, 4, 4), np.uint8), np.zeros((2, 4, 4), bool), ("a", "a"))


def test_loader_workers_draw_different_augmentations_each_epoch_and_reproducibly():
    # Every image the same: any two equal augmented images mean two equal draws.
    base = toy_set(n=16, size=24)
    data = SegmentationSet(np.repeat(base.images[:1], 16, axis=0), np.repeat(base.masks[:1], 16, axis=0), base.ids)
    held_out = kfold(data.ids, 4, 0)[0]

    def epochs(seed):
        dm = SegmentationDataModule(data, held_out, batch_size=2, augment={"mode": "online", "rotate": 30, "shift": 0.2},
                                    seed=seed, num_workers=2)
        loader = dm.train_dataloader()
        return [torch.cat([images for images, _, _ in loader]) for _ in range(2)]

    first, second = epochs(0)
    both = torch.cat([first, second]).flatten(1)
    # Two workers x two epochs: no draw repeats (unseeded worker copies would repeat each other's).
    assert len({tuple(row.tolist()) for row in both}) == len(both)
    again_first, again_second = epochs(0)
    assert torch.equal(first, again_first) and torch.equal(second, again_second)
    assert not torch.equal(first, epochs(1)[0])
