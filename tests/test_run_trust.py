"""A finished run is a result you can trust: a diverged run is none, runs on other data are
other runs (folders, rows, identity), a metrics.json of the wrong shape is skipped by the report,
and a redone run says what changed."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import SYNTHETIC, TINY, run_cli
from layouts import write_image, write_mask
from test_report import write_fake_run

from unet_transfer.errors import UserError
from unet_transfer.report import write_report
from unet_transfer.report.collect import find_runs
from unet_transfer.training import identity
from unet_transfer.training.run import run, what_changed


def write_data(root: Path, count: int = 6, first_seed: int = 0) -> Path:
    """`images/img<N>.png` + `masks/img<N>.png`; another first_seed gives other content."""
    for n in range(count):
        write_image(root / "images" / f"img{n:03d}.png", first_seed + n, size=(24, 24))
        write_mask(root / "masks" / f"img{n:03d}.png", seed=first_seed + n, size=(24, 24))
    return root


# --- a diverged run is never a result -------------------------------------------------------


def test_a_diverged_run_writes_no_result_and_resume_trains_it_again(make_cfg, caplog):
    cfg = make_cfg("optimizer.lr=1e30")
    with pytest.raises(UserError, match=r"^Run diverged: the training loss became (nan|inf) at epoch 1, step \d+"
                                        r".*optimizer.lr=1e\+30.*no result written"):
        run(cfg)
    out = Path(cfg.output_dir)
    assert not (out / "metrics.json").exists() and not (out / "per_image.csv").exists()
    with caplog.at_level(logging.INFO, logger="unet_transfer"), pytest.raises(UserError, match="Run diverged"):
        run(cfg)  # resume=true: there is nothing to skip, it trains (and diverges) again
    assert "Skipping" not in caplog.text


def test_weights_that_end_non_finite_are_no_result(make_cfg, monkeypatch):
    step = torch.optim.Adam.step

    def poisoned(self, *args, **kwargs):  # the last update breaks the weights after a finite loss
        result = step(self, *args, **kwargs)
        with torch.no_grad():
            for group in self.param_groups:
                for parameter in group["params"]:
                    parameter.fill_(float("nan"))
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", poisoned)
    cfg = make_cfg("trainer.limit_train_batches=1")
    with pytest.raises(UserError, match=r"^Run diverged: the weights hold nan or inf after training.*no result written"):
        run(cfg)
    assert not (Path(cfg.output_dir) / "metrics.json").exists()


def test_a_diverged_run_ends_the_command_with_one_line_and_exit_code_2(tmp_path):
    result = run_cli([*TINY, *SYNTHETIC, "optimizer.lr=1e30", f"paths.cache_dir={tmp_path / 'cache'}"], cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output and len([line for line in output.splitlines() if "Run diverged" in line]) == 1
    assert not list(tmp_path.rglob("metrics.json"))


def test_a_diverged_run_in_a_parallel_sweep_lets_the_others_finish_then_ends_the_sweep_with_exit_code_2(tmp_path):
    result = run_cli(["-m", *TINY, *SYNTHETIC, "optimizer.lr=1e30,1e-4", f"paths.cache_dir={tmp_path / 'cache'}",
                      "study=s"], cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output and "1 run(s) of this sweep diverged" in output, output[-3000:]
    finished = list(tmp_path.rglob("metrics.json"))
    assert len(finished) == 1 and "optimizer.lr=0.0001" in str(finished[0])


# --- the data is part of a run's identity -----------------------------------------------------


def test_runs_on_other_data_are_other_report_rows(make_cfg, tmp_path):
    first, second = write_data(tmp_path / "data_a"), write_data(tmp_path / "data_b", first_seed=100)
    for root in (first, second):
        metrics = run(make_cfg("dataset=folder", f"dataset.root={root}", "dataset.image_size=32", "folds=2",
                               name=f"runs/{root.name}"))
        assert metrics["settings"]["data"] == Path(metrics["cache"]).name and metrics["dataset_root"] == str(root)
    runs = find_runs(tmp_path / "runs").runs
    assert len({run["key"] for run in runs}) == 2
    summary = write_report(tmp_path / "runs")["summary.md"].read_text()
    assert "using the newest" not in summary
    assert summary.count("data=folder-") >= 2


def sweep(tmp_path, *overrides):
    result = run_cli(["-m", *TINY, f"paths.cache_dir={tmp_path / 'cache'}", "hydra/launcher=basic", "study=s",
                      "dataset=folder", "dataset.image_size=32", "folds=2", "trainer.limit_train_batches=1",
                      *overrides], cwd=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result


def test_a_swept_data_folder_gives_each_folder_its_run_folder(tmp_path):
    first, second = write_data(tmp_path / "data_a"), write_data(tmp_path / "data_b", first_seed=100)
    sweep(tmp_path, f"dataset.root={first},{second}")
    folders = sorted(p.parent.name for p in (tmp_path / "multirun" / "s").rglob("metrics.json"))
    assert len(folders) == 2 and [name.split("-")[0] for name in folders] == ["dataset.root=data_a", "dataset.root=data_b"]
    assert all(str(tmp_path.name) not in name for name in folders)  # the path is hashed, not spelled out


def test_two_sweeps_that_differ_only_in_a_fixed_data_folder_share_no_run_folder(tmp_path):
    first, second = write_data(tmp_path / "data_a"), write_data(tmp_path / "data_b", first_seed=100)
    for root in (first, second):
        sweep(tmp_path, f"dataset.root={root}", "fold=0,1")
    study = tmp_path / "multirun" / "s"
    finished = list(study.rglob("metrics.json"))
    assert len(finished) == 4 and len({p.parent for p in finished}) == 4
    assert not list(study.rglob("metrics.previous.json"))  # neither sweep set the other's results aside
    assert {json.loads(p.read_text())["dataset_root"] for p in finished} == {str(first), str(second)}


# --- the report skips a metrics.json of the wrong shape ---------------------------------------


@pytest.mark.parametrize("change", [
    {"settings": ["optimizer.lr", 1e-3]},
    {"dataset": ["busi"]},
    {"direction": 3},
    {"phases": "gradual"},
    {"phases": [1, 2]},
    {"trainable_blocks": 5},
    {"n_blocks": "nine"},
    {"seed": [0]},
    {"method": {"name": "lora"}},
])
def test_a_metrics_json_of_the_wrong_shape_is_skipped_with_one_line(tmp_path, change):
    for fold in range(2):
        write_fake_run(tmp_path / "runs", f"good{fold}", fold=fold, folds=2)
    bad = write_fake_run(tmp_path / "runs", "bad", fold=0, folds=2, seed=1) / "metrics.json"
    bad.write_text(json.dumps({**json.loads(bad.read_text()), **change}))
    found = find_runs(tmp_path / "runs")
    assert [run["relpath"] for run in found.runs] == ["good0", "good1"]
    assert len(found.problems) == 1 and str(bad) in found.problems[0] and "run ignored" in found.problems[0]
    assert (write_report(tmp_path / "runs")["summary.md"]).exists()


# --- a redone run says what changed -----------------------------------------------------------


def test_a_code_change_within_one_version_names_the_code_digests():
    current = identity.code_version()
    finished = {"run_key": "old", "version": current["version"], "code_digest": "0123456789abcdef",
                "pretrained_sha256": None, "cache": "/cache/synthetic-1", "settings": {}}
    plan = SimpleNamespace(weights=None, cache_folder=Path("/other/synthetic-1"), settings={})
    said = what_changed(finished, plan)
    assert f"the code changed (code digest 0123456789abcdef -> {current['code_digest']})" in said
    assert f"{current['version']} -> {current['version']}" not in said
    older = what_changed({**finished, "version": "0.0.1"}, plan)
    assert f"the code changed (0.0.1 -> {current['version']})" in older

