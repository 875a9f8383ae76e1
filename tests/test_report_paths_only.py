"""A study of the two paths only (freeze=contracting,expanding, no k sweep): the report shows the
contracting-vs-expanding table and says there is no k sweep, instead of a k table of dashes and
a two-point Fig. 4."""

from __future__ import annotations

from test_report import write_fake_run

from unet_transfer.report import write_report

JITTER = [0.03, -0.02, 0.04]


def paths_only_study(root, with_k: int | None = None) -> None:
    """Contracting (blocks 1-5, k=5) and expanding (blocks 6-9, k=4) runs of 3 folds, as run.py
    records freeze=contracting / freeze=expanding (the canonical direction and k = the number of
    blocks); `with_k` adds one real step of a k sweep."""
    for fold, jitter in enumerate(JITTER):
        write_fake_run(root, f"contracting_f{fold}", direction="shallow_to_deep", k=5, fold=fold, folds=3,
                       dice=0.80 + jitter)
        write_fake_run(root, f"expanding_f{fold}", direction="deep_to_shallow", k=4, fold=fold, folds=3,
                       dice=0.76 + jitter)
        if with_k is not None:
            write_fake_run(root, f"s2d_k{with_k}_f{fold}", direction="shallow_to_deep", k=with_k, fold=fold,
                           folds=3, dice=0.70 + jitter)


def test_a_paths_only_study_has_no_k_table_and_no_fig4(tmp_path):
    paths_only_study(tmp_path / "runs")
    paths = write_report(tmp_path / "runs", tmp_path / "report")
    text = paths["summary.md"].read_text()
    assert "| Contracting path | 1–5 |" in text and "| Expanding path | 6–9 |" in text
    assert "By number of fine-tuned blocks k" not in text  # no table of dashes
    assert "No k sweep in this study" in text
    assert not any(name.endswith("_vs_blocks.png") for name in paths)
    assert not (tmp_path / "report" / "dice_vs_blocks.png").exists()
    assert "dice_vs_blocks.png" not in text
    assert "no k sweep" in text.split("## Notes")[1]  # and the notes say why Fig. 4 is missing


def test_one_more_k_step_is_a_k_sweep_again(tmp_path, monkeypatch):
    from unet_transfer.report import fig4

    drawn = []
    monkeypatch.setattr(fig4, "plot_metric_vs_blocks", lambda rows, metric, path: drawn.append(metric))
    paths_only_study(tmp_path / "runs", with_k=2)
    text = write_report(tmp_path / "runs", tmp_path / "report")["summary.md"].read_text()
    k_table = text.split("By number of fine-tuned blocks k")[1]
    assert next(line for line in k_table.splitlines() if line.startswith("| 2 |")).count("0.70") == 1
    assert "No k sweep" not in text and drawn == ["dice", "pixel_error", "adjusted_rand"]
