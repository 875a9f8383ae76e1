"""Studies across networks: backbones_demo's plan, pretraining experiments for every network,
and sweep folders that name a network whole."""

from __future__ import annotations

import pytest

from hydra_plugins.unet_transfer.sweeper import folder_name
from unet_transfer.config import compose_config

NETWORKS = {  # model= overrides -> model_name
    "unet": ([], "w64"),
    "flexunet-resnet18": (["model=flexunet"], "flexunet-resnet18"),
    "flexunet-efficientnet-b0": (["model=flexunet", "model.backbone=efficientnet-b0"], "flexunet-efficientnet-b0"),
    "basicunet": (["model=basicunet"], "basicunet"),
}


def test_long_sweep_folder_keeps_every_word_whole():
    """The smoke step's sweep (a data folder, five settings) named its folder `...,model=_87808e41a5d2`:
    the name was cut mid-word at 120 characters and hashed."""
    pairs = [("trainer.max_epochs", "1"), ("dataset.image_size", "64"), ("dataset", "busi"),
             ("dataset.root", "../shared/data/busi_sample/Dataset_BUSI_with_GT"), ("freeze", "shallow_to_deep"),
             ("model", "flexunet")]
    name = folder_name(pairs, "")
    assert "model=flexunet" in name.split(",") and "trainer.max_epochs=1" in name.split(",")


def test_too_long_sweep_folder_is_short_whole_words_and_distinct():
    pairs = [(f"model.setting_{i}", "x" * 20) for i in range(20)]
    other = [*pairs[:-1], ("model.setting_19", "y" * 20)]
    name, other_name = folder_name(pairs, ""), folder_name(other, "")
    assert len(name) <= 200 and name != other_name
    words = name.split(",")
    assert all(word in {f"model.setting_{i}={'x' * 20}" for i in range(20)} for word in words[:-1])


@pytest.mark.parametrize("network", NETWORKS)
def test_pretrain_natural_composes_for_every_network_with_its_own_checkpoint(network):
    overrides, name = NETWORKS[network]
    cfg = compose_config(["experiment=pretrain_natural", *overrides])
    assert cfg.save_weights == f"checkpoints/natural_{name}_256.pt"
    assert (cfg.model.get("width") == 64) == (network == "unet")  # the paper's U-Net; no width reaches MONAI's
    demo = compose_config(["experiment=demo_pretrain", "dataset.image_size=64", *overrides])
    assert "width" not in demo.model or network == "unet"
    assert demo.save_weights.endswith(f"demo_synthetic_natural_{name if network != 'unet' else 'w16'}_64.pt")


def test_paper_and_demo_checkpoints_keep_their_names():
    assert compose_config(["experiment=paper_busi"]).pretrained == "checkpoints/natural_w64_256.pt"
    assert compose_config(["experiment=demo"]).pretrained == "checkpoints/demo_synthetic_natural_w8_64.pt"


def test_pretraining_a_monai_network_on_demand_composes_that_network():
    """A flexunet fine-tuning's pretraining run is a FlexibleUNet with the run's settings (it was
    the default U-Net given FlexibleUNet's settings), and the U-Net's recipe names no group."""
    from pathlib import Path

    from unet_transfer.training.pretrain import pretraining_overrides, pretraining_run_overrides

    run = compose_config(["experiment=backbones_demo", "model=flexunet", "model.backbone=efficientnet-b0"])
    pretraining = compose_config(pretraining_run_overrides(run, Path(run.pretrained)))
    assert dict(pretraining.model) == dict(run.model)
    assert run.pretrained == "checkpoints/demo_synthetic_natural_flexunet-efficientnet-b0_64.pt"
    unet = compose_config(["experiment=demo"])
    assert not any(line.startswith("model=") for line in pretraining_overrides(unet))
    assert dict(compose_config(pretraining_run_overrides(unet, Path(unet.pretrained))).model) == dict(unet.model)


def test_backbones_demo_plan(tmp_path, monkeypatch):
    """Three networks, each its k sweep over its own blocks in both directions and its reference rows."""
    from unet_transfer.study.runner import study_plan, sweep_runs

    monkeypatch.chdir(tmp_path)
    study, sweeps, cfg = study_plan("backbones_demo", [])
    runs = [sweep_runs(sweep) for sweep in sweeps]
    assert study == "backbones_demo" and cfg.model.width == 8 and cfg.pretrained.endswith("_w8_64.pt")
    assert len(runs[0]) == 54  # the demo's grid, unchanged
    networks = {}
    for sweep, jobs in zip(sweeps, runs, strict=True):
        key = tuple(line for line in sweep if line.startswith("model"))
        networks.setdefault(key, []).append(len(jobs))
    assert set(networks) == {(), ("model=flexunet",), ("model=flexunet", "model.backbone=efficientnet-b0")}
    assert networks[()] == [54, 3, 3]
    assert all(counts[1:] == [3, 3] and counts[0] % 6 == 0 for counts in networks.values())
