"""Mean ± std over folds per configuration, and how configurations group into the paper's tables.

`summarise` turns runs (dicts from `collect`) into one row per configuration; a *group* is what
one k sweep shares (dataset, pretrained or not, epochs, variant), the unit of one table and one
line pair of Fig. 4. Nothing here formats or writes.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import NamedTuple

from unet_transfer.blocks import DIRECTION_TITLES, PATHS, SWEPT_DIRECTIONS, Blocks, span
from unet_transfer.metrics import METRICS
from unet_transfer.report.collect import (
    ROLES,
    UNTRAINED_ROLES,
    ConfigKey,
    describe_key,
    layout_of,
    variant_words,
)

ROLE_ORDER = ("shallow_to_deep", "deep_to_shallow", "blocks", "gradual", "all_blocks", "scratch", "pretrained_only",
              "untrained")
REFERENCE_ROLES = ("all_blocks", "scratch", *UNTRAINED_ROLES)
COSTS = ("trainable_params", "trainable_share", "train_time_s")  # what a configuration costs (mean over runs)
# Settings that should not differ between the folds of one configuration; runs of older
# versions record no `settings`, so their configurations cannot tell these apart.
CONSISTENT = ("image_size", "width", "batch_size", "augment", "split_seed", "precision", "pretrained", "folds", "version")


class Group(NamedTuple):
    """What the runs of one k sweep share."""

    dataset: str
    has_pretrained: bool
    epochs: int
    variant: tuple = ()
    method: str = "freeze"


def group_of(row_or_key) -> Group:
    key = row_or_key["key"] if isinstance(row_or_key, dict) else row_or_key
    return Group(key.dataset, key.has_pretrained, key.epochs, key.variant, key.method)


def _sorted(values) -> list:
    values = list(values)
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def sample_std(values: list[float]) -> float:
    """Sample standard deviation (ddof=1); NaN for fewer than two values."""
    return statistics.stdev(values) if len(values) >= 2 else math.nan


def row_label(row: dict) -> str:
    role = row["role"]
    if role in SWEPT_DIRECTIONS:
        base = f"{DIRECTION_TITLES[role]}, k={row['k']}"
        named = row.get("path_role")
        label = f"{named.capitalize()} path ({base})" if named else base
    elif role == "blocks":
        label = f"Blocks {span(row['blocks'])}"
    elif role == "gradual":
        phases = row["key"].blocks
        label = (f"Gradual unfreezing: {' → '.join(span(p[1]) for p in phases)} "
                 f"(epochs {', '.join(str(p[0]) for p in phases)})")
    else:
        label = ROLES[role]
    words = variant_words(row["key"].variant, row["key"].method)
    return f"{label} · {words}" if words else label


def key_order(key: ConfigKey):
    """Per dataset: the sweeps (pretrained first, fewest epochs first), then the reference rows."""
    variant = tuple((name, str(value)) for name, value in key.variant)
    return (key.dataset, key.role in REFERENCE_ROLES, not key.has_pretrained, key.epochs, key.method != "freeze",
            key.method, variant, ROLE_ORDER.index(key.role), key.k, str(key.blocks or ()))


def summarise(runs: list[dict], folds: int | None = None) -> tuple[list[dict], list[str]]:
    """One row per configuration (see collect.ConfigKey) and the warnings about them.

    A row's `mean` and `std` are the mean and the sample std (ddof=1) over folds. With several
    seeds, folds are averaged within each seed first; `mean` is then the mean over seeds, `std`
    the within-seed fold std pooled over seeds (so ± keeps meaning "spread over folds") and
    `seed_std` the std of the seeds' means (the spread over retraining). `per_fold` holds each
    fold's scores averaged over the seeds that ran it (what paired comparisons use).
    """
    by_key: dict[ConfigKey, list[dict]] = defaultdict(list)
    for run in runs:
        by_key[run["key"]].append(run)
    unrecorded = [r for r in runs if not r.get("blocks")]  # runs of older versions: the U-Net, its size inferred
    sizes = {dataset: layout_of(unrecorded, dataset).n for dataset in {r["dataset"] for r in runs}}
    rows, warnings = [], []
    for key in sorted(by_key, key=key_order):
        group = sorted(by_key[key], key=lambda r: (str(r["seed"]), r["fold"]))
        declared = {r.get("folds") for r in group if r.get("folds")}
        expected = folds or (max(declared) if declared else None)
        by_seed: dict = defaultdict(dict)
        for run in group:
            by_seed[run["seed"]][run["fold"]] = run
        seeds = _sorted(by_seed)
        seed_means = {m: [] for m in METRICS}
        seed_vars = {m: [] for m in METRICS}
        per_fold_values: dict[int, dict[str, list[float]]] = defaultdict(lambda: {m: [] for m in METRICS})
        missing, extra, counts = {}, {}, {}
        for seed in seeds:
            fold_runs = by_seed[seed]
            counts[seed] = len(fold_runs)
            for metric in METRICS:
                values = [float(fold_runs[f][metric]) for f in sorted(fold_runs)]
                seed_means[metric].append(statistics.fmean(values))
                if len(values) >= 2:
                    seed_vars[metric].append(statistics.variance(values))
            for fold, run in fold_runs.items():
                for metric in METRICS:
                    per_fold_values[fold][metric].append(float(run[metric]))
            if expected:
                missing[seed] = sorted(set(range(expected)) - set(fold_runs))
                extra[seed] = sorted(f for f in fold_runs if not 0 <= f < expected)
        trainable = group[0].get("trainable_blocks") or ()
        depth = next((r["depth"] for r in group if r.get("depth")), None)
        recorded = [r for r in group if r.get("blocks")]  # the network's own blocks, names and tiers
        layout = layout_of(recorded, key.dataset, depth) if recorded else Blocks.counted(sizes[key.dataset], depth)
        row = {
            "key": key,
            "dataset": key.dataset,
            "role": key.role,
            "k": key.k,
            "epochs": key.epochs,
            "direction": group[0]["direction"],
            "has_pretrained": key.has_pretrained,
            "blocks": tuple(trainable if key.role == "gradual" else key.blocks or trainable),
            "path_role": layout.path_of(key.role, key.k) if key.role in SWEPT_DIRECTIONS else None,
            "layout": layout,
            "pretrained_paths": _sorted({r.get("pretrained") for r in group if r.get("pretrained")}),
            "seeds": seeds,
            "n_runs": len(group),
            "expected_folds": expected,
            "folds_found": sorted(per_fold_values),
            "n_folds": min(counts.values()),
            "missing": {s: m for s, m in missing.items() if m},
            "extra": {s: e for s, e in extra.items() if e},
            "mean": {m: statistics.fmean(seed_means[m]) for m in METRICS},
            "std": {
                m: sample_std([float(r[m]) for r in group])
                if len(seeds) == 1
                else (math.sqrt(statistics.fmean(seed_vars[m])) if seed_vars[m] else math.nan)
                for m in METRICS
            },
            "seed_std": {m: sample_std(seed_means[m]) if len(seeds) > 1 else math.nan for m in METRICS},
            "per_fold": {f: {m: statistics.fmean(v[m]) for m in METRICS} for f, v in sorted(per_fold_values.items())},
            "runs": group,
            "costs": {name: statistics.fmean(values) for name in COSTS
                      if (values := [float(r[name]) for r in group if r.get(name) is not None])},
        }
        row["label"] = row_label(row)
        row["complete"] = not row["missing"] and not row["extra"] and expected is not None
        row["flag"] = fold_flag(row)
        rows.append(row)
        warnings.extend(_row_warnings(row, group))
    return rows, warnings


def fold_flag(row: dict) -> str:
    """'' for a complete row, else a marker such as '⚠ 4/5 folds'."""
    expected = row["expected_folds"]
    if expected is None:
        return "⚠ folds unknown"
    if row["complete"]:
        return ""
    found = min(
        len(set(range(expected)) & {r["fold"] for r in row["runs"] if r["seed"] == s})
        for s in row["seeds"]
    )
    return f"⚠ {found}/{expected} folds"


def _row_warnings(row: dict, group: list[dict]) -> list[str]:
    name = describe_key(row["key"])
    out = []
    if row["expected_folds"] is None:
        out.append(f"{name}: the runs do not say how many folds were expected (pass --folds)")
    multi = len(row["seeds"]) > 1
    for seed, missing in row["missing"].items():
        found = row["expected_folds"] - len(missing)
        where = f", seed {seed}" if multi else ""
        out.append(
            f"{name}{where}: {found}/{row['expected_folds']} folds "
            f"(missing fold{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))}); "
            f"its mean is over {found} fold{'s' if found != 1 else ''} only"
        )
    for seed, extra in row["extra"].items():
        where = f", seed {seed}" if multi else ""
        out.append(
            f"{name}{where}: fold(s) {extra} outside 0..{row['expected_folds'] - 1} "
            "(runs of a different --folds?)"
        )
    for setting in CONSISTENT:
        values = {str(r.get(setting)) for r in group if setting in r}
        if len(values) > 1:
            out.append(f"{name}: runs differ in {setting} ({', '.join(sorted(values))}); they are averaged together")
    return out


def study_warnings(runs: list[dict]) -> list[str]:
    """What the runs say about their data (metrics.json `warnings`), once per dataset, and runs of
    one fold that were scored on different held-out images (their numbers do not compare)."""
    out, seen = [], set()
    for run in runs:
        for warning in run.get("warnings") or ():
            if (run["dataset"], warning) not in seen:
                seen.add((run["dataset"], warning))
                out.append(f"data ({run['dataset']}): {warning}")
    held_out: dict[tuple, set] = defaultdict(set)
    for run in runs:
        if run.get("folds_digest"):
            held_out[(run["dataset"], run.get("folds"), run.get("split_seed"), run["fold"])].add(run["folds_digest"])
    for (dataset, folds, split_seed, fold), digests in sorted(held_out.items(), key=str):
        if len(digests) > 1:
            out.append(f"{dataset}: runs of fold {fold} (folds={folds}, split_seed={split_seed}) held out "
                       f"{len(digests)} different sets of images, so their scores do not compare; rerun the "
                       "older runs (a damaged or replaced splits.json?)")
    return out


# ---------------------------------------------------------------- groups


ANY = object()  # every network


def group_network(group: Group):
    """The network a sweep trained, when the study had several: its builder (`model._target_`)
    with the model settings that tell it from the study's other networks of that builder (two
    FlexibleUNet backbones are two networks); None when the study had one network."""
    if "model._target_" not in dict(group.variant):
        return None
    return tuple((key, value) for key, value in group.variant if key.startswith("model."))


def networks_in(rows: list[dict], dataset: str) -> list:
    """The networks of a dataset's k sweeps (None: the only one), in the rows' order."""
    return list(dict.fromkeys(group_network(group_of(r)) for r in rows
                              if r["dataset"] == dataset and r["role"] in SWEPT_DIRECTIONS))


def study_groups(rows: list[dict], dataset: str, network=ANY) -> list[Group]:
    """The dataset's k sweeps (of one network, when given), pretrained ones first."""
    groups = {group_of(r) for r in rows if r["dataset"] == dataset and r["role"] in SWEPT_DIRECTIONS}
    groups = {g for g in groups if network is ANY or group_network(g) == network}
    return sorted(groups, key=lambda g: (not g.has_pretrained, g.method != "freeze", g.method, g.epochs,
                                         tuple((k, str(v)) for k, v in g.variant)))


def primary_group(rows: list[dict], dataset: str, network=ANY) -> Group | None:
    """The sweep the figures show: pretrained first, then the most runs, then fewest epochs."""
    groups = study_groups(rows, dataset, network)
    if not groups:
        return None

    def size(group):
        return sum(r["n_runs"] for r in rows if r["role"] in SWEPT_DIRECTIONS and group_of(r) == group)

    return min(groups, key=lambda g: (not g.has_pretrained, g.method != "freeze", -size(g), g.epochs, len(g.variant)))


def references_for(rows: list[dict], group: Group) -> list[dict]:
    """Reference rows for a sweep (of its network): the same epochs and variant preferred, else
    every one available."""
    out = []
    for role in REFERENCE_ROLES:
        found = [r for r in rows if r["dataset"] == group.dataset and r["role"] == role
                 and group_network(group_of(r)) == group_network(group)]
        variant = [r for r in found if (r["key"].variant, r["key"].method) == (group.variant, group.method)] or \
            [r for r in found if r["key"].method == "freeze"] or found
        same = [r for r in variant if r["epochs"] == group.epochs or role in UNTRAINED_ROLES]
        out.extend(same or variant)
    return out


def reference_label(ref: dict, group: Group) -> str:
    """A reference row's label beside a sweep: its role alone where it shares the sweep's variant
    and method (the sweep's heading or panel title says those words already)."""
    same_sweep = (ref["key"].variant, ref["key"].method) == (group.variant, group.method)
    return ROLES[ref["role"]] if same_sweep else ref["label"]


def find_row(rows: list[dict], group: Group, role: str, k: int) -> dict | None:
    for row in rows:
        if row["role"] == role and row["k"] == k and group_of(row) == group:
            return row
    return None


def group_layout(rows: list[dict], group: Group):
    """The blocks (and depth order) of a sweep's runs."""
    return next((r["layout"] for r in rows if group_of(r) == group),
                next(r["layout"] for r in rows if r["dataset"] == group.dataset))


def path_rows(rows: list[dict], group: Group) -> dict[str, dict | None]:
    """{'contracting': row, 'expanding': row} of a sweep (None where its depth order has no such step)."""
    layout = group_layout(rows, group)
    steps = {path: layout.path_k(path) for path in PATHS}
    return {path: find_row(rows, group, *step) if step else None for path, step in steps.items()}


def group_words(group: Group) -> str:
    """'pretrained, 20 epochs' (+ the variant)."""
    words = f"{'pretrained' if group.has_pretrained else 'from scratch'}, {group.epochs} epochs"
    extra = variant_words(group.variant, group.method)
    return f"{words}, {extra}" if extra else words
