"""`unet-transfer forecast` end to end on a tiny experiment: a hand-made 2-fold study folder
(metrics.json only) and a tiny pretrained checkpoint; the forecast trains nothing of the study, reads
its runs, scores itself against them and writes forecast.json/.md/.png; without the study it says
in one line that nothing was scored and how to score it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_forecast import fake_run

from unet_transfer.blocks import Blocks

EXPERIMENT = """# @package _global_
defaults:
  - override /dataset: synthetic
study: tiny_forecast
model:
  width: 4
dataset:
  n_images: 12
  image_size: 32
folds: 2
trainer:
  max_epochs: 2
  enable_progress_bar: false
batch_size: 4
pretrained: {checkpoint}
pretrain: null
hydra:
  sweeper:
    params:
      freeze: shallow_to_deep,deep_to_shallow
      k: range(1,10)
      fold: range(0,2)
"""


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A config folder with the tiny experiment, its checkpoint, and the working folder."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from unet_transfer.checkpoint import save_weights
    from unet_transfer.config import compose_config

    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    checkpoint = tmp_path / "tiny.pt"
    (conf / "experiment" / "tiny_forecast.yaml").write_text(EXPERIMENT.format(checkpoint=checkpoint))
    cfg = compose_config(["experiment=tiny_forecast"], [str(conf)])
    save_weights(instantiate(cfg.model), checkpoint, OmegaConf.to_container(cfg.model, resolve=True))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return conf, work


def study_folder(work: Path) -> Path:
    """The whole grid, 2 folds, the contracting path planted better at every k."""
    root = work / "multirun" / "tiny_forecast"
    for k in Blocks().k_range:
        for fold in range(2):
            fake_run(root, "shallow_to_deep", k, fold, 0.5 + 0.04 * k + 0.01 * fold)
            if k < 9:
                fake_run(root, "deep_to_shallow", k, fold, 0.3 + 0.04 * k + 0.01 * fold)
    return root


@pytest.mark.slow
def test_forecast_end_to_end_scores_itself_against_a_study(tiny, capsys):
    from unet_transfer.forecast.command import main

    conf, work = tiny
    root = study_folder(work)
    assert main(["tiny_forecast", "--config-dir", str(conf), "--estimators", "gradient,racing"]) == 0
    out = capsys.readouterr().out
    assert {p.name for p in (root / "forecast").iterdir()} == {"forecast.json", "forecast.md", "forecast.png"}
    doc = json.loads((root / "forecast" / "forecast.json").read_text())
    assert doc["study_results"]["runs"] == 34
    names = [e["name"] for e in doc["estimators"]]
    assert names == ["gradient", "racing", "baseline: paper", "baseline: everything"]
    for record in doc["estimators"]:
        assert record["error"] is None
        assert {"tau", "direction_right", "k_right", "k_compared", "regret", "cost_share"} <= set(record)
        assert -1 <= record["tau"] <= 1 and record["k_compared"] == 8
    paper = doc["estimators"][2]
    assert paper["direction_right"] is True and paper["k_right"] == 8 and paper["regret"] == 0
    assert "Forecast vs study" in (root / "forecast" / "forecast.md").read_text()
    assert "no study results" not in out


def test_forecast_without_the_study_says_so_in_one_line(tiny, capsys):
    from unet_transfer.forecast.command import main

    conf, work = tiny
    assert main(["tiny_forecast", "--config-dir", str(conf), "--estimators", "gradient"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "no study results" in line]
    assert len(lines) == 1
    assert "multirun/tiny_forecast" in lines[0]
    assert f"unet-transfer study tiny_forecast --config-dir {conf}" in lines[0]
    doc = json.loads((work / "multirun" / "tiny_forecast" / "forecast" / "forecast.json").read_text())
    text = (work / "multirun" / "tiny_forecast" / "forecast" / "forecast.md").read_text()
    assert f"unet-transfer study tiny_forecast --config-dir {conf}" in text  # the study it asks for is the user's
    assert doc["study_results"] is None and doc["estimators"][0]["tau"] is None


def test_the_study_line_it_prints_is_the_users_own_study(tmp_path):
    import shlex

    from unet_transfer.study.runner import parser
    from unet_transfer.training.commands import user_study_command

    folders = [tmp_path / "my configs", tmp_path / "more"]
    line = user_study_command("mine", ["seed=1", "dataset.root=my data"], folders)
    words = shlex.split(line)
    assert words[:2] == ["unet-transfer", "study"]
    args = parser().parse_intermixed_args(words[2:])
    assert args.experiment == "mine" and args.overrides == ["seed=1", "dataset.root=my data"]
    assert args.config_dir == [str(folder.resolve()) for folder in folders]


def test_no_pretrain_stops_in_one_line_instead_of_pretraining_a_missing_checkpoint(tiny, capsys):
    from unet_transfer.forecast.command import main

    conf, work = tiny
    missing = work / "missing.pt"
    assert main(["tiny_forecast", "--config-dir", str(conf), "--no-pretrain", "pretrain=demo_pretrain",
                 f"pretrained={missing}"]) == 2
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.strip()]
    assert len(lines) == 1 and str(missing) in lines[0] and "--no-pretrain" in lines[0]
    assert f"unet-transfer study tiny_forecast --config-dir {conf.resolve()} pretrain=demo_pretrain" in lines[0]
    assert not missing.exists()
