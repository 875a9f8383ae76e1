"""`recommend` does not pick by noise: among the configurations whose mean is within the study's
own noise of the best (the difference is no larger than the standard error of the paired fold
differences), the cheapest one (fewest trainable parameters) is chosen, and the card says so."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from unet_transfer.inference.card import build_card, markdown
from unet_transfer.inference.choose import choose, study_rows

CONTRACTING = [0.80, 0.75, 0.78, 0.72, 0.77]  # per fold
CLOSE = [-0.030, 0.020, -0.010, 0.025, -0.022]  # expanding - contracting per fold: mean -0.0034, folds overlap
APART = [-0.052, -0.048, -0.050, -0.051, -0.049]  # expanding 0.05 lower on every fold
PARAMETERS = {"shallow_to_deep": 1000, "deep_to_shallow": 650}  # expanding trains 35% fewer


def fake_run(root: Path, direction: str, k: int, fold: int, dice: float, parameters: dict = PARAMETERS) -> None:
    folder = root / "busi" / f"fold={fold},freeze={direction},k={k}"
    folder.mkdir(parents=True)
    metrics = {"dataset": "busi", "direction": direction, "freeze": direction, "k": k, "fold": fold, "folds": 5,
               "trainable_blocks": [1, 2, 3, 4, 5] if k == 5 else [6, 7, 8, 9], "dice": dice,
               "pixel_error": 10 * (1 - dice), "adjusted_rand": dice - 0.05, "epochs": 20, "seed": 0,
               "pretrained": "pre.pt", "trainable_params": parameters[direction]}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def paths_study(root: Path, differences: list[float], parameters: dict = PARAMETERS) -> list[dict]:
    for fold, (dice, difference) in enumerate(zip(CONTRACTING, differences, strict=True)):
        fake_run(root, "shallow_to_deep", 5, fold, dice, parameters)
        fake_run(root, "deep_to_shallow", 4, fold, dice + difference, parameters)
    return study_rows(root)[0]


def fake_final() -> SimpleNamespace:
    """What build_card reads of a trained network, without training one."""
    cfg = OmegaConf.create({"pretrained": "pre.pt", "seed": 0, "batch_size": 4, "augment": {"mode": "online"}})
    return SimpleNamespace(cfg=cfg, model=SimpleNamespace(parameters=lambda: []), dataset="busi", image_size=64,
                           data="busi-abc", n_images=10, n_train=10, ids_sha256="0" * 64, image_digests=[], epochs=20,
                           duration_s=1.0, device="cpu", precision="32-true")


def test_within_the_noise_the_cheaper_configuration_wins_and_the_card_says_why(tmp_path):
    choice = choose(paths_study(tmp_path, CLOSE))
    best, cheaper = choice.ranking[0], choice.ranking[1]
    assert best.row["mean"]["dice"] - cheaper.row["mean"]["dice"] == pytest.approx(0.0034)
    assert best.label.startswith("Contracting") and cheaper.label.startswith("Expanding")
    assert choice.chosen is cheaper and choice.chosen.parameters == 650
    standard_error = statistics.stdev(CLOSE) / 5 ** 0.5
    assert choice.noise["difference"] == pytest.approx(0.0034)
    assert choice.noise["standard_error"] == pytest.approx(standard_error)
    assert choice.noise["p"] == pytest.approx(0.8125)  # Wilcoxon over 5 folds, as stats.md gives it
    assert choice.noise["within"] == [best.label, cheaper.label]
    assert "within the study's noise" in choice.how and "chose the cheapest" in choice.how
    card = build_card(tmp_path, choice, fake_final(), {}, "key", [])
    assert card["chosen"]["noise"]["within"] == [best.label, cheaper.label]
    assert card["configuration"]["label"] == cheaper.label
    text = markdown(card)
    assert "the top 2 were within the study's noise (difference 0.0034, paired p=0.812" in text
    assert "chose the cheapest" in text


def test_clearly_separated_the_best_wins_although_it_trains_more(tmp_path):
    choice = choose(paths_study(tmp_path, APART))
    assert choice.chosen is choice.ranking[0] and choice.chosen.parameters == 1000
    assert choice.noise is None and "were within the study's noise" not in choice.how
    card = build_card(tmp_path, choice, fake_final(), {}, "key", [])
    assert card["chosen"]["noise"] is None and "were within the study's noise" not in markdown(card)


def test_within_the_noise_a_best_that_is_also_cheapest_stays_and_the_card_says_it_was_close(tmp_path):
    choice = choose(paths_study(tmp_path, CLOSE, {"shallow_to_deep": 650, "deep_to_shallow": 1000}))
    assert choice.chosen is choice.ranking[0] and choice.chosen.parameters == 650
    assert "the top 2 were within the study's noise" in choice.how
    assert "the best also trains the fewest parameters" in choice.how


def test_choose_still_overrides_the_rule(tmp_path):
    choice = choose(paths_study(tmp_path, CLOSE), pick="Contracting")
    assert choice.chosen.parameters == 1000 and "--choose" in choice.how
