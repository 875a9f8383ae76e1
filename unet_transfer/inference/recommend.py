"""unet-transfer recommend STUDY_DIR [--out DIR] [--choose LABEL|RUN_DIR] [--dry-run]

After a study: train its recommended configuration once more, on all the study's images, with
the same recipe, and write it for use with its model card:

    OUT/model.pt, OUT/model.safetensors   the network (settings, image size, preprocessing inside)
    OUT/card.json, OUT/card.md            configuration, data digest, cross-validated scores, versions
    OUT/config.yaml                       the recipe as trained; OUT/logs/ the training log

The configuration is the study's best by mean held-out Dice over folds (ties: fewer trainable
parameters), or the one named by --choose (a label of the report, a unique part of it, or one
of its run folders). OUT defaults to STUDY_DIR/recommended. Run it from the folder the study
ran in: the study's configs name the data, the cache and the pretrained checkpoint relative to
it. A second call with the same recipe finds the network there; --force trains it again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from unet_transfer.data.contract import record
from unet_transfer.errors import one_line_exit
from unet_transfer.files import atomic_write_text
from unet_transfer.hardware import threads_for_one_process
from unet_transfer.inference.card import build_card, write_card
from unet_transfer.inference.choose import Choice, choose, study_rows
from unet_transfer.inference.final import FinalNetwork, check_start, recipe, train_final
from unet_transfer.metrics import METRICS, THRESHOLD
from unet_transfer.training.identity import code_version

WEIGHTS = "model.pt"  # and model.safetensors beside it


def data_of(cfg: DictConfig, row: dict) -> tuple[str, list[str]]:
    """The dataset's content digest now, and a warning when it is not what the study's runs read."""
    name = instantiate(cfg.dataset).cache_folder(cfg.paths.cache_dir).name
    studied = {Path(run["cache"]).name for run in row["runs"] if run.get("cache")}
    if studied and name not in studied:
        return name, [f"the data ({name}) is not the data the study's runs read ({', '.join(sorted(studied))}): "
                      "files changed since; the cross-validated scores describe the old data"]
    return name, []


def recipe_key(cfg: DictConfig, row: dict, data: str) -> str:
    """Equal keys, equal networks: the settings, the seed, the start, the data and the code."""
    identity = {"settings": row["runs"][0].get("settings"), "seed": cfg.seed, "data": data,
                "pretrained_sha256": row["runs"][0].get("pretrained_sha256"), **code_version()}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def up_to_date(out: Path, key: str) -> bool:
    try:
        card = json.loads((out / "card.json").read_text())
    except (OSError, ValueError):
        return False
    return card.get("recipe_key") == key and all((out / name).is_file() for name in card.get("files", {}))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save(final: FinalNetwork, out: Path, study: Path, label: str, key: str) -> dict[str, str]:
    """The network with everything predict needs; returns {file name: sha256}."""
    from unet_transfer.checkpoint import safetensors_path, save_weights

    meta = {"dataset": final.dataset, "epochs": final.epochs, "seed": final.cfg.seed, "configuration": label,
            "study": str(study), "recipe_key": key, **record(final.image_size, THRESHOLD)}
    path = save_weights(final.model, out / WEIGHTS, OmegaConf.to_container(final.cfg.model, resolve=True), meta)
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(final.cfg))
    return {p.name: sha256(p) for p in (path, safetensors_path(path), out / "config.yaml")}


def show_ranking(choice: Choice) -> None:
    metric = METRICS[choice.metric]
    print(f"Configurations by mean held-out {metric.label} over folds (± sample std), best first:")
    for candidate in choice.ranking[:8]:
        row = candidate.row
        mark = "->" if candidate is choice.chosen else "  "
        print(f" {mark} {row['mean'][choice.metric]:.4f} ± {row['std'][choice.metric]:.4f}  "
              f"{candidate.parameters:>10,} trainable  {candidate.label} {row['flag']}")
    print(f"Chosen: {choice.chosen.label}, {choice.how}")
    for warning in choice.warnings:
        print(f"Warning: {warning}")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unet-transfer recommend", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", type=Path, metavar="STUDY_DIR", help="the study's folder, e.g. multirun/demo")
    parser.add_argument("--out", type=Path, help="where to write (default: STUDY_DIR/recommended)")
    parser.add_argument("--choose", metavar="LABEL|RUN_DIR", help="train this configuration instead of the best")
    parser.add_argument("--dataset", help="the dataset, when the study has runs on several")
    parser.add_argument("--metric", default="dice", choices=list(METRICS), help="what 'best' means (default: dice)")
    parser.add_argument("--dry-run", action="store_true", help="show the ranking and the choice; train nothing")
    parser.add_argument("--force", action="store_true", help="train again even if OUT holds this recipe's network")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads (default: $UNET_TRANSFER_THREADS, else the cores not busy with other work)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from unet_transfer.config import register_resolvers

    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    register_resolvers()
    out = args.out or args.study / "recommended"
    try:
        rows, report_warnings = study_rows(args.study)
        choice = choose(rows, args.metric, args.dataset, args.choose)
        show_ranking(choice)
        if args.dry_run:
            return 0
        row = choice.chosen.row
        cfg = recipe(row, out)
        data, warnings = data_of(cfg, row)
        warnings = [*check_start(cfg, row), *warnings]
        key = recipe_key(cfg, row, data)
        if not args.force and up_to_date(out, key):
            print(f"{out} already holds this recipe's network (card.md); --force trains it again.")
            return 0
        for warning in warnings:
            print(f"Warning: {warning}")
        threads, why = threads_for_one_process(args.threads)
        print(why, flush=True)
        OmegaConf.update(cfg, "threads", threads)  # build() sets torch's threads from it
        final = train_final(cfg)
        files = save(final, out, args.study, choice.chosen.label, key)
        card = build_card(args.study, choice, final, files, key, [*warnings, *report_warnings])
        json_path, md_path = write_card(out, card)
    except Exception as error:  # a UserError, also when Hydra's instantiate wrapped it: one line, exit code 2
        return one_line_exit(error)
    scores = card["cross_validation"]["metrics"][choice.metric]
    spread = "n/a" if scores["std"] is None else f"{scores['std']:.4f}"
    print(f"Recommended network: {choice.chosen.label}; cross-validated {METRICS[choice.metric].label} "
          f"{scores['mean']:.4f} ± {spread} over folds (the recipe's, see the card)")
    print(f"  trained on all {final.n_images} images in {final.duration_s:.1f} s: {out / WEIGHTS} (+ .safetensors)")
    print(f"  model card: {md_path} and {json_path.name}")
    print(f"  use it: unet-transfer predict {out / WEIGHTS} IMAGES OUT [--masks MASKS]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
