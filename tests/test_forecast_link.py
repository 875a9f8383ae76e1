"""The report links the forecast: when multirun/<study>/forecast/forecast.md exists, the study's
summary.md says so, links it (relative to where summary.md is written) and gives its headline
scores; a forecast older than the study's newest run is marked stale; no forecast, no section."""

from __future__ import annotations

import json
import os
from pathlib import Path

from test_forecast import fake_run, written_forecast

from unet_transfer.report import write_report


def study(root: Path) -> Path:
    for fold, (a, b) in enumerate(((0.8, 0.6), (0.7, 0.5))):
        fake_run(root, "shallow_to_deep", 3, fold, a)
        fake_run(root, "deep_to_shallow", 3, fold, b)
    return root


def test_summary_links_the_forecast_and_gives_its_scores(tmp_path):
    root = study(tmp_path / "demo")
    forecast = written_forecast(root)
    later = max(p.stat().st_mtime for p in root.rglob("metrics.json")) + 10
    for path in forecast.iterdir():
        os.utime(path, (later, later))
    write_report(root)
    text = (root / "summary.md").read_text()
    assert "## Forecast" in text
    assert "[forecast/forecast.md](forecast/forecast.md)" in text
    doc = json.loads((forecast / "forecast.json").read_text())
    tau = doc["estimators"][0]["tau"]
    assert f"| baseline: paper | {tau:.2f} |" in text
    assert "older than" not in text


def test_summary_written_elsewhere_links_the_forecast_from_there(tmp_path):
    root = study(tmp_path / "demo")
    written_forecast(root)
    out = tmp_path / "report"
    write_report(root, out)
    text = (out / "summary.md").read_text()
    assert "[forecast/forecast.md](../demo/forecast/forecast.md)" in text


def test_a_forecast_older_than_the_newest_run_is_marked_stale(tmp_path):
    root = study(tmp_path / "demo")
    forecast = written_forecast(root)
    earlier = min(p.stat().st_mtime for p in root.rglob("metrics.json")) - 10
    for path in forecast.iterdir():
        os.utime(path, (earlier, earlier))
    write_report(root)
    text = (root / "summary.md").read_text()
    assert "older than the study's newest run" in text and "unet-transfer forecast demo" in text


def test_no_forecast_no_section_and_a_broken_one_is_a_link_only(tmp_path):
    root = study(tmp_path / "demo")
    write_report(root)
    assert "Forecast" not in (root / "summary.md").read_text()
    (root / "forecast").mkdir()
    (root / "forecast" / "forecast.md").write_text("# Forecast\n")
    (root / "forecast" / "forecast.json").write_text("{not json")
    write_report(root)
    text = (root / "summary.md").read_text()
    assert "[forecast/forecast.md](forecast/forecast.md)" in text and "forecast.json is unreadable" in text
    assert "failed" not in text
