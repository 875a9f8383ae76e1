"""The study report, on fake run folders with known numbers (no training involved)."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wilcoxon

from unet_transfer.data.arrays import SegmentationSet
from unet_transfer.data.cache import save_set
from unet_transfer.report import NoRunsError, write_report
from unet_transfer.report.collect import find_runs
from unet_transfer.report.examples import choose_examples
from unet_transfer.report.stats import format_p, holm, paired_test, rank_biserial

ROOT = Path(__file__).resolve().parents[1]
N_BLOCKS = 9
IDS = [f"img{i:02d}" for i in range(20)]  # 4 held-out images per fold with 5 folds


def fold_ids(fold: int, folds: int = 5) -> list[str]:
    return [i for n, i in enumerate(IDS) if n % folds == fold]


def write_fake_run(
    root: Path,
    name: str,
    *,
    dataset="busi",
    direction="shallow_to_deep",
    k=5,
    fold=0,
    folds=5,
    dice=None,
    pixel_error=1.5,
    adjusted_rand=0.7,
    per_image=None,
    epochs=20,
    seed=0,
    pretrained="pre/xpie.ckpt",
    cache=None,
    predictions=None,
) -> Path:
    """A finished run folder as run.py leaves it (metrics.json, per_image.csv, predictions.npz).

    per_image: {id: dice} (pixel error and adjusted Rand derived from it); the run's dice is
    their mean unless given.
    """
    folder = root / name
    folder.mkdir(parents=True)
    if per_image is None:
        per_image = {i: dice if dice is not None else 0.8 for i in fold_ids(fold, folds)}
    rows = [
        {"id": i, "dice": d, "pixel_error": 10 * (1 - d), "adjusted_rand": d - 0.02}
        for i, d in per_image.items()
    ]
    if direction == "shallow_to_deep":
        blocks = list(range(1, k + 1))
    elif direction == "deep_to_shallow":
        blocks = list(range(N_BLOCKS + 1 - k, N_BLOCKS + 1))
    else:
        blocks, k = list(range(1, N_BLOCKS + 1)), N_BLOCKS
    metrics = {
        "dataset": dataset,
        "direction": direction,
        "freeze": direction,
        "k": k,
        "fold": fold,
        "folds": folds,
        "trainable_blocks": blocks,
        "dice": dice if dice is not None else statistics.fmean(r["dice"] for r in rows),
        "pixel_error": pixel_error,
        "adjusted_rand": adjusted_rand,
        "n_images": len(rows),
        "n_train": 16,
        "epochs": epochs,
        "seed": seed,
        "split_seed": 0,
        "pretrained": pretrained,
        "image_size": 16,
        "width": 4,
        "batch_size": 4,
        "augment": "online",
        "precision": "32-true",
        "duration_s": 1.0,
    }
    if cache is not None:
        metrics["cache"] = str(cache)
    with open(folder / "per_image.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "dice", "pixel_error", "adjusted_rand"])
        writer.writeheader()
        writer.writerows(rows)
    if predictions is not None:
        ids = sorted(predictions)
        np.savez_compressed(
            folder / "predictions.npz",
            ids=np.array(ids),
            probabilities=np.stack([predictions[i] for i in ids]).astype(np.float16),
        )
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


S2D = [0.70, 0.73, 0.75, 0.77, 0.79, 0.80, 0.80, 0.80, 0.80]  # realistic, as in the paper's Fig. 4
D2S = [0.62, 0.65, 0.68, 0.71, 0.74, 0.76, 0.78, 0.79, 0.80]
JITTER = [0.03, -0.02, 0.04, -0.04, -0.01]  # per fold; std ≈ 0.033


def fake_study(root: Path, *, skip=(), cache=None, predictions=None, epochs=20, prefix="") -> None:
    """Both directions at k=1..9, 5 folds, reference rows; `skip` drops (direction, k, fold)."""
    for direction, curve in (("shallow_to_deep", S2D), ("deep_to_shallow", D2S)):
        for k in range(1, 10):
            for fold in range(5):
                if (direction, k, fold) in skip:
                    continue
                base = curve[k - 1] + JITTER[fold]
                per_image = {
                    i: round(base + 0.01 * n - 0.015, 4) for n, i in enumerate(fold_ids(fold))
                }
                write_fake_run(
                    root,
                    f"{prefix}{direction}_k{k}_f{fold}",
                    direction=direction,
                    k=k,
                    fold=fold,
                    per_image=per_image,
                    pixel_error=3 - 2 * base,
                    adjusted_rand=base - 0.02,
                    epochs=epochs,
                    cache=cache,
                    predictions=predictions(direction, k, fold) if predictions else None,
                )
    for fold in range(5):
        write_fake_run(
            root,
            f"{prefix}none_f{fold}",
            direction="none",
            fold=fold,
            dice=0.81 + JITTER[fold],
            epochs=epochs,
        )
        write_fake_run(
            root,
            f"{prefix}scratch_f{fold}",
            direction="none",
            fold=fold,
            dice=0.6 + JITTER[fold],
            pretrained=None,
            epochs=epochs,
        )


def summary_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def find(rows, **match):
    found = [r for r in rows if all(str(r[k]) == str(v) for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


@pytest.fixture
def no_fig4(monkeypatch):
    """Skip drawing the score-vs-blocks figures (slow) where a test does not look at them."""
    from unet_transfer.report import fig4

    monkeypatch.setattr(fig4, "plot_metric_vs_blocks", lambda rows, metric, path: None)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One full fake study, reported once (figures take a moment); shared by several tests."""
    root = tmp_path_factory.mktemp("study")
    fake_study(root / "runs", skip={("shallow_to_deep", 3, 2)})
    (root / "runs" / "unfinished_run" / ".hydra").mkdir(
        parents=True
    )  # crashed run: no metrics.json
    paths = write_report(root / "runs", root / "report")
    return root, paths


def test_means_and_sample_stds_over_folds(study):
    root, paths = study
    rows = summary_rows(paths["summary.csv"])
    row = find(rows, dataset="busi", role="shallow_to_deep", k=5)
    dice = [S2D[4] + j for j in JITTER]
    per_fold = [statistics.fmean(S2D[4] + j + 0.01 * n - 0.015 for n in range(4)) for j in JITTER]
    assert float(row["dice_mean"]) == pytest.approx(statistics.fmean(dice), abs=1e-3)
    assert float(row["dice_std"]) == pytest.approx(statistics.stdev(dice), abs=1e-3)
    pixel = [3 - 2 * (S2D[4] + j) for j in JITTER]
    assert float(row["pixel_error_mean"]) == pytest.approx(np.mean(pixel), abs=1e-9)
    assert float(row["pixel_error_std"]) == pytest.approx(np.std(pixel, ddof=1), abs=1e-9)
    # metrics.json's dice is the per-image mean; the summary averages those
    assert float(row["dice_mean"]) == pytest.approx(np.mean(per_fold), abs=1e-9)
    assert row["folds_found"] == "5" and row["folds_expected"] == "5" and row["warning"] == ""
    scratch = find(rows, dataset="busi", role="scratch")
    assert float(scratch["dice_std"]) == pytest.approx(
        np.std([0.6 + j for j in JITTER], ddof=1), abs=1e-12
    )


def test_missing_fold_is_flagged_not_silently_averaged(study, caplog):
    root, paths = study
    rows = summary_rows(paths["summary.csv"])
    row = find(rows, dataset="busi", role="shallow_to_deep", k=3)
    assert (
        row["folds_found"] == "4" and row["missing_folds"] == "2" and "4/5 folds" in row["warning"]
    )
    assert float(row["dice_mean"]) == pytest.approx(
        statistics.fmean(
            statistics.fmean(S2D[2] + JITTER[f] + 0.01 * n - 0.015 for n in range(4))
            for f in (0, 1, 3, 4)
        )
    )
    text = paths["summary.md"].read_text()
    warnings = text.split("## busi")[0]
    assert "⚠" in warnings and "shallow to deep k=3" in warnings and "4/5 folds" in warnings
    k_table = text.split("By number of fine-tuned blocks k")[1]
    line3 = next(line for line in k_table.splitlines() if line.startswith("| 3 |"))
    assert "⚠ 4/5 folds" in line3
    line4 = next(line for line in k_table.splitlines() if line.startswith("| 4 |"))
    assert "⚠" not in line4


def test_missing_fold_warning_on_stderr(tmp_path, caplog, no_fig4):
    fake_study(tmp_path / "runs", skip={("deep_to_shallow", 4, 0)})
    with caplog.at_level("WARNING", logger="unet_transfer.report"):
        write_report(tmp_path / "runs", tmp_path / "out")
    assert any(
        "4/5 folds" in r.getMessage() and "deep to shallow k=4" in r.getMessage()
        for r in caplog.records
    )
    # expected folds from --folds beats the runs' own value
    paths = write_report(tmp_path / "runs", tmp_path / "out6", folds=6)
    assert "5/6 folds" in paths["summary.md"].read_text()


def test_contracting_expanding_and_reference_rows(study):
    root, paths = study
    text = paths["summary.md"].read_text()
    section = text.split("### Contracting vs expanding (pretrained, 20 epochs)")[1].split("###")[0]
    contracting = next(
        line for line in section.splitlines() if line.startswith("| Contracting path")
    )
    expanding = next(line for line in section.splitlines() if line.startswith("| Expanding path"))
    assert "| 1–5 |" in contracting and "| 6–9 |" in expanding
    dice = [S2D[4] + j for j in JITTER]
    assert f"{np.mean(dice):.2f} ± {np.std(dice, ddof=1):.2f}" in contracting
    assert "All blocks fine-tuned" in section and "Trained from scratch" in section
    assert "Pretrained only" not in section  # no epochs==0 runs in this study
    assert "1 unfinished run folder" in text


def test_unfinished_runs_are_ignored(study):
    root, paths = study
    found = find_runs(root / "runs")
    assert [p.name for p in found.unfinished] == ["unfinished_run"]
    assert len(found.runs) == 2 * 9 * 5 - 1 + 10
    assert all(r["path"].name != "unfinished_run" for r in found.runs)


def test_fig4_written_and_not_blank(study):
    root, paths = study
    from matplotlib.image import imread

    for name in ("dice_vs_blocks.png", "pixel_error_vs_blocks.png", "adjusted_rand_vs_blocks.png"):
        image = imread(paths[name])
        assert image.shape[0] > 400 and image.shape[1] > 500
        assert image[..., :3].std() > 0.05  # something was drawn
    assert "examples.png" not in paths  # no predictions in this study
    assert "examples.png" in paths["summary.md"].read_text()  # ... and the summary says why


def test_stats_wilcoxon_matches_scipy(study):
    root, paths = study
    text = paths["stats.md"].read_text()
    # contracting vs expanding, Dice, over held-out images (same fold, paired by id)
    first = [S2D[4] + JITTER[f] + 0.01 * n - 0.015 for f in range(5) for n in range(4)]
    second = [D2S[3] + JITTER[f] + 0.01 * n - 0.015 for f in range(5) for n in range(4)]
    diffs = np.array([round(a, 4) - round(b, 4) for a, b in zip(first, second, strict=True)])
    expected = wilcoxon(diffs, zero_method="wilcox").pvalue
    line = next(line for line in text.splitlines() if line.startswith("| Dice |"))
    assert format_p(expected) in line
    # over folds: 5 folds all favouring contracting -> the smallest possible p, 0.0625
    assert "| 0.0625 |" in line and "5/5" in line
    assert "0.0625 with 5" in text


def test_paired_test_edge_cases():
    assert paired_test([0.5], [0.4])["note"] == "too few pairs"
    assert paired_test([0.5, 0.6], [0.5, 0.6])["note"] == "no difference (all pairs tied)"
    result = paired_test([0.9, 0.8, 0.7, 0.6, 0.5, 0.5], [0.8, 0.8, 0.5, 0.7, 0.4, 0.1])
    d = np.array([0.1, 0.0, 0.2, -0.1, 0.1, 0.4])
    assert result["p"] == pytest.approx(wilcoxon(d, zero_method="wilcox").pvalue)
    assert result["n"] == 6 and result["n_zero"] == 1
    assert rank_biserial([1, 2, 3]) == 1.0 and rank_biserial([-1, -2]) == -1.0
    assert holm([0.01, 0.04, float("nan"), 0.03]) == pytest.approx(
        [0.03, 0.06, float("nan"), 0.06], nan_ok=True
    )


def test_several_seeds_averaged_within_seed_first(tmp_path, no_fig4):
    for seed, values in ((0, [0.70, 0.72, 0.74]), (1, [0.80, 0.84])):
        for fold, value in enumerate(values):
            write_fake_run(
                tmp_path / "runs",
                f"s{seed}_f{fold}",
                fold=fold,
                folds=3 if seed == 0 else 2,
                dice=value,
                seed=seed,
            )
    paths = write_report(tmp_path / "runs", folds=None)
    row = find(summary_rows(paths["summary.csv"]), role="shallow_to_deep")
    assert float(row["dice_mean"]) == pytest.approx((0.72 + 0.82) / 2)  # not the mean of all 5 runs
    assert float(row["dice_seed_std"]) == pytest.approx(statistics.stdev([0.72, 0.82]))
    assert "within each seed first" in paths["summary.md"].read_text()


def test_epoch_check(tmp_path, no_fig4):
    fake_study(tmp_path / "runs", epochs=20)
    for fold in range(5):  # deepest block only, 40 epochs: +3%
        write_fake_run(
            tmp_path / "runs",
            f"e40_f{fold}",
            direction="deep_to_shallow",
            k=1,
            fold=fold,
            epochs=40,
            dice=round((D2S[0] + JITTER[fold]) * 1.03, 6),
        )
    paths = write_report(tmp_path / "runs", tmp_path / "out")
    text = paths["epoch_check.md"].read_text()
    assert "deepest block only" in text and "+3.0%" in text and "20 → 40" in text


def test_no_epoch_check_with_one_epoch_count(study):
    root, paths = study
    assert "epoch_check.md" not in paths


def make_cache(folder: Path, size: int = 16) -> tuple[SegmentationSet, dict]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (len(IDS), size, size), dtype=np.uint8)
    masks = np.zeros((len(IDS), size, size), bool)
    for n in range(len(IDS)):
        masks[n, 4 + n % 3 : 10, 3 : 11 - n % 4] = True
    data = SegmentationSet(images, masks, tuple(IDS))
    save_set(folder, data, {"fake": True})
    return data, {i: masks[n] for n, i in enumerate(IDS)}


def test_examples_written_with_predictions_and_cache(tmp_path, no_fig4):
    cache = tmp_path / "cache" / "busi-0123"
    data, masks = make_cache(cache)

    def predictions(direction, k, fold):
        if (direction, k) not in (("shallow_to_deep", 5), ("deep_to_shallow", 4)):
            return None
        rng = np.random.default_rng(k * 10 + fold)
        return {
            i: np.clip(masks[i] * 0.9 + rng.random(masks[i].shape) * 0.3, 0, 1)
            for i in fold_ids(fold)
        }

    fake_study(tmp_path / "runs", cache=cache, predictions=predictions)
    for fold in range(5):
        write_fake_run(
            tmp_path / "runs",
            f"pretrained_only_f{fold}",
            direction="none",
            fold=fold,
            epochs=0,
            dice=0.3,
            cache=cache,
            predictions={i: np.full((16, 16), 0.2) for i in fold_ids(fold)},
        )
    paths = write_report(tmp_path / "runs", tmp_path / "out")
    from matplotlib.image import imread

    image = imread(paths["examples.png"])
    assert image.shape[0] > 300 and image[..., :3].std() > 0.05
    text = paths["summary.md"].read_text()
    assert "Pretrained only" in text and "examples.png: " not in text


def test_examples_skipped_without_cache(tmp_path, no_fig4):
    def predictions(direction, k, fold):
        return {i: np.zeros((16, 16)) for i in fold_ids(fold)}

    fake_study(
        tmp_path / "runs",
        cache=tmp_path / "nowhere",
        predictions=predictions,
        skip={
            (d, k, f)
            for d in ("shallow_to_deep", "deep_to_shallow")
            for k in (1, 2, 3, 6, 7, 8)
            for f in range(5)
        },
    )
    paths = write_report(tmp_path / "runs", tmp_path / "out")
    assert "examples.png" not in paths and not (tmp_path / "out" / "examples.png").exists()
    assert "cache named in metrics.json" in paths["summary.md"].read_text()


def test_choose_examples_is_reproducible():
    candidates = [
        {"fold": n % 5, "id": f"i{n}", "difference": d}
        for n, d in enumerate([0.0, 0.5, -0.7, 0.1, 0.05, 0.2, -0.01, 0.3])
    ]
    picks = choose_examples(candidates, n_extreme=2, n_random=2, seed=0)
    assert [p["id"] for p in picks[:2]] == ["i2", "i1"]
    assert picks == choose_examples(list(reversed(candidates)), 2, 2, 0)
    assert len({p["id"] for p in picks}) == 4


def test_cli_exit_code_2_on_empty_dir(tmp_path):
    (tmp_path / "empty" / "crashed" / ".hydra").mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "unet_transfer.report", str(tmp_path / "empty")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no metrics.json" in result.stderr and result.stderr.count("\n") == 1
    with pytest.raises(NoRunsError):
        write_report(tmp_path / "empty")


def test_cli_writes_and_prints(tmp_path, capsys):
    from unet_transfer.report.__main__ import main

    for fold in range(2):
        write_fake_run(tmp_path / "runs", f"f{fold}", k=3, fold=fold, folds=2, dice=0.7 + 0.1 * fold)  # a k step
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert f"Wrote {tmp_path / 'out' / 'summary.md'}" in printed
    assert f"Wrote {tmp_path / 'out' / 'dice_vs_blocks.png'}" in printed
    assert (tmp_path / "out" / "dice_vs_blocks.png").exists()


def test_the_block_count_comes_from_the_runs_metrics_when_recorded():
    from unet_transfer.blocks import Blocks
    from unet_transfer.report.collect import layout_of

    def n_blocks_of(runs, dataset):
        return layout_of(runs, dataset).n

    def path_role(direction, k, n_blocks):
        return Blocks.counted(n_blocks).path_of(direction, k)

    # A 3-level U-Net (7 blocks), shallow-to-deep runs only: nothing to infer the count from.
    runs = [{"dataset": "d", "direction": "shallow_to_deep", "k": k, "trainable_blocks": list(range(1, k + 1)),
             "n_blocks": 7} for k in range(1, 8)]
    assert n_blocks_of(runs, "d") == 7
    assert path_role("shallow_to_deep", 4, 7) == "contracting" and path_role("deep_to_shallow", 3, 7) == "expanding"
    older = [{key: value for key, value in run.items() if key != "n_blocks"} for run in runs]
    assert n_blocks_of(older, "d") == 9  # older runs without the count: the paper's model is assumed


def test_a_swept_setting_the_report_never_heard_of_gives_separate_rows(tmp_path, no_fig4):
    for lr, dice in ((1e-4, 0.70), (1e-3, 0.80)):
        for fold in range(5):
            folder = write_fake_run(tmp_path / "runs", f"lr{lr}_f{fold}", fold=fold, dice=dice + JITTER[fold])
            metrics = json.loads((folder / "metrics.json").read_text())
            metrics["settings"] = {"optimizer.lr": lr, "model.width": 4, "pretrained": "pre/xpie.ckpt"}
            (folder / "metrics.json").write_text(json.dumps(metrics))
    paths = write_report(tmp_path / "runs")
    rows = summary_rows(paths["summary.csv"])
    assert len(rows) == 2
    assert {r["settings"]: round(float(r["dice_mean"]), 6) for r in rows} == {
        "optimizer.lr=0.0001": round(0.70 + statistics.fmean(JITTER), 6),
        "optimizer.lr=0.001": round(0.80 + statistics.fmean(JITTER), 6)}
    text = paths["summary.md"].read_text()
    assert "(pretrained, 20 epochs, optimizer.lr=0.0001)" in text and "(pretrained, 20 epochs, optimizer.lr=0.001)" in text


def test_retraining_seeds_are_counted_and_their_spread_is_told_apart_from_the_folds(tmp_path, no_fig4):
    for seed, shift in ((0, 0.0), (1, 0.02), (2, 0.04)):
        for fold in range(5):
            write_fake_run(tmp_path / "runs", f"s{seed}_f{fold}", fold=fold, seed=seed, dice=0.7 + shift + JITTER[fold])
    paths = write_report(tmp_path / "runs")
    row = find(summary_rows(paths["summary.csv"]), role="shallow_to_deep")
    assert row["trainings"] == "15" and row["seeds"] == "0 1 2"
    assert float(row["dice_std"]) == pytest.approx(statistics.stdev(JITTER))  # over folds
    assert float(row["dice_seed_std"]) == pytest.approx(0.02)  # over retraining
    text = paths["summary.md"].read_text()
    assert "5/5 × 3 seeds" in text and "[± 0.02 over 3 seeds]" in text and "spread over retraining" in text
