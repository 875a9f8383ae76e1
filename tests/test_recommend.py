"""Which configuration `unet-transfer recommend` trains: the report's best mean held-out Dice over
complete folds, ties to fewer trainable parameters, or the one the user names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unet_transfer.blocks import Blocks
from unet_transfer.errors import ConfigError
from unet_transfer.inference import recommend
from unet_transfer.inference.choose import choose, study_rows
from unet_transfer.model import UNet

MODEL = {"model._target_": "unet_transfer.model.UNet", "model.width": 4, "model.levels": 4, "model.in_channels": 1,
         "model.dropout": 0.5, "model.dropout_at": ["bottleneck"], "model.extra_conv": False, "model.norm": "none"}


def fake_run(root: Path, direction: str, k: int, fold: int, dice: float, dataset: str = "busi") -> Path:
    """A finished run's metrics.json as run.py writes it (the fields the report reads)."""
    folder = root / dataset / f"fold={fold},freeze={direction},k={k}"
    folder.mkdir(parents=True)
    metrics = {"dataset": dataset, "direction": direction, "freeze": direction, "k": k, "fold": fold, "folds": 2,
               "trainable_blocks": list(Blocks().swept(direction, k)), "dice": dice, "pixel_error": 10 * (1 - dice),
               "adjusted_rand": dice - 0.05, "epochs": 20, "seed": 0, "pretrained": "pre.pt", "settings": MODEL}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.fixture
def study(tmp_path):
    for direction, k, dice in (("shallow_to_deep", 3, (0.8, 0.7)), ("deep_to_shallow", 3, (0.8, 0.7)),
                               ("shallow_to_deep", 1, (0.6, 0.62))):
        for fold, value in enumerate(dice):
            fake_run(tmp_path, direction, k, fold, value)
    return tmp_path


def parameters(blocks) -> int:
    model = UNet(width=4)
    return sum(p.numel() for b in blocks for p in model.block(b).parameters())


def test_a_tie_goes_to_the_configuration_that_trains_fewer_parameters(study):
    choice = choose(study_rows(study)[0])
    tied = choice.ranking[:2]
    assert tied[0].row["mean"]["dice"] == tied[1].row["mean"]["dice"] == pytest.approx(0.75)
    fewer = min(tied, key=lambda c: parameters(c.row["blocks"]))
    assert choice.chosen is fewer and choice.chosen.label == "Shallow to deep, k=3"
    assert choice.chosen.parameters == parameters((1, 2, 3)) < parameters((7, 8, 9))
    assert sorted(c.label for c in tied)[0] != choice.chosen.label  # not merely the first label


def test_a_configuration_with_missing_folds_is_passed_over_with_a_warning(study):
    fake_run(study, "deep_to_shallow", 2, 0, 0.95)  # one fold only, and the highest mean
    choice = choose(study_rows(study)[0])
    assert choice.chosen.label == "Shallow to deep, k=3"
    assert "missing folds" in choice.warnings[0] and "Deep to shallow, k=2" in choice.warnings[0]


def test_the_user_names_another_configuration_by_label_or_run_folder(study):
    rows = study_rows(study)[0]
    assert choose(rows, pick="shallow to deep, k=1").chosen.label == "Shallow to deep, k=1"
    folder = study / "busi" / "fold=1,freeze=deep_to_shallow,k=3"
    assert choose(rows, pick=str(folder)).chosen.label == "Deep to shallow, k=3"
    with pytest.raises(ConfigError, match="matches several configurations"):
        choose(rows, pick="k=3")
    with pytest.raises(ConfigError, match="matches no configuration: .*Shallow to deep, k=1"):
        choose(rows, pick="contracting")


def test_a_study_of_several_datasets_asks_which_and_dry_run_trains_nothing(study, capsys):
    fake_run(study, "shallow_to_deep", 3, 0, 0.9, dataset="udiat")
    fake_run(study, "shallow_to_deep", 3, 1, 0.9, dataset="udiat")
    assert recommend.main([str(study), "--dry-run"]) == 2
    assert "several datasets (busi, udiat): choose one with --dataset" in capsys.readouterr().err
    assert recommend.main([str(study), "--dataset", "busi", "--dry-run"]) == 0
    assert "-> 0.7500" in capsys.readouterr().out and not (study / "recommended").exists()
