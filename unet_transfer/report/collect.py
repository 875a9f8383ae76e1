"""Find the finished runs below a folder and load them as plain dicts, keyed by configuration.

Reads files only, writes none. A run is a folder holding `metrics.json` (written last and
atomically, so it marks a completed run); `per_image.csv` and `predictions.npz` beside it are
loaded or located when present. Folders that look like runs (a Hydra `.hydra` folder, a
`per_image.csv` or a `predictions.npz`) but lack `metrics.json` are counted as unfinished.

A configuration is what the paper's tables call one (dataset, role, k, blocks, pretrained or
not, epochs) plus its `variant`: every other recorded setting (metrics.json `settings`) whose
value differs among the dataset's runs. So a sweep over a setting the report has never heard
of (`optimizer.lr=1e-4,1e-3`, a new config group) gives separate rows, labelled by it. Runs on
other data (`settings.data`, the content digest) are other rows too, labelled
`data=<name>-<digest8>` unless another setting already tells them apart.

Every run dict carries the keys of its metrics.json plus:

- `path` (Path of the run folder), `relpath` (str, relative to the searched folder), `mtime`
- `direction`: canonical ("contracting"/"expanding" become the two directions)
- `has_pretrained` (bool), `role` (see ROLES), `key` (a ConfigKey)
- `per_image`: list of {"id", <metric>: value} or None
- `predictions`: Path of predictions.npz or None
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from unet_transfer.blocks import SWEPT_DIRECTIONS, Blocks, canonical_direction, span
from unet_transfer.errors import ConfigError
from unet_transfer.metrics import METRICS

REQUIRED = ("dataset", "direction", "k", "fold", "epochs", *METRICS)

# What a configuration is, in the words of the paper.
ROLES = {
    "shallow_to_deep": "shallow to deep",
    "deep_to_shallow": "deep to shallow",
    "blocks": "chosen blocks",
    "gradual": "gradual unfreezing",
    "all_blocks": "All blocks fine-tuned",
    "scratch": "Trained from scratch",
    "pretrained_only": "Pretrained only (no fine-tuning)",
    "untrained": "Untrained (random weights, no training)",
}
UNTRAINED_ROLES = ("pretrained_only", "untrained")
# Settings the roles and columns already say: the dataset, whether it started pretrained, epochs.
AXIS_SETTINGS = ("dataset.name", "trainer.max_epochs", "finetune._target_")  # the method is its own axis
_SKIP_DIRS = {".hydra", "lightning_logs", "wandb", "__pycache__", "checkpoints"}


class ConfigKey(NamedTuple):
    """The runs of one configuration differ only in fold and seed."""

    dataset: str
    role: str
    k: int
    blocks: tuple | None
    has_pretrained: bool
    epochs: int
    variant: tuple = ()  # ((setting, value), ...) of the settings that differ among the method's runs
    method: str = "freeze"  # the fine-tuning method (finetune/)


@dataclass
class Collection:
    """What was found below a folder."""

    root: Path
    runs: list[dict] = field(default_factory=list)
    unfinished: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # unreadable files, described for the user


def role_of(direction: str, has_pretrained: bool, epochs: int, phases: list | None = None) -> str:
    if epochs == 0:
        return "pretrained_only" if has_pretrained else "untrained"
    if phases and len(phases) > 1:
        return "gradual"
    if direction == "none":
        return "all_blocks" if has_pretrained else "scratch"
    return direction if direction in SWEPT_DIRECTIONS else "blocks"


def config_key(run: dict, variant: tuple = ()) -> ConfigKey:
    """The run's configuration. Without training (epochs 0) the freeze setting changes nothing,
    so all such runs of one dataset are one configuration; an explicit block list is part of
    its configuration."""
    role = run["role"]
    if role in UNTRAINED_ROLES:
        return ConfigKey(run["dataset"], role, 0, None, run["has_pretrained"], 0, variant)
    if role == "gradual":  # the schedule is the configuration: which blocks from which epoch, lr, schedule
        blocks = tuple((p["epoch"], tuple(p["trainable"]), p.get("lr"), p.get("schedule", "constant"))
                       for p in run["phases"])
    else:
        blocks = tuple(run.get("trainable_blocks") or ()) if role == "blocks" else None
    return ConfigKey(run["dataset"], role, int(run["k"]), blocks, run["has_pretrained"], int(run["epochs"]), variant,
                     run.get("method") or "freeze")


def _hashable(value):
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def network_of(run: dict):
    """The network a run trained (its builder, `model._target_`); None for runs that record no settings."""
    return (run.get("settings") or {}).get("model._target_")


def _differs(group: list[dict], key: str) -> bool:
    return len({_hashable(run["settings"].get(key)) for run in group
                if key != "pretrained" or run["has_pretrained"]}) > 1


def variant_settings(runs: list[dict]) -> dict[tuple, set]:
    """Per dataset, method and network, the recorded settings whose values differ among its runs
    (beyond the axes the roles say). `pretrained` counts only when pretrained runs started from
    different checkpoints. (A method's own settings, e.g. LoRA's rank, never separate it from the
    others: the method does.) In a study of several networks, the network (`model._target_`)
    separates runs, and a network's own settings (`model.*`) and its pretrained checkpoint count
    only where they differ among that network's runs: FlexibleUNet's decoder_channels say
    nothing a U-Net row needs, and each network starts from its own checkpoint."""
    by_dataset: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        if run.get("settings") is not None:  # runs of older versions record none
            by_dataset[(run["dataset"], run.get("method") or "freeze")].append(run)
    varying: dict[tuple, set] = {}
    for (dataset, method), group in by_dataset.items():
        keys = {key for run in group for key in run["settings"]} - set(AXIS_SETTINGS)
        shared = {key for key in keys if _differs(group, key)}
        networks = {network_of(run) for run in group}
        own = {key for key in shared if len(networks) > 1 and (key.startswith("model.") or key == "pretrained")
               and key != "model._target_"}
        for network in networks:
            mine = [run for run in group if network_of(run) == network]
            found = (shared - own) | {key for key in own if _differs(mine, key)}
            pretrained = [run for run in mine if run["has_pretrained"]]
            if "pretrained" in found and not tells_apart(pretrained, "pretrained",
                                                         {key for key in found if key.startswith("model.")}):
                found.discard("pretrained")  # two FlexibleUNet backbones: each its own checkpoint
            if "data" in found and not tells_apart(mine, "data", found - {"data"}):
                found.discard("data")
            varying[(dataset, method, network)] = found
    return varying


def tells_apart(runs: list[dict], key: str, alike: set) -> bool:
    """Whether runs alike in the settings `alike` differ in `key`: only then does `key` name a
    row. The data (`data`: the content digest) needs no words where another setting says it
    (dataset.image_size, a simulator's n_images); a checkpoint needs none where each network (by
    its own settings, e.g. the backbone) started from one of its own."""
    seen: dict[tuple, set] = defaultdict(set)
    for run in runs:
        seen[tuple(_hashable(run["settings"].get(name)) for name in sorted(alike))].add(
            _hashable(run["settings"].get(key)))
    return any(len(values) > 1 for values in seen.values())


def assign_keys(runs: list[dict]) -> None:
    """Give every run its ConfigKey (`key`), now that all runs of the study are known."""
    varying = variant_settings(runs)
    for run in runs:
        settings = run.get("settings") or {}
        keys = sorted(varying.get((run["dataset"], run.get("method") or "freeze", network_of(run)), ()))
        variant = tuple((key, _hashable(settings.get(key))) for key in keys
                        if key != "pretrained" or run["has_pretrained"])
        run["key"] = config_key(run, variant)


def read_per_image(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = []
    for row in rows:
        item = {"id": str(row["id"])}
        for metric in METRICS:
            value = row.get(metric)
            item[metric] = float(value) if value not in (None, "") else math.nan
        out.append(item)
    return out


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ints(value) -> bool:
    return isinstance(value, list) and all(_int(item) for item in value)


def _of(kind):
    return lambda value: isinstance(value, kind)


def _phase(value) -> bool:
    return isinstance(value, dict) and _int(value.get("epoch")) and _ints(value.get("trainable"))


# The shape of the fields the report reads (besides the numbers of REQUIRED): a metrics.json
# where one is of another type (edited by hand, written by another tool) is damaged, not a run.
SHAPES = {
    "dataset": (_of(str), "a string"),
    "direction": (_of(str), "a string"),
}
OPTIONAL_SHAPES = {  # absent or null is fine: runs of older versions record fewer fields
    "settings": (_of(dict), "an object of settings"),
    "dataset_settings": (_of(dict), "an object"),
    "phases": (lambda v: isinstance(v, list) and all(_phase(p) for p in v), "a list of {epoch, trainable} objects"),
    "trainable_blocks": (_ints, "a list of block numbers"),
    "n_blocks": (_int, "an integer"),
    "folds": (_int, "an integer"),
    "seed": (_int, "an integer"),
    "split_seed": (_int, "an integer"),
    "method": (_of(str), "a string"),
    "depth": (_of(str), "a string"),
    "cache": (_of(str), "a string"),
    "folds_digest": (_of(str), "a string"),
    "warnings": (lambda v: isinstance(v, list) and all(isinstance(w, str) for w in v), "a list of strings"),
    **{name: (_of(dict), "an object") for name in ("validation", "block_change", "block_cka", "block_grad_norm")},
    "blocks": (lambda v: _blocks_record(v) is not None, "the network's block list {network, names, roles, tiers}"),
}


def _blocks_record(record) -> Blocks | None:
    """The recorded block list as Blocks, or None when it is not one."""
    try:
        return Blocks.recorded(record) if isinstance(record, dict) else None
    except (ConfigError, KeyError, TypeError, ValueError):
        return None


def shape_problem(metrics: dict) -> str | None:
    """What in a metrics.json is not of the type a run writes, in words; None when all is."""
    for key, (fits, words) in {**SHAPES, **OPTIONAL_SHAPES}.items():
        value = metrics.get(key)
        if (key in SHAPES or value is not None) and not fits(value):
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            return f"{key} is {shown}, not {words}"
    return None


def load_run(folder: Path, root: Path) -> tuple[dict | None, list[str]]:
    """The run in `folder` as a dict, or None and the reasons it could not be read."""
    metrics_path = folder / "metrics.json"
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError) as error:
        return None, [f"{metrics_path}: unreadable ({error}); run ignored"]
    if not isinstance(metrics, dict):
        return None, [f"{metrics_path}: not a JSON object; run ignored"]
    missing = [key for key in REQUIRED if key not in metrics]
    if missing:
        return None, [f"{metrics_path}: missing key(s) {missing}; run ignored"]
    bad = [key for key in (*METRICS, "k", "fold", "epochs") if not _is_number(metrics[key])]
    if bad:
        return None, [
            f"{metrics_path}: {bad} not numbers ({[metrics[b] for b in bad]}); run ignored"
        ]
    wrong = shape_problem(metrics)
    if wrong:
        return None, [f"{metrics_path}: {wrong}; run ignored"]
    problems: list[str] = []
    run = dict(metrics)
    run["direction"] = canonical_direction(str(metrics["direction"]))
    run["has_pretrained"] = bool(metrics.get("pretrained"))
    run["seed"] = metrics.get("seed", 0)
    run["epochs"] = int(metrics["epochs"])
    run["k"] = int(metrics["k"])
    run["fold"] = int(metrics["fold"])
    run["role"] = role_of(run["direction"], run["has_pretrained"], run["epochs"], run.get("phases"))
    run["key"] = config_key(run)
    run["path"] = folder
    run["relpath"] = "." if folder == root else str(folder.relative_to(root))
    run["mtime"] = metrics_path.stat().st_mtime
    run["per_image"] = None
    per_image = folder / "per_image.csv"
    if per_image.exists():
        try:
            run["per_image"] = read_per_image(per_image)
        except (OSError, ValueError, KeyError, csv.Error) as error:
            problems.append(
                f"{per_image}: unreadable ({error}); per-image statistics skip this run"
            )
    predictions = folder / "predictions.npz"
    run["predictions"] = predictions if predictions.exists() else None
    return run, problems


def looks_like_run(folder: Path, names: set[str]) -> bool:
    return bool(names & {".hydra", "per_image.csv", "predictions.npz"})


def find_runs(root: Path | str) -> Collection:
    """Every run below `root` (root included), in a deterministic order (by relative path)."""
    root = Path(root)
    found = Collection(root=root)
    for current, dirs, files in os.walk(root):
        folder = Path(current)
        names = set(dirs) | set(files)
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        if "metrics.json" in files:
            run, problems = load_run(folder, root)
            found.problems.extend(problems)
            if run is not None:
                found.runs.append(run)
        elif looks_like_run(folder, names):
            found.unfinished.append(folder)
    found.runs.sort(key=lambda r: r["relpath"])
    found.unfinished.sort()
    assign_keys(found.runs)
    return found


def deduplicate(runs: list[dict]) -> tuple[list[dict], list[str]]:
    """One run per (configuration, seed, fold): the newest; the others are named in a warning."""
    chosen: dict[tuple, dict] = {}
    dropped: dict[tuple, list[dict]] = {}
    for run in sorted(runs, key=lambda r: (r["mtime"], r["relpath"])):
        slot = (run["key"], run["seed"], run["fold"])
        if slot in chosen:
            dropped.setdefault(slot, []).append(chosen[slot])
        chosen[slot] = run
    warnings = []
    for slot, older in sorted(dropped.items(), key=lambda item: str(item[0])):
        names = ", ".join(r["relpath"] for r in older)
        warnings.append(
            f"{len(older) + 1} runs of {describe_key(slot[0])}, seed {slot[1]}, "
            f"fold {slot[2]}: using the newest ({chosen[slot]['relpath']}), ignoring {names}"
        )
    kept = sorted(chosen.values(), key=lambda r: r["relpath"])
    return kept, warnings


def layout_of(runs: list[dict], dataset: str, depth: str | None = None) -> Blocks:
    """The blocks of the network these runs (of `dataset`) trained: recorded in metrics.json
    (`blocks`: names, roles and tiers, any network), else the paper's U-Net of the recorded block
    count (`n_blocks`), or, for runs of older versions, of a count inferred from them (the paper's
    9 when they cannot tell)."""
    mine = [run for run in runs if run.get("dataset") == dataset]
    recorded = next((_blocks_record(run["blocks"]) for run in mine if run.get("blocks")), None)
    if recorded is not None:
        return recorded.with_depth(depth)
    exact, at_least = [], [Blocks().n]
    for run in mine:
        if run.get("n_blocks"):
            exact.append(int(run["n_blocks"]))
        elif run.get("direction") in ("deep_to_shallow", "none") and run.get("trainable_blocks"):
            exact.append(max(run["trainable_blocks"]))  # these always include the deepest block
        at_least.append(run.get("k") or 0)
    return Blocks.counted(max(exact) if exact else max(at_least), depth)


def run_path(run: dict) -> str | None:
    """'contracting' / 'expanding' when the run trained exactly that path of its network."""
    trained = set(run.get("trainable_blocks") or ())
    layout = layout_of([run], run.get("dataset"))
    return layout.path_trained(trained)


def network_name(target) -> str:
    """A network's builder as its config's name: unet_transfer.networks.flexunet.build -> flexunet,
    unet_transfer.model.UNet -> unet (conf/model/<name>.yaml)."""
    text = str(target)
    if text == "unet_transfer.model.UNet":
        return "unet"
    parts = text.split(".")
    return parts[-2] if parts[-1] == "build" and len(parts) > 1 else parts[-1]


def variant_words(variant: tuple, method: str = "freeze") -> str:
    """(('optimizer.lr', 0.001),) -> 'optimizer.lr=0.001'; a method other than freeze first."""
    words = [f"model={network_name(value)}" if key == "model._target_" else
             f"{key.removeprefix('finetune.')}={short_data(value) if key == 'data' else value}"
             for key, value in variant if value is not None]
    return ", ".join([method] * (method != "freeze") + words)


def short_data(entry) -> str:
    """'folder-1a2b3c4d5e6f7a8b' (a cache entry: dataset name, content digest) -> 'folder-1a2b3c4d'."""
    name, _, digest = str(entry).rpartition("-")
    return f"{name}-{digest[:8]}" if name else str(entry)


def describe_key(key: ConfigKey) -> str:
    """A configuration in words, e.g. 'busi, shallow to deep k=3 (pretrained, 20 epochs)'."""
    if key.role in SWEPT_DIRECTIONS:
        what = f"{ROLES[key.role]} k={key.k}"
    elif key.role == "blocks":
        what = f"blocks {span(key.blocks)}"
    else:
        what = ROLES[key.role].lower() if key.role != "pretrained_only" else "pretrained only"
    extra = f", {variant_words(key.variant, key.method)}" if key.variant or key.method != "freeze" else ""
    start = "pretrained" if key.has_pretrained else "from scratch"
    if key.role in ("scratch", "all_blocks", *UNTRAINED_ROLES):
        epochs = f" ({key.epochs} epochs{extra})" if key.epochs else (f" ({extra[2:]})" if extra else "")
        return f"{key.dataset}, {what}{epochs}"
    return f"{key.dataset}, {what} ({start}, {key.epochs} epochs{extra})"
