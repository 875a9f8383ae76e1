"""Runs on generated trees in each real layout, through the real config: readers, cache, folds."""

import logging

import pytest
from layouts import write_busi, write_ecssd, write_folder

from unet_transfer.training.build import build_datamodule
from unet_transfer.training.run import run


def prepare(cfg):
    """The run's fold, as its DataModule sets it up (cache, then splits)."""
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule.data, datamodule.held_out


def test_busi_run_merges_masks_excludes_normal_and_reads_the_cache_the_second_time(make_cfg, tmp_path, caplog):
    root = write_busi(tmp_path / "busi", benign=6, malignant=4, normal=3)
    overrides = ["dataset=busi", f"dataset.root={root}", "dataset.image_size=32", "folds=2"]
    with caplog.at_level(logging.INFO):
        metrics = run(make_cfg(*overrides, name="first"))
    assert metrics["dataset"] == "busi" and metrics["n_images"] == 5  # 10 lesion images, 2 folds
    assert "preprocessing into cache" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        data, held_out = prepare(make_cfg(*overrides, "fold=1", name="second"))
    assert "read 10 images from cache" in caplog.text and "preprocessing" not in caplog.text
    assert not any(i.startswith("normal") for i in data.ids) and len(held_out) == 5
    # the two-mask lesion is one sample whose mask is the union
    assert sum(i.startswith("benign (2)") for i in data.ids) == 1


def test_the_folds_are_stratified_by_busi_class(make_cfg, tmp_path):
    root = write_busi(tmp_path / "busi", benign=6, malignant=4, normal=0)
    data, held_out = prepare(make_cfg("dataset=busi", f"dataset.root={root}", "dataset.image_size=16", "folds=2"))
    assert sum(data.labels[data.ids.index(i)] == "malignant" for i in held_out) == 2


@pytest.mark.parametrize("dataset,writer,extra", [
    ("ecssd", write_ecssd, []),
    ("folder", write_folder, ["dataset.mask_suffix=_mask"]),
])
def test_other_layouts_run(make_cfg, tmp_path, dataset, writer, extra):
    root = writer(tmp_path / dataset, count=6, **({"mask_suffix": "_mask"} if dataset == "folder" else {}))
    metrics = run(make_cfg(f"dataset={dataset}", f"dataset.root={root}", "dataset.image_size=32", "folds=3", *extra))
    assert metrics["n_images"] == 2 and metrics["dataset"] == dataset
