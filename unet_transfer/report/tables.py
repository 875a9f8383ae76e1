"""The report's tables: summary.csv (one line per configuration) and the tables of summary.md
(contracting vs expanding, by k, the other configurations), formatted as the paper prints them.
summary.md itself is written last by `write_report`, when every figure is known."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from unet_transfer.blocks import DIRECTION_SHORT, PATHS, SWEPT_DIRECTIONS, span
from unet_transfer.files import atomic_path
from unet_transfer.metrics import METRICS
from unet_transfer.report.aggregate import (
    group_layout,
    group_of,
    group_words,
    networks_in,
    path_rows,
    primary_group,
    reference_label,
    references_for,
    study_groups,
)
from unet_transfer.report.collect import variant_words
from unet_transfer.report.registry import Report, entry


def fmt(mean: float, std: float, digits: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f} (1 fold)"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def cell(row: dict | None, metric: str, flag: bool = True) -> str:
    """'0.80 ± 0.03' (± over folds); with several seeds also '[± 0.01 over 3 seeds]'."""
    if row is None:
        return "–"
    digits = METRICS[metric].digits
    text = fmt(row["mean"][metric], row["std"][metric], digits)
    seed_std = row["seed_std"][metric]
    if len(row["seeds"]) > 1 and not math.isnan(seed_std):
        text += f" [± {seed_std:.{digits}f} over {len(row['seeds'])} seeds]"
    return f"{text} {row['flag']}" if flag and row["flag"] else text


def markdown_table(header: list[str], lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return out


def folds_cell(row: dict) -> str:
    """Folds found, e.g. '5/5', '⚠ 4/5' or '5/5 × 3 seeds'."""
    expected = row["expected_folds"]
    text = str(row["n_folds"]) if expected is None else f"{row['n_folds']}/{expected}"
    if len(row["seeds"]) > 1:
        text += f" × {len(row['seeds'])} seeds"
    return f"⚠ {text}" if row["flag"] else text


def summary_markdown(report: Report, warnings: list[str], n_unfinished: int, figures: list[str] = ()) -> str:
    rows, n_runs = report.rows, len(report.runs)
    lines = ["# Fine-tuning study: results", ""]
    lines.append(
        f"Source: `{report.root}`: {n_runs} finished run{'s' if n_runs != 1 else ''}"
        + (f", {n_unfinished} unfinished run folder{'s' if n_unfinished != 1 else ''} (no metrics.json) ignored."
           if n_unfinished else ".")
    )
    layouts = {r["layout"] for r in rows}
    lines.append(
        "Values are mean ± sample standard deviation (ddof=1) over the cross-validation "
        "folds; pixel error in % of pixels." + (f" {next(iter(layouts)).legend()}" if len(layouts) == 1 else "")
    )
    if any(len(r["seeds"]) > 1 for r in rows):
        lines.append(
            "Configurations trained with several seeds: ± is the spread over folds (the fold std "
            "within each seed, pooled); [± ... over N seeds] is the spread over retraining (the std "
            "of the seed means). The paper's ± is over folds only."
        )
    lines.append("")
    if warnings:
        lines += ["## ⚠ Warnings", ""] + [f"- ⚠ {w}" for w in warnings] + [""]
    for dataset in sorted({r["dataset"] for r in rows}):
        lines += [f"## {dataset}", ""]
        if len(layouts) > 1 and len({r["layout"] for r in rows if r["dataset"] == dataset}) == 1:
            lines += [next(r["layout"] for r in rows if r["dataset"] == dataset).legend(), ""]
        primary = primary_group(rows, dataset)
        groups = [g for g in study_groups(rows, dataset) if g != primary]
        main_sweeps = {primary_group(rows, dataset, network) for network in networks_in(rows, dataset)} | {primary}
        shown: set = set()
        for group in ([primary] if primary else []) + groups:
            if len({r["layout"] for r in rows if r["dataset"] == dataset}) > 1:  # networks of their own blocks
                lines += [f"**{group_words(group)}**: {group_layout(rows, group).legend()}", ""]
            lines += paths_table(rows, group, shown, with_references=group in main_sweeps)  # each network's own
            lines += k_table(rows, group, shown, all_k=group in main_sweeps)
        rest = [r for r in rows if r["dataset"] == dataset and r["key"] not in shown]
        if rest:
            lines += [f"### {'Other configurations' if primary else 'Configurations'}", ""]
            lines += markdown_table(
                ["Configuration", "Trained blocks", "Pretrained", "Epochs", *(m.label for m in METRICS.values()), "Folds"],
                [[r["label"], span(r["blocks"]) if r["epochs"] else "none", "yes" if r["has_pretrained"] else "no",
                  str(r["epochs"]), *(cell(r, m, flag=m == "dice") for m in METRICS), folds_cell(r)] for r in rest],
            )
            lines.append("")
    lines += [text for section in report.sections for text in (section, "")]
    figures = [f for f in figures if f"]({Path(f).name})" not in "".join(report.sections)]  # not twice
    if figures:
        lines += ["## Figures", ""] + [f"![{Path(f).stem}]({Path(f).name})" for f in figures] + [""]
    if report.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    return "\n".join(lines)


def paths_table(rows, group, shown, with_references=True) -> list[str]:
    found = path_rows(rows, group)
    layout = group_layout(rows, group)
    table = []
    for path in PATHS:
        row = found[path]
        if row is not None:
            shown.add(row["key"])
            table.append([f"{path.capitalize()} path", span(getattr(layout, path)),
                          *(cell(row, m, flag=m == "dice") for m in METRICS), folds_cell(row)])
    if not table and not with_references:
        return []
    for ref in references_for(rows, group) if with_references else []:
        label = reference_label(ref, group) + (f" ({ref['epochs']} epochs)" if ref["epochs"] not in (0, group.epochs)
                                               else "")
        shown.add(ref["key"])
        table.append([label, span(ref["blocks"]) if ref["epochs"] else "none",
                      *(cell(ref, m, flag=m == "dice") for m in METRICS), folds_cell(ref)])
    if not table:
        return []
    out = [f"### Contracting vs expanding ({group_words(group)})", ""]
    out += markdown_table(["Trained", "Blocks", *(m.label for m in METRICS.values()), "Folds"], table)
    missing = [f"{path} ({'shallow to deep' if step[0] == 'shallow_to_deep' else 'deep to shallow'}, k={step[1]})"
               for path, step in ((p, layout.path_k(p)) for p in PATHS)
               if found[path] is None and step is not None]
    if missing:
        out += ["", f"No runs of {' or '.join(missing)} in this sweep."]
    return out + [""]


def has_k_sweep(rows, group) -> bool:
    """Whether a sweep ran a step of k other than the two paths: a study of freeze=contracting,
    expanding alone has no k sweep, and a table by k (or Fig. 4) of it would be dashes and two points."""
    return any(r["role"] in SWEPT_DIRECTIONS and r["path_role"] is None and group_of(r) == group for r in rows)


def k_table(rows, group, shown, all_k=True) -> list[str]:
    from unet_transfer.report.aggregate import find_row

    if not has_k_sweep(rows, group):
        return [f"No k sweep in this study ({group_words(group)}): only the contracting and expanding paths ran, "
                "so there is no table by k and no score-vs-blocks figure (Fig. 4) for it.", ""]
    layout = group_layout(rows, group)
    header = ["k"]
    for direction in SWEPT_DIRECTIONS:
        short = DIRECTION_SHORT[direction]
        header += [f"{short} blocks", *(f"{short} {m.label}" for m in METRICS.values())]
    table = []
    for k in layout.k_range:
        found = [find_row(rows, group, d, k) for d in SWEPT_DIRECTIONS]
        if not all_k and not any(found):
            continue
        line = [str(k)]
        for direction, row in zip(SWEPT_DIRECTIONS, found, strict=True):
            if row is not None:
                shown.add(row["key"])
            line += [span(layout.swept(direction, k)), *(cell(row, m) for m in METRICS)]
        table.append(line)
    out = [
        f"### By number of fine-tuned {layout.k_words} k ({group_words(group)})",
        "",
        "S→D = shallow to deep (blocks 1..k train), D→S = deep to shallow (the k deepest train)." if layout.depth == "longest"
        else f"S→D = shallow to deep (the k shallowest {layout.k_words} train), D→S = deep to shallow (the k deepest). "
             + layout.legend().split("With depth=shortest, ")[-1],
        "",
    ]
    return out + markdown_table(header, table) + [""]


CSV_FIELDS = (
    "dataset", "configuration", "role", "direction", "k", "trainable_blocks", "pretrained", "epochs",
    "folds_found", "folds_expected", "missing_folds", "seeds",
    *(f"{m}_{s}" for m in METRICS for s in ("mean", "std")),
    *(f"{m}_seed_std" for m in METRICS),
    "warning", "settings", "trainings", "method", "trainable_params", "trainable_share", "train_time_s",
)


def csv_rows(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        missing = "; ".join(
            f"seed {s}: {' '.join(map(str, m))}" if len(row["seeds"]) > 1 else " ".join(map(str, m))
            for s, m in row["missing"].items()
        )
        item = {
            "dataset": row["dataset"],
            "configuration": row["label"],
            "role": row["role"],
            "direction": row["direction"],
            "k": row["k"],
            "trainable_blocks": " ".join(map(str, row["blocks"])) if row["epochs"] else "",
            "pretrained": "; ".join(row["pretrained_paths"]) if row["has_pretrained"] else "",
            "epochs": row["epochs"],
            "folds_found": row["n_folds"],
            "folds_expected": row["expected_folds"] or "",
            "missing_folds": missing,
            "seeds": " ".join(map(str, row["seeds"])),
            "warning": row["flag"].replace("⚠ ", ""),
            "settings": variant_words(row["key"].variant),
            "method": row["key"].method,
            "trainings": row["n_runs"],
        }
        for name in ("trainable_params", "trainable_share", "train_time_s"):
            value = row["costs"].get(name)
            item[name] = "" if value is None else repr(float(value))
        for metric in METRICS:
            for stat in ("mean", "std", "seed_std"):
                value = row[stat][metric]
                item[f"{metric}_{stat}"] = "" if value is None or math.isnan(value) else repr(float(value))
        out.append(item)
    return out


@entry("summary.csv", order=10, describes={"summary.csv": "mean ± std per configuration"})
def write_summary_csv(report: Report, out: Path) -> dict[str, Path]:
    path = out / "summary.csv"
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_rows(report.rows))
    return {path.name: path}
