"""The model card of a recommended network (card.json and card.md): which configuration and why,
the data it was trained on, the cross-validated scores of its recipe with their spread, how
long it trained and with which software.

The scores are not this network's: it was trained on every image and has no held-out image
left. They are the scores of its recipe (the same configuration trained on k-1 folds and
scored on the held-out fold, k times), the best available estimate of how the recipe does on
new images of the same kind. The card says so in words.
"""

from __future__ import annotations

import json
import math
import platform
import time
from importlib import metadata
from pathlib import Path

from unet_transfer.files import atomic_write_text
from unet_transfer.inference.choose import Choice
from unet_transfer.inference.final import FinalNetwork
from unet_transfer.metrics import METRICS
from unet_transfer.report.collect import describe_key
from unet_transfer.training.identity import code_version

FORMAT = "unet-transfer/model-card-v1"
PACKAGES = ("torch", "pytorch-lightning", "numpy", "hydra-core", "safetensors", "opencv-python-headless")
RANKING_SHOWN = 5


def number(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def scores_note(row: dict, n_images: int) -> str:
    folds, seeds = row["expected_folds"] or len(row["folds_found"]), len(row["seeds"])
    per_seed = "" if seeds == 1 else f" for each of {seeds} seeds"
    return (f"These scores come from {folds}-fold cross-validation of the recipe: the same configuration trained "
            f"on {folds - 1} of {folds} folds and scored on the held-out fold, {len(row['folds_found'])} time(s)"
            f"{per_seed}. This network was "
            f"trained with that recipe on all {n_images} images, so it has no held-out score of its own: expect "
            "scores like these on new images of the same kind, within their spread.")


def software() -> dict:
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {**versions, "unet-transfer": code_version()["version"], "code_digest": code_version()["code_digest"]}


def noise_record(noise: dict | None) -> dict | None:
    """What choose.noise_rule found, JSON-safe (no NaN p when no test could run)."""
    return None if noise is None else {**noise, "p": number(noise["p"])}


def build_card(study: Path, choice: Choice, final: FinalNetwork, files: dict[str, str], recipe_key: str,
               warnings: list[str]) -> dict:
    row, cfg = choice.chosen.row, final.cfg
    metric_scores = {name: {"mean": row["mean"][name], "std": number(row["std"][name]),
                            "seed_std": number(row["seed_std"][name]),
                            "per_fold": {str(fold): scores[name] for fold, scores in row["per_fold"].items()}}
                     for name in METRICS}
    return {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "study": str(study),
        "configuration": {
            "label": row["label"], "description": describe_key(row["key"]), "direction": row["direction"],
            "k": row["k"], "trainable_blocks": list(row["blocks"]), "trainable_parameters": choice.chosen.parameters,
            "total_parameters": sum(p.numel() for p in final.model.parameters()),
            "pretrained": cfg.pretrained, "pretrained_sha256": row["runs"][0].get("pretrained_sha256"),
            "seed": cfg.seed, "settings": row["runs"][0].get("settings") or {},
        },
        "chosen": {"by": choice.how, "metric": choice.metric, "noise": noise_record(choice.noise),
                   "ranking": [{"label": c.label, "mean": c.row["mean"][choice.metric],
                                "std": number(c.row["std"][choice.metric]), "trainable_parameters": c.parameters,
                                "folds": c.row["n_folds"], "flag": c.row["flag"]}
                               for c in choice.ranking[:RANKING_SHOWN]]},
        "cross_validation": {"note": scores_note(row, final.n_images), "folds": row["folds_found"],
                             "expected_folds": row["expected_folds"], "seeds": row["seeds"], "flag": row["flag"],
                             "metrics": metric_scores},
        "data": {"dataset": final.dataset, "n_images": final.n_images, "image_size": final.image_size,
                 "content": final.data, "ids_sha256": final.ids_sha256, "image_digests": final.image_digests},
        "training": {"epochs": final.epochs, "batch_size": cfg.batch_size, "augment": cfg.augment.mode,
                     "precision": final.precision, "device": final.device, "duration_s": final.duration_s,
                     "images_trained": final.n_train, "images_held_out": final.n_images - final.n_train},
        "files": files,
        "recipe_key": recipe_key,
        "software": software(),
        "warnings": [*choice.warnings, *warnings],
    }


def markdown(card: dict) -> str:
    c, cv, data, training = card["configuration"], card["cross_validation"], card["data"], card["training"]
    lines = [f"# Model card: {c['label']}", "",
             f"The recommended network of the study `{card['study']}`: {c['description']}, chosen as {card['chosen']['by']}.",
             "", "## Expected performance", "", f"**{cv['note']}**", "",
             "| metric | mean ± std over folds | per fold |", "|---|---|---|"]
    for name, s in cv["metrics"].items():
        digits = METRICS[name].digits + 2
        spread = "–" if s["std"] is None else f"{s['std']:.{digits}f}"
        folds = ", ".join(f"{value:.{digits}f}" for value in s["per_fold"].values())
        lines.append(f"| {METRICS[name].label} | {s['mean']:.{digits}f} ± {spread} | {folds} |")
    lines += ["", "## Configuration", "",
              f"- trained blocks: {c['trainable_blocks']} ({c['trainable_parameters']:,} of {c['total_parameters']:,} "
              "parameters)",
              f"- started from: {c['pretrained'] or 'random initialisation'}"
              + (f" (sha256 {c['pretrained_sha256']})" if c["pretrained_sha256"] else ""),
              f"- seed {c['seed']}; every setting is in card.json (`configuration.settings`) and config.yaml",
              "", "## Data and training", "",
              f"- {data['n_images']} images of `{data['dataset']}` at {data['image_size']}x{data['image_size']} "
              f"(content {data['content']}, ids sha256 {data['ids_sha256']}), none held out",
              f"- {training['epochs']} epochs, batch size {training['batch_size']}, augmentation {training['augment']}, "
              f"{training['precision']} on {training['device']}, {training['duration_s']:.1f} s",
              "", "## Files", "", *(f"- `{name}`: sha256 {digest}" for name, digest in card["files"].items()),
              "", "## Ranking", "", f"| configuration | {card['chosen']['metric']} mean ± std | trainable parameters |",
              "|---|---|---|"]
    for entry in card["chosen"]["ranking"]:
        spread = "–" if entry["std"] is None else f"{entry['std']:.4f}"
        lines.append(f"| {entry['label']} {entry['flag']} | {entry['mean']:.4f} ± {spread} | {entry['trainable_parameters']:,} |")
    if card["chosen"].get("noise"):
        lines += ["", f"Within the study's noise of the best: {'; '.join(card['chosen']['noise']['within'])}. "
                  "The rule: a configuration whose "
                  "mean trails the best by no more than the standard error of their paired fold differences is "
                  "within the noise, and the one of those that trains the fewest parameters is chosen "
                  "(`unet-transfer recommend --choose LABEL` trains another)."]
    lines += ["", "## Software", "", *(f"- {name}: {version}" for name, version in card["software"].items())]
    if card["warnings"]:
        lines += ["", "## Warnings", "", *(f"- {warning}" for warning in card["warnings"])]
    return "\n".join(lines) + "\n"


def write_card(out_dir: Path, card: dict) -> tuple[Path, Path]:
    return (atomic_write_text(out_dir / "card.json", json.dumps(card, indent=2, default=str) + "\n"),
            atomic_write_text(out_dir / "card.md", markdown(card)))
