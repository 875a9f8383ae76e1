"""What a run is: its settings, read off the resolved config, and the identity they give it.

Nothing here lists the study's axes by hand. Every setting of the config is part of a run's
`settings` except those that cannot change what is trained (`NOT_SETTINGS`: where files go,
logging, speed). So a new config group, a new optimiser option or a setting the report has
never heard of separates runs and report rows by itself.

- `settings` (recorded in metrics.json) is what the report groups by: every such setting
  except fold and seed (a configuration's folds and retrainings), flattened to dotted keys,
  plus `data`: the data's content digest (its cache entry's name, e.g. `folder-1a2b...`).
  The data folder's path (`dataset.root`) is not a setting, its content is: runs on other data
  are other runs and other report rows, while a copied or moved folder is the same data.
- the run identity (`run_key`) adds fold, seed, which blocks train in which epochs, the
  data's content digest, the pretrained checkpoint's digest and the code version: two runs
  with the same key produce the same numbers, so a finished one may stand for the other.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

import unet_transfer

# Settings that do not change what a run trains or scores: output and cache folders, logging,
# what is kept on disk, names (model_name: the network's name in checkpoint names, made of its
# model settings), and speed (threads, memory layout, compilation, data loading, device).
NOT_SETTINGS = (
    "output_dir", "paths", "study", "model_name", "study_sweeps", "resume", "logger", "save_weights",
    "save_predictions", "keep_weights", "lr_grid", "lr_grid_values", "lr_grid_validation", "threads", "runs_per_gpu", "fast", "loader", "pretrain", "pretrain_overrides",
    "dataset.root", "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.log_every_n_steps",
    "trainer.enable_checkpointing", "trainer.accelerator", "trainer.devices", "trainer.default_root_dir",
)
# Said by other fields of metrics.json: the run's own place in a study, and what its freeze
# setting trains (`direction`, `k`, `trainable_blocks`; the phases are part of the identity).
OWN_FIELDS = ("fold", "seed", "k", "freeze")


def _under(key: str, names) -> bool:
    return any(key == name or key.startswith(name + ".") for name in names)


def _excluded(key: str) -> bool:
    return _under(key, (*NOT_SETTINGS, *OWN_FIELDS))


def is_setting(key: str) -> bool:
    """Can this config key (dotted, e.g. `trainer.max_epochs`) change what a run trains?"""
    return not _under(key.lstrip("+~"), NOT_SETTINGS)


def flatten(value, prefix: str = "") -> dict:
    """{"model": {"width": 8}} -> {"model.width": 8}; lists stay values."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def run_settings(cfg: DictConfig, data: str | None = None) -> dict:
    """Every setting of the run that can change its numbers, by dotted key (sorted), and the
    data's content digest (`data`: the cache entry's name) when given."""
    found: dict = {}
    for key in cfg:
        if _excluded(str(key)):
            continue
        node = cfg[key]
        value = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig | ListConfig) else node
        found.update(flatten(value, f"{key}."))
    if data is not None:
        found["data"] = data
    return {key: found[key] for key in sorted(found) if not _excluded(key)}


@cache
def code_digest() -> str:
    """A hash of the package's source: a code change makes every run identity new, so a
    resumed study never returns numbers an older version computed."""
    sha = hashlib.sha256()
    root = Path(unet_transfer.__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        sha.update(str(path.relative_to(root)).encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()[:16]


def code_version() -> dict:
    return {"version": unet_transfer.__version__, "code_digest": code_digest()}


def run_key(settings: dict, *, fold: int, seed: int, phases, data: str, weights: str | None) -> str:
    """The identity of a run: equal keys, equal numbers (see the module docstring)."""
    from unet_transfer.data.cache import digest

    return digest({"settings": settings, "fold": fold, "seed": seed, "data": data, "pretrained_sha256": weights,
                   "phases": [phase_record(p) for p in phases], **code_version()})


def phase_record(phase) -> dict:
    """A freeze phase as metrics.json and the run identity record it."""
    return {"epoch": phase.epoch, "trainable": list(phase.trainable), "lr": phase.lr, "schedule": phase.schedule}
