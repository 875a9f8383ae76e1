"""forecast.json, forecast.md and forecast.png in the study's `forecast/` folder (never a file
named metrics.json: that name marks a run for the report, resume and recommend)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from unet_transfer.files import atomic_write_text
from unet_transfer.forecast.candidates import describe
from unet_transfer.forecast.ranking import ordered

KEYS = ("tau", "direction_right", "k_right", "k_compared", "regret", "cost_share")


def records(ctx, estimates, scores, table, study_cost) -> dict:
    """The JSON document: the grid, the study's means (if any), one record per estimator."""
    rows = []
    for estimate, result in zip(estimates, scores, strict=True):
        score = result.record()
        rows.append({"name": estimate.name, "summary": estimate.summary, **{key: score[key] for key in KEYS},
                     **{key: value for key, value in score.items() if key not in KEYS},
                     "seconds": round(estimate.seconds, 2), "image_steps": estimate.image_steps,
                     "forward_images": estimate.forward_images, "rule": estimate.rule,
                     "ranking": ordered(estimate.scores), "scores": estimate.scores,
                     "block_scores": estimate.block_scores, "details": estimate.details, "error": estimate.error})
    study = None
    if table is not None:
        study = {"dice": {label: table.mean(label) for label in table.dice},
                 "spread": {label: table.spread(label) for label in table.dice},
                 "folds": {label: len(values) for label, values in table.dice.items()},
                 "runs": table.runs, "seconds": round(table.seconds, 1), "image_steps": table.image_steps,
                 "warnings": table.warnings}
    return {"experiment": ctx.experiment, "study": ctx.study, "blocks": ctx.layout.record(),
            "configurations": [{"label": c.label, "direction": c.direction, "k": c.k, "blocks": list(c.blocks)}
                               for c in ctx.candidates],
            "study_results": study, "study_cost": study_cost, "estimators": rows}


def fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(ctx, doc: dict, figure: str | None) -> str:
    by_label = {c.label: c for c in ctx.candidates}
    study, cost = doc["study_results"], doc["study_cost"]
    lines = [f"# Forecast: which blocks to fine-tune ({ctx.experiment})", "",
             f"What the study `{ctx.study}` would answer, forecast without running it: the order of its "
             f"{len(ctx.candidates)} configurations (each direction's k = {ctx.layout.k_range[0]}.."
             f"{ctx.layout.k_range[-1]}; k = {ctx.layout.k_range[-1]} in both directions is one, every block), "
             "its winner and whether the contracting path beats the expanding one. " + ctx.layout.legend(), "",
             "## Forecasts", "",
             "| Estimator | Predicted best | Contracting vs expanding | Image-steps | Seconds | How |",
             "|---|---|---|---|---|---|"]
    for row in doc["estimators"]:
        best = describe(by_label[row["ranking"][0]]) if row["ranking"] else "–"
        how = row["error"] and f"failed: {row['error']}" or f"{row['summary']}; ranked by {row['rule']}"
        lines.append(f"| {row['name']} | {best} | {row['direction'] or '–'} | {row['image_steps']} | "
                     f"{fmt(row['seconds'], 1)} | {how} |")
    lines += ["", "Zero-training estimators (gradient, shift) rank a configuration by the summed score of the "
              "blocks it trains: scores are scale-free per block, and adding a block never removes what the "
              "others can fit, so the score never falls with k (as the study's Dice mostly does not), while at "
              "equal k the direction whose blocks carry more signal wins (unet_transfer/forecast/ranking.py). "
              "Baselines: *paper* = more blocks better, shallow-to-deep first at equal k; *everything* = the "
              "more parameters trained, the better.", "",
              "Per-block scores:", "",
              "| Estimator | " + " | ".join(ctx.layout.names) + " |",
              "|---|" + "---|" * ctx.layout.n]
    for row in doc["estimators"]:
        if row["block_scores"]:
            lines.append(f"| {row['name']} | " + " | ".join(fmt(row["block_scores"][n], 3) for n in ctx.layout.names)
                         + " |")
    lines += ["", "## Forecast vs study", ""]
    if study is None:
        lines += [f"No results of the study in multirun/{ctx.study} yet: run `{ctx.study_command()}`, "
                  "then this forecast again to score it.",
                  f"The study's planned compute: {ctx.study_runs} runs, {ctx.study_image_steps} image-steps"
                  + (f", about {cost['seconds']:.0f} s on this machine (estimated from the racing's speed)"
                     if cost.get("seconds") else "") + "."]
    else:
        lines += [f"Against the study's {study['runs']} finished runs ({study['image_steps']} image-steps, "
                  f"{study['seconds']:.0f} s). tau: Kendall's tau-b between the forecast's scores and the study's "
                  "mean Dice over the grid; direction: contracting vs expanding as the study's paths compare; "
                  "k right: at how many k the forecast picks the better direction, of the k where the study's two "
                  "directions differ by more than their fold spread; regret: mean over k of the Dice lost by "
                  "choosing the direction at each k (equal budget); pick regret: the study's best Dice minus that "
                  "of the forecast's first choice; cost share: seconds / the study's seconds "
                  "(unet_transfer/forecast/scoring.py).", "",
                  "| Estimator | tau | Direction right | k right | Regret (equal k) | Pick | Pick regret | Cost share "
                  "| Image-step share |", "|---|---|---|---|---|---|---|---|---|"]
        for row in doc["estimators"]:
            k = f"{row['k_right']}/{row['k_compared']}" if row["k_compared"] is not None else "–"
            lines.append(f"| {row['name']} | {fmt(row['tau'])} | {fmt(row['direction_right'])} | {k} | "
                         f"{fmt(row['regret'], 3)} | {row['pick'] or '–'} | {fmt(row['regret_pick'], 3)} | "
                         f"{fmt(row['cost_share'], 3)} | {fmt(row['steps_share'], 3)} |")
        lines += ["", "A forecast earns its place only where it beats both baselines."]
        if study["warnings"]:
            lines += ["", "Warnings about the study's runs:", "", *(f"- {w}" for w in study["warnings"])]
    if figure:
        lines += ["", f"![forecast]({figure})"]
    return "\n".join(lines) + "\n"


def figure(ctx, doc: dict, path: Path) -> Path | None:
    """One panel per estimator: its score against the study's Dice per configuration (without a
    study: its score against k), both directions in their colours, k written at each point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in doc["estimators"] if row["scores"]]
    if not rows:
        return None
    study = doc["study_results"]
    colours = {"shallow_to_deep": "tab:blue", "deep_to_shallow": "tab:orange"}
    columns = min(3, len(rows))
    fig, axes = plt.subplots(math.ceil(len(rows) / columns), columns, figsize=(4.2 * columns, 3.6 * math.ceil(len(rows) / columns)),
                             squeeze=False)
    for ax, row in zip(axes.flat, rows, strict=False):
        for candidate in ctx.candidates:
            x = row["scores"].get(candidate.label)
            y = study["dice"].get(candidate.label) if study else candidate.k
            if x is None or y is None:
                continue
            ax.scatter(x, y, color=colours[candidate.direction], s=22)
            ax.annotate(str(candidate.k), (x, y), fontsize=7, xytext=(3, 2), textcoords="offset points")
        title = row["name"] + (f"  (tau {row['tau']:.2f})" if row.get("tau") is not None else "")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("forecast score", fontsize=8)
        ax.set_ylabel("study's mean Dice" if study else "k", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=c, label=label)
               for label, c in (("shallow to deep (its last k: every block)", colours["shallow_to_deep"]),
                                ("deep to shallow", colours["deep_to_shallow"]))]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(ctx, estimates, scores, table, study_cost, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    doc = records(ctx, estimates, scores, table, study_cost)
    picture = figure(ctx, doc, folder / "forecast.png")
    atomic_write_text(folder / "forecast.json", json.dumps(doc, indent=1, default=float) + "\n")
    atomic_write_text(folder / "forecast.md", markdown(ctx, doc, picture.name if picture else None))
    written = {"forecast.json": folder / "forecast.json", "forecast.md": folder / "forecast.md"}
    if picture:
        written["forecast.png"] = picture
    return written
