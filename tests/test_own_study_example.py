"""The commented example experiment for one's own study (conf/experiment/example_own.yaml,
docs/own_study.md) composes, plans the sweeps it says it does, and trains on a folder dataset;
and the BUSI config's root is the folder the README says to unzip the data into."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from layouts import write_busi, write_folder

from unet_transfer.config import CONF_DIR, compose_config
from unet_transfer.study.runner import study_plan
from unet_transfer.training.run import run

ROOT = Path(__file__).resolve().parents[1]


def test_the_example_composes_with_what_its_comments_say():
    cfg = compose_config(["experiment=example_own"])
    assert cfg.study == "my_study" and cfg.dataset.name == "folder" and cfg.dataset.root == "data/my_images"
    assert cfg.pretrain == "pretrain_natural" and list(cfg.pretrain_overrides) == ["dataset=ecssd"]
    assert Path(cfg.pretrained).name == "ecssd_w32_128.pt"
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        sweeper = compose(config_name="config", overrides=["experiment=example_own"], return_hydra_config=True).hydra.sweeper
    assert dict(sweeper.params) == {"freeze": "contracting,expanding,none", "fold": "range(0,5)"}


def test_the_example_plans_the_main_grid_and_the_reference_sweeps():
    study, sweeps, _ = study_plan("example_own", ["trainer.max_epochs=1"])
    assert study == "my_study"
    assert sweeps == [["experiment=example_own", "trainer.max_epochs=1"],
                      ["experiment=example_own", "trainer.max_epochs=1", "freeze=none", "pretrained=null"],
                      ["experiment=example_own", "freeze=none", "trainer.max_epochs=0"]]


def test_the_docs_page_shows_the_example_as_it_is():
    """docs/own_study.md quotes the file; a changed example must change the page too."""
    page = (ROOT / "docs" / "own_study.md").read_text()
    example = (Path(CONF_DIR) / "experiment" / "example_own.yaml").read_text()
    assert example in page


def test_one_run_of_the_example_trains_on_a_folder_dataset(make_cfg, tmp_path):
    write_folder(tmp_path / "my_images", count=6, mask_suffix="")
    metrics = run(make_cfg("experiment=example_own", "dataset=folder", f"dataset.root={tmp_path / 'my_images'}", "dataset.image_size=32",
                           "model.width=4", "folds=2", "freeze=contracting", "pretrained=null", "trainer.max_epochs=1",
                           "save_predictions=false"))
    assert metrics["dataset"] == "folder" and metrics["trainable_blocks"] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("unzipped", ["data/busi/Dataset_BUSI_with_GT", "data/busi"])
def test_the_busi_config_reads_the_layout_the_readme_gives(tmp_path, monkeypatch, unzipped):
    """README: put BUSI at data/busi/Dataset_BUSI_with_GT/ (the folder as unzipped); the config's
    root is data/busi, and the reader accepts either level, so both layouts read."""
    write_busi(tmp_path / "data" / "busi", benign=2, malignant=1, normal=1)
    if unzipped == "data/busi":  # the class folders straight in data/busi
        (tmp_path / "data" / "busi" / "Dataset_BUSI_with_GT").rename(tmp_path / "moved")
        for cls in (tmp_path / "moved").iterdir():
            cls.rename(tmp_path / "data" / "busi" / cls.name)
    monkeypatch.chdir(tmp_path)
    cfg = compose_config(["dataset=busi"])
    assert cfg.dataset.root == "data/busi"
    assert len(instantiate(cfg.dataset).samples) == 3  # normal images left out
