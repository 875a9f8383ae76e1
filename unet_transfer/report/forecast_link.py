"""summary.md links the study's forecast (`unet-transfer forecast`, multirun/<study>/forecast/):
where forecast/forecast.md exists beside the runs, a "Forecast" section links it and repeats the
headline scores of forecast.json (one record per estimator: tau, direction right, k right, regret,
cost share), so that a reader of the study learns that a cheap answer was made and how good it was.

Reads forecast.json by its documented keys only (the report never imports the forecast package,
which sits above it). A forecast older than the study's newest run scored fewer runs than the
report shows: the section says so and how to score it again.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from unet_transfer.report.registry import Report, entry

FOLDER, TEXT, DOC = "forecast", "forecast.md", "forecast.json"


def cell(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def score_table(doc: dict) -> list[str]:
    """The forecast-vs-study table of forecast.json, or nothing where the study was not scored."""
    if not doc.get("study_results"):
        return ["It was made before the study had results; run the forecast again to score it against them."]
    lines = ["| Estimator | tau | Direction right | k right | Regret (equal k) | Cost share |",
             "|---|---|---|---|---|---|"]
    for record in doc.get("estimators", []):
        if record.get("error"):
            lines.append(f"| {record.get('name')} | failed: {record['error']} | | | | |")
            continue
        k = f"{record.get('k_right')}/{record.get('k_compared')}" if record.get("k_compared") is not None else "–"
        lines.append(f"| {record.get('name')} | {cell(record.get('tau'))} | {cell(record.get('direction_right'))} | "
                     f"{k} | {cell(record.get('regret'), 3)} | {cell(record.get('cost_share'), 3)} |")
    return lines


@entry("forecast_link", order=95)
def link_forecast(report: Report, out: Path) -> dict[str, Path]:
    text = report.root / FOLDER / TEXT
    if not text.is_file():
        return {}
    link = Path(os.path.relpath(text, out)).as_posix()
    lines = ["## Forecast", "",
             f"A forecast of this study's answer (which blocks to fine-tune, made without running it) is in "
             f"[{FOLDER}/{TEXT}]({link}), scored against the study as it stood then:", ""]
    doc_path = text.parent / DOC
    try:
        doc = json.loads(doc_path.read_text())
    except (OSError, ValueError) as error:
        lines[-2] = lines[-2].replace(", scored against the study as it stood then:", ".")
        lines.append(f"Its {DOC} is unreadable ({type(error).__name__}); run `unet-transfer forecast` again.")
        report.sections.append("\n".join(lines))
        return {}
    lines += score_table(doc)
    newest = max((run["mtime"] for run in report.runs), default=0.0)
    if doc_path.stat().st_mtime < newest:
        lines += ["", f"⚠ The forecast is older than the study's newest run: `unet-transfer forecast "
                      f"{doc.get('experiment', '<experiment>')}` scores it against all of them."]
    report.sections.append("\n".join(lines))
    return {}
