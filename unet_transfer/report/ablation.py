"""Direction gap against a swept dataset setting (e.g. the simulator's speckle level).

When a study sweeps a dataset setting, the question is how the advantage of tuning the
contracting path over the expanding path changes with it. The gap is paired by fold: both
directions were scored on the same held-out images.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from unet_transfer.files import atomic_write_text
from unet_transfer.report.collect import run_path
from unet_transfer.report.registry import Report, entry


def swept_settings(runs: list[dict]) -> list[str]:
    """Numeric dataset settings that take more than one value across the runs."""
    values: dict[str, set] = defaultdict(set)
    for run in runs:
        for key, value in (run.get("dataset_settings") or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[key].add(float(value))
    return sorted(key for key, seen in values.items() if len(seen) > 1)


def gap_rows(runs: list[dict], setting: str) -> list[dict]:
    """Per setting value: mean Dice of contracting and expanding, and their paired gap."""
    dice: dict[tuple, dict[int, float]] = defaultdict(dict)
    for run in runs:
        value = (run.get("dataset_settings") or {}).get(setting)
        if value is None or not run.get("pretrained") or run.get("epochs", 1) == 0:
            continue
        path = run_path(run)
        if path is not None:
            dice[(float(value), path)][run["fold"]] = run["dice"]
    contracting, expanding = "contracting", "expanding"
    rows = []
    for value in sorted({v for v, _ in dice}):
        c, e = dice.get((value, contracting), {}), dice.get((value, expanding), {})
        paired = sorted(set(c) & set(e))
        gaps = [c[f] - e[f] for f in paired]
        rows.append({
            "value": value, "folds": len(paired),
            "contracting": statistics.fmean(c.values()) if c else float("nan"),
            "expanding": statistics.fmean(e.values()) if e else float("nan"),
            "gap": statistics.fmean(gaps) if gaps else float("nan"),
            "gap_std": statistics.stdev(gaps) if len(gaps) > 1 else float("nan"),
        })
    return rows


@entry("setting_gaps", order=70)
def write_setting_gaps_entry(report: Report, out: Path) -> dict[str, Path]:
    return write_setting_gaps(report.runs, out)


def write_setting_gaps(runs: list[dict], out: Path) -> dict[str, Path]:
    """<setting>_gap.md and <setting>_gap.png for every swept dataset setting."""
    written: dict[str, Path] = {}
    for setting in swept_settings(runs):
        rows = gap_rows(runs, setting)
        if not any(r["folds"] for r in rows):
            continue
        lines = [f"# Contracting vs expanding against `{setting}`", "",
                 "Gap = Dice(contracting tuned) - Dice(expanding tuned), paired by fold; mean ± sample std over folds.", "",
                 f"| {setting} | folds | Dice contracting | Dice expanding | gap |", "|---|---|---|---|---|"]
        lines += [f"| {r['value']:g} | {r['folds']} | {r['contracting']:.3f} | {r['expanding']:.3f} | "
                  f"{r['gap']:+.3f} ± {r['gap_std']:.3f} |" for r in rows]
        md = out / f"{setting}_gap.md"
        atomic_write_text(md, "\n".join(lines) + "\n")
        written[md.name] = md
        written[f"{setting}_gap.png"] = plot_gap(rows, setting, out / f"{setting}_gap.png")
    return written


def plot_gap(rows: list[dict], setting: str, path: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.6))
    ax = fig.subplots()
    x = [r["value"] for r in rows]
    ax.errorbar(x, [r["gap"] for r in rows], yerr=[0 if r["gap_std"] != r["gap_std"] else r["gap_std"] for r in rows],
                marker="o", capsize=4, color="#1f77b4")
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(setting)
    ax.set_ylabel("Dice gap (contracting − expanding)")
    ax.set_title(f"Direction gap against {setting}")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    return path
