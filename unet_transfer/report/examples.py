"""The paper's Fig. 3 (examples.png): image, ground truth, and the predictions of the
pretrained-only, expanding-tuned and contracting-tuned nets for reproducibly chosen held-out
images, including those where the two strategies differ most."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from unet_transfer.blocks import SWEPT_DIRECTIONS
from unet_transfer.metrics import THRESHOLD
from unet_transfer.report.aggregate import Group, find_row, path_rows, primary_group
from unet_transfer.report.registry import Report, entry

DPI = 150

def choose_examples(
    candidates: list[dict], n_extreme: int = 2, n_random: int = 2, seed: int = 0
) -> list[dict]:
    """Reproducible picks among candidates {'fold', 'id', 'difference', ...}.

    First the n_extreme with the largest |difference| (ties by fold, id), then n_random drawn
    with a fixed seed from the rest in (fold, id) order. Each pick gets 'why'.
    """
    ordered = sorted(candidates, key=lambda c: (c["fold"], c["id"]))
    extreme = sorted(ordered, key=lambda c: -abs(c["difference"]))[:n_extreme]
    chosen = {(c["fold"], c["id"]) for c in extreme}
    rest = [c for c in ordered if (c["fold"], c["id"]) not in chosen]
    picks = (
        np.random.default_rng(seed).choice(len(rest), size=min(n_random, len(rest)), replace=False)
        if rest
        else []
    )
    drawn = [rest[i] for i in sorted(int(i) for i in picks)]
    return [{**c, "why": "largest difference"} for c in extreme] + [
        {**c, "why": f"random (seed {seed})"} for c in drawn
    ]


def _load_predictions(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        ids = [str(i) for i in archive["ids"]]
        probabilities = archive["probabilities"]
        return {i: probabilities[n] for n, i in enumerate(ids)}


def _cache_folder(runs: list[dict]) -> Path | None:
    for run in runs:
        cache = run.get("cache")
        if not cache:
            continue
        for candidate in (Path(cache), run["path"] / cache):
            if (candidate / "index.json").exists():
                return candidate
    return None


def _dice(probability: np.ndarray, mask: np.ndarray) -> float:
    """The registered Dice (unet_transfer.metrics) of one saved probability map."""
    import torch

    from unet_transfer.metrics import per_image_scores

    scores = per_image_scores(torch.from_numpy(probability[None].astype(np.float32)), torch.from_numpy(mask[None]))
    return float(scores["dice"][0])


def _pick_run(row: dict | None, fold: int) -> dict | None:
    """The run of `row` in `fold` that kept predictions (lowest seed first)."""
    if row is None:
        return None
    found = [r for r in row["runs"] if r["fold"] == fold and r["predictions"] is not None]
    return min(found, key=lambda r: str(r["seed"])) if found else None


def example_panels(
    rows: list[dict], dataset: str, n_extreme: int = 2, n_random: int = 2, seed: int = 0
) -> tuple[list[dict], str | None]:
    """The example rows of one dataset, or [] and the reason there are none."""
    from unet_transfer.data.cache import load_set

    group = primary_group(rows, dataset)
    if group is None:
        return [], f"{dataset}: no shallow/deep sweep to draw examples from"
    contracting, expanding = path_rows(rows, group).values()
    if contracting is None or expanding is None:
        return [], f"{dataset}: no runs of both the contracting and the expanding path"
    pretrained = find_row(rows, Group(dataset, True, 0, group.variant), "pretrained_only", 0) or find_row(
        rows, Group(dataset, True, 0), "pretrained_only", 0)
    folds = [
        f
        for f in sorted(set(contracting["per_fold"]) & set(expanding["per_fold"]))
        if _pick_run(contracting, f) and _pick_run(expanding, f)
    ]
    if not folds:
        return [], (
            f"{dataset}: no predictions.npz of the contracting and expanding runs of one fold "
            "(run with save_predictions=true)"
        )
    runs = [r for row in (contracting, expanding, pretrained) if row for r in row["runs"]]
    cache = _cache_folder(runs)
    if cache is None:
        return [], f"{dataset}: the dataset cache named in metrics.json ('cache') is missing"
    try:
        data = load_set(cache)
    except (OSError, ValueError, KeyError) as error:
        return [], f"{dataset}: cannot read the dataset cache {cache} ({error})"
    position = {image_id: n for n, image_id in enumerate(data.ids)}
    loaded: dict[
        tuple[str, int], dict[str, np.ndarray]
    ] = {}  # (column, fold) -> id -> probabilities
    scores: dict[
        tuple[str, int], dict[str, float]
    ] = {}  # (column, fold) -> id -> Dice (per_image.csv)
    sources = (("contracting", contracting), ("expanding", expanding), ("pretrained", pretrained))
    for fold in folds:
        for name, row in sources:
            run = _pick_run(row, fold)
            if run is None:
                continue
            try:
                loaded[(name, fold)] = _load_predictions(run["predictions"])
            except (OSError, ValueError, KeyError) as error:
                if name == "pretrained":  # that column then says "no prediction saved"
                    continue
                return [], f"{dataset}: cannot read {run['predictions']} ({error})"
            scores[(name, fold)] = {i["id"]: i["dice"] for i in run.get("per_image") or ()}
            shapes = {p.shape for p in loaded[(name, fold)].values()}
            if shapes - {data.images.shape[1:]}:
                return [], (
                    f"{dataset}: {run['predictions']} holds maps of shape {sorted(shapes)} but "
                    f"the cached images are {data.images.shape[1:]}; cache and runs do not match"
                )

    def dice_of(name: str, fold: int, image_id: str) -> float | None:
        probabilities = loaded.get((name, fold), {}).get(image_id)
        if probabilities is None:
            return None
        known = scores.get((name, fold), {}).get(image_id)
        return known if known is not None else _dice(probabilities, data.masks[position[image_id]])

    candidates = []
    for fold in folds:
        common = (
            set(loaded[("contracting", fold)]) & set(loaded[("expanding", fold)]) & set(position)
        )
        for image_id in sorted(common):
            dice = {name: dice_of(name, fold, image_id) for name, _ in sources}
            candidates.append(
                {
                    "fold": fold,
                    "id": image_id,
                    "dice": dice,
                    "difference": dice["contracting"] - dice["expanding"],
                }
            )
    if not candidates:
        return [], f"{dataset}: no held-out image has predictions of both paths and a cache entry"
    chosen = choose_examples(candidates, n_extreme, n_random, seed)
    for item in chosen:
        n = position[item["id"]]
        item["dataset"] = dataset
        item["image"] = np.asarray(data.images[n])
        item["mask"] = np.asarray(data.masks[n])
        item["predictions"] = {
            name: loaded[(name, item["fold"])][item["id"]].astype(np.float32)
            for name in ("pretrained", "expanding", "contracting")
            if item["id"] in loaded.get((name, item["fold"]), {})
        }
    return chosen, None


COLUMNS = (
    ("image", "Image"),
    ("mask", "Ground truth"),
    ("pretrained", "Pretrained only"),
    ("expanding", "Expanding path tuned"),
    ("contracting", "Contracting path tuned"),
)


def plot_examples(examples: list[dict], path: Path) -> Path:
    """Image, ground truth and the three predictions (thresholded at 0.5) per example row."""
    n = len(examples)
    fig = Figure(figsize=(2.3 * len(COLUMNS) + 0.6, 2.45 * n + 0.5), dpi=DPI, layout="constrained")
    axes = fig.subplots(n, len(COLUMNS), squeeze=False)
    for r, item in enumerate(examples):
        for c, (name, header) in enumerate(COLUMNS):
            ax = axes[r, c]
            title = header if r == 0 else ""  # column names once, each prediction's Dice per row
            ax.set_xticks([])
            ax.set_yticks([])
            if name == "image":
                ax.imshow(item["image"], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
                ax.set_ylabel(
                    f"{item['dataset']}\n{item['id']}\nfold {item['fold']}, {item['why']}",
                    fontsize=7.5,
                )
            elif name == "mask":
                ax.imshow(item["mask"], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                probability = item["predictions"].get(name)
                if probability is None:
                    ax.text(
                        0.5,
                        0.5,
                        "no prediction\nsaved",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="#666666",
                        transform=ax.transAxes,
                    )
                    ax.set_facecolor("#f2f2f2")
                else:
                    ax.imshow(
                        probability > THRESHOLD, cmap="gray", vmin=0, vmax=1, interpolation="nearest"
                    )
                    if item["mask"].any():
                        ax.contour(item["mask"], levels=[0.5], colors=["#ff3b30"], linewidths=0.8)
                    title = f"{title}\nDice {item['dice'][name]:.3f}".strip()
            ax.set_title(title, fontsize=8.5)
    fig.suptitle(
        "Held-out examples (red outline: ground truth; predictions thresholded at 0.5)", fontsize=10
    )
    fig.savefig(path, dpi=DPI)
    return path


def write_examples(
    rows: list[dict], path: Path, n_extreme: int = 2, n_random: int = 2, seed: int = 0
) -> tuple[Path | None, list[str]]:
    """examples.png for every dataset that can show them, and notes on those that cannot.

    Never raises for missing or bad predictions/cache: they become notes.
    """
    examples, notes = [], []
    for dataset in sorted({r["dataset"] for r in rows if r["role"] in SWEPT_DIRECTIONS}):
        try:
            found, note = example_panels(rows, dataset, n_extreme, n_random, seed)
        except Exception as error:  # a figure must never stop the report
            found, note = [], f"{dataset}: examples failed ({type(error).__name__}: {error})"
        examples += found
        if note:
            notes.append(note)
    if not examples:
        return None, notes
    return plot_examples(examples, path), notes


@entry("examples.png", order=60, describes={"examples.png": "Fig. 3, example segmentations"})
def write_examples_entry(report: Report, out: Path) -> dict[str, Path]:
    written, notes = write_examples(report.rows, out / "examples.png")
    report.notes.extend(f"examples.png: {note}" + ("" if written else "; skipped") for note in notes)
    return {written.name: written} if written else {}
