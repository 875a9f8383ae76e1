import statistics

from unet_transfer.report.ablation import gap_rows, swept_settings, write_setting_gaps


def fake_runs():
    runs = []
    for speckle, gap in ((0.0, 0.0), (1.0, 0.2)):
        for fold in range(3):
            base = {"pretrained": "p.pt", "epochs": 5, "fold": fold, "dataset_settings": {"speckle": speckle, "seed": 0}}
            runs.append({**base, "direction": "shallow_to_deep", "k": 5, "trainable_blocks": [1, 2, 3, 4, 5],
                         "dice": 0.6 + gap + 0.01 * fold})
            runs.append({**base, "direction": "deep_to_shallow", "k": 4, "trainable_blocks": [6, 7, 8, 9],
                         "dice": 0.6 + 0.02 * fold})
    return runs


def test_the_gap_is_paired_by_fold_for_each_swept_value(tmp_path):
    runs = fake_runs()
    assert swept_settings(runs) == ["speckle"]
    rows = gap_rows(runs, "speckle")
    assert [r["value"] for r in rows] == [0.0, 1.0] and all(r["folds"] == 3 for r in rows)
    expected = [0.2 + 0.01 * f - 0.02 * f for f in range(3)]
    assert abs(rows[1]["gap"] - statistics.fmean(expected)) < 1e-12
    assert abs(rows[1]["gap_std"] - statistics.stdev(expected)) < 1e-12
    written = write_setting_gaps(runs, tmp_path)
    assert set(written) == {"speckle_gap.md", "speckle_gap.png"}
    assert "| 1 | 3 |" in (tmp_path / "speckle_gap.md").read_text()
