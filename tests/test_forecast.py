"""The forecast (unet_transfer/forecast/): its estimators' arithmetic, the race, the scores
against a study, and a forecast folder that the report, resume and recommend never take for runs."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from unet_transfer.blocks import Blocks, BlockSpec
from unet_transfer.forecast import scoring, write
from unet_transfer.forecast.candidates import grid
from unet_transfer.forecast.estimator import Estimate
from unet_transfer.forecast.gradient import relative_gradient_norms
from unet_transfer.forecast.halving import cost, first_rung, rungs, successive_halving
from unet_transfer.forecast.ranking import everything_baseline, paper_baseline, rank_configurations
from unet_transfer.forecast.shift import statistics_distance
from unet_transfer.networks.protocol import BlockMap


class TwoScalars(nn.Module):
    """logits = w2 * (w1 * x): two 1x1 convolutions without bias, one per block."""

    def __init__(self, w1: float, w2: float):
        super().__init__()
        self.first, self.second = nn.Conv2d(1, 1, 1, bias=False), nn.Conv2d(1, 1, 1, bias=False)
        with torch.no_grad():
            self.first.weight.fill_(w1)
            self.second.weight.fill_(w2)

    def forward(self, x):
        return self.second(self.first(x))


def test_relative_gradient_norm_matches_a_hand_computation():
    w1, w2 = 0.5, -2.0
    model = TwoScalars(w1, w2)
    blocks = BlockMap(Blocks.listed([BlockSpec("enc1", "encoder", 1), BlockSpec("dec1", "decoder", 2)]),
                      ((model.first,), (model.second,)))
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.rand(2, 1, 3, 3, generator=generator), (torch.rand(2, 1, 3, 3, generator=generator) > 0.5).float())
               for _ in range(3)]
    # By hand: BCE-with-logits' derivative in the logit z = w1 w2 x is (sigmoid(z) - y) / pixels of
    # the batch; the gradient of the mean over the 3 batches' losses, by the chain rule.
    g1 = g2 = 0.0
    for x, y in batches:
        residual = (torch.sigmoid(w1 * w2 * x) - y) / x.numel()
        g1 += float((residual * w2 * x).sum()) / len(batches)
        g2 += float((residual * w1 * x).sum()) / len(batches)
    norms = relative_gradient_norms(model, batches, blocks)
    assert norms[1] == pytest.approx(abs(g1) / abs(w1), rel=1e-5)
    assert norms[2] == pytest.approx(abs(g2) / abs(w2), rel=1e-5)


def test_statistics_distance_is_zero_for_the_same_features_and_scale_free():
    torch.manual_seed(0)
    source = torch.randn(4, 3, 5, 5)
    target = source * 2 + 1  # every channel: mean 1 away, spread doubled
    assert statistics_distance(source, source) == 0.0
    assert statistics_distance(target * 10, source * 10) == pytest.approx(statistics_distance(target, source))
    assert statistics_distance(target, source) > 0.5


def test_successive_halving_keeps_a_planted_best_configuration_within_its_budget():
    random.seed(0)
    quality = {name: 0.5 + 0.02 * i for i, name in enumerate("abcdefghijklmnopq")}
    quality["e"] = 0.9  # planted: the best, but its early scores are as noisy as the others'
    trained = {name: 0 for name in quality}

    def advance(name, steps):
        trained[name] += steps

    def evaluate(name):  # noise that shrinks as a configuration trains longer
        return quality[name] + random.gauss(0, 0.3 / math.sqrt(trained[name]))

    budget = 2000
    race = successive_halving(list(quality), advance, evaluate, budget, cap=400)
    assert race.order[0] == "e"
    assert race.total_steps == sum(trained.values()) <= budget
    assert rungs(17) == [17, 9, 5, 3, 2]
    r0 = first_rung(17, budget, cap=400)
    assert cost(r0, rungs(17), cap=400) <= budget < cost(r0 + 1, rungs(17), cap=400)


def test_a_race_of_two_trains_both_and_orders_them():
    race = successive_halving(["x", "y"], lambda c, s: None, {"x": 0.2, "y": 0.7}.get, budget=10)
    assert race.order == ["y", "x"] and race.steps == {"x": 10 // 2, "y": 10 // 2}


# A 1-level U-Net: blocks 1 (enc1), 2 (bottleneck), 3 (dec1); contracting = 1-2, expanding = 3.
LAYOUT = Blocks(1)
CANDIDATES = grid(LAYOUT)  # S→D k=1 [1], k=2 [1,2], k=3 [1,2,3]; D→S k=1 [3], k=2 [2,3]
STUDY = {"S→D k=1": [0.5, 0.5], "S→D k=2": [0.65, 0.75], "S→D k=3": [0.8, 0.8],
         "D→S k=1": [0.6, 0.6], "D→S k=2": [0.6, 0.7]}
FORECAST = {"S→D k=1": 1.0, "S→D k=2": 3.0, "S→D k=3": 5.0, "D→S k=1": 2.0, "D→S k=2": 4.0}


def test_tau_direction_k_and_regret_match_a_hand_made_table():
    assert [c.label for c in CANDIDATES] == list(FORECAST)
    table = scoring.StudyTable(dice=STUDY)
    result = scoring.score(FORECAST, CANDIDATES, LAYOUT, table)
    # Study order: S3 0.8 > S2 0.7 > D2 0.65 > D1 0.6 > S1 0.5; the forecast swaps S2 and D2 only:
    # 9 concordant pairs, 1 discordant, no ties: tau = (9 - 1) / 10.
    assert result.tau == pytest.approx(0.8)
    # Paths: contracting (S2, 0.7) beats expanding (D1, 0.6) in the study; the forecast: 3 > 2.
    assert result.direction == "contracting" and result.direction_right is True
    # k=1: D1 0.6 vs S1 0.5, spreads 0: compared; the forecast picks D1 (2 > 1): right, regret 0.
    # k=2: S2 0.70 vs D2 0.65 differ by less than the spread (0.0707): not compared; the forecast
    # picks D2 (4 > 3): regret 0.05. Mean regret (0 + 0.05) / 2.
    assert (result.k_right, result.k_compared) == (1, 1)
    assert result.regret == pytest.approx(0.025)
    assert result.pick == "S→D k=3" and result.regret_pick == pytest.approx(0.0)


def test_a_tie_costs_half_the_difference_and_is_never_right():
    tied = {**FORECAST, "S→D k=1": 2.0}  # k=1: both directions score 2
    result = scoring.score(tied, CANDIDATES, LAYOUT, scoring.StudyTable(dice=STUDY))
    assert result.k_right == 0 and result.regret == pytest.approx((0.05 + 0.05) / 2)


def test_ranking_rule_and_baselines():
    summed = rank_configurations({1: 0.5, 2: 0.1, 3: 0.2}, CANDIDATES)
    assert summed == pytest.approx({"S→D k=1": 0.5, "S→D k=2": 0.6, "S→D k=3": 0.8, "D→S k=1": 0.2, "D→S k=2": 0.3})
    paper = paper_baseline(CANDIDATES)
    assert paper["S→D k=1"] > paper["D→S k=1"] and paper["D→S k=2"] > paper["S→D k=1"]
    everything = everything_baseline(CANDIDATES, {1: 10, 2: 60, 3: 30})
    assert max(everything, key=everything.get) == "S→D k=3" and everything["S→D k=3"] == 1.0


def fake_run(root: Path, direction: str, k: int, fold: int, dice: float) -> Path:
    """A finished run's metrics.json with the fields the report reads."""
    folder = root / f"fold={fold},freeze={direction},k={k}"
    folder.mkdir(parents=True)
    metrics = {"dataset": "busi", "direction": direction, "freeze": direction, "k": k, "fold": fold, "folds": 2,
               "trainable_blocks": list(Blocks().swept(direction, k)), "dice": dice, "pixel_error": 10 * (1 - dice),
               "adjusted_rand": dice - 0.05, "epochs": 20, "n_train": 10, "seed": 0, "pretrained": "pre.pt",
               "duration_s": 2.0, "run_key": f"{direction}{k}", "invocation": "abc"}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def written_forecast(study: Path) -> Path:
    """A forecast folder as the command writes it (baselines only: no network needed)."""
    layout = Blocks()
    ctx = SimpleNamespace(experiment="demo", study="demo", layout=layout, candidates=grid(layout), study_runs=4,
                          study_image_steps=800)
    estimates = [Estimate("baseline: paper", "paper", scores=paper_baseline(ctx.candidates))]
    table = scoring.study_table(study, ctx.candidates)
    results = [scoring.score(e.scores, ctx.candidates, layout, table) for e in estimates]
    write.write(ctx, estimates, results, table, {"seconds": table.seconds, "image_steps": table.image_steps},
                study / "forecast")
    return study / "forecast"


def test_a_forecast_folder_is_no_run_for_report_resume_or_recommend(tmp_path, monkeypatch):
    from unet_transfer.inference.choose import study_rows
    from unet_transfer.report.collect import find_runs
    from unet_transfer.training import run as run_module

    for fold, (a, b) in enumerate(((0.8, 0.6), (0.7, 0.5))):
        fake_run(tmp_path, "shallow_to_deep", 3, fold, a)
        fake_run(tmp_path, "deep_to_shallow", 3, fold, b)
    before_runs = [r["relpath"] for r in find_runs(tmp_path).runs]
    before_rows = study_rows(tmp_path)[0]
    folder = written_forecast(tmp_path)

    assert {p.name for p in folder.iterdir()} == {"forecast.json", "forecast.md", "forecast.png"}
    assert not list(folder.rglob("metrics.json"))
    found = find_runs(tmp_path)
    assert [r["relpath"] for r in found.runs] == before_runs and not found.unfinished and not found.problems
    rows = study_rows(tmp_path)[0]
    assert [(row["label"], row["n_runs"]) for row in rows] == [(row["label"], row["n_runs"]) for row in before_rows]
    assert [row["label"] for row in rows] == ["Shallow to deep, k=3", "Deep to shallow, k=3"]
    monkeypatch.setattr(run_module, "process_token", lambda: "abc")
    new_run = tmp_path / "fold=0,freeze=shallow_to_deep,k=4"
    assert run_module.find_twin(new_run, "forecast") is None  # resume's lookup finds nothing in it
    assert run_module.find_twin(new_run, "shallow_to_deep3") == tmp_path / "fold=0,freeze=shallow_to_deep,k=3"
    # ... and the forecast read the study through the same collector
    doc = json.loads((folder / "forecast.json").read_text())
    assert doc["study_results"]["dice"] == pytest.approx({"S→D k=3": 0.75, "D→S k=3": 0.55})
    assert doc["study_results"]["seconds"] == 8.0 and doc["study_results"]["image_steps"] == 800
    assert doc["estimators"][0]["direction_right"] is None  # the study ran no path: no direction to check
    assert "Forecast vs study" in (folder / "forecast.md").read_text()


@pytest.mark.parametrize("argv, words", [
    (["demo", "--estimators", "gradient,oracle"], "--estimators 'gradient,oracle': unknown ['oracle']"),
    (["demo", "--share", "2"], "--share 2.0"),
    (["no_such_experiment"], "No experiment 'no_such_experiment'"),
])
def test_a_bad_command_line_is_one_line_and_exit_code_2_before_any_work(argv, words, capsys, tmp_path, monkeypatch):
    from unet_transfer.forecast.command import main

    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
    assert not (tmp_path / "multirun").exists()


def test_a_study_of_several_networks_is_scored_on_the_forecast_networks_runs_only(tmp_path):
    unet = {"model._target_": "unet_transfer.model.UNet", "model.width": 8}
    flex = {"model._target_": "unet_transfer.networks.flexunet.build", "model.backbone": "resnet18"}
    for network, dice in ((unet, 0.8), (flex, 0.2)):  # FlexibleUNet's S→D k=3 trains blocks 1-3 too
        for fold in range(2):
            folder = fake_run(tmp_path / network["model._target_"], "shallow_to_deep", 3, fold, dice)
            metrics = json.loads((folder / "metrics.json").read_text())
            metrics.update(settings=network, run_key=f"{network['model._target_']}{fold}")
            (folder / "metrics.json").write_text(json.dumps(metrics))
    candidates = grid(Blocks())
    table = scoring.study_table(tmp_path, candidates, unet)
    assert table.dice["S→D k=3"] == pytest.approx([0.8, 0.8]) and table.runs == 2
    assert any("2 runs of other networks left out" in warning for warning in table.warnings)
    assert sorted(scoring.study_table(tmp_path, candidates).dice["S→D k=3"]) == pytest.approx([0.2, 0.2, 0.8, 0.8])
