"""unet-transfer predict CKPT INPUT OUT [--masks DIR | --dataset NAME] [--probabilities png16|npy]

Segment images with a trained network: for every image in INPUT (a file, or a folder's image
files: PNG, JPEG, BMP, TIFF, GIF, DICOM) write into OUT, at the image's own size,
`<stem>_mask.png` (0/255), `<stem>_overlay.png` and optionally `<stem>_prob.png` (16-bit) or
`<stem>_prob.npy`. With reference masks (`--masks DIR`, or `--dataset NAME` to read INPUT as
that dataset) it scores them with the project's metrics: per_image.csv, summary.json and
summary.md.

Images are preprocessed exactly as the checkpoint's training did (data/contract.py:
the rule and the size are read from the checkpoint). An image that cannot be read, or whose
files cannot be written (a full disk, a name too long), is reported and skipped; the others are
still written, the failures are listed at the end, and the exit code is 1. A checkpoint that
cannot be used stops at once with one line and exit code 2.

predict never touches what it reads: OUT may not be, contain or lie inside INPUT's folder, the
masks folder or the dataset root; it never replaces a file it did not write (its manifest,
predict_files.json, lists those it did); masks and predict's outputs lying beside their images
are not predicted. Each is one line and exit code 2 before any image is read; where OUT lies is
checked before the checkpoint is even loaded.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unet_transfer.data.contract import input_digest, network_input
from unet_transfer.data.imageio import ImageReadError, read_grey, read_mask
from unet_transfer.errors import ConfigError, DatasetError, one_line_exit
from unet_transfer.inference.inputs import Item, from_dataset, listed_inputs, with_mask_folder
from unet_transfer.inference.network import Network, load_network
from unet_transfer.inference.outputs import (
    MANIFEST,
    PROBABILITY_FORMATS,
    SUMMARY_FILES,
    claim,
    file_names,
    original_size,
    unowned,
    write_mask,
    write_overlay,
    write_probability,
)
from unet_transfer.inference.scoring import Outcome, score, write_summary


@dataclass
class Loaded:
    """An image read and prepared for the network, with its reference mask when it has a usable one."""

    item: Item
    grey: np.ndarray  # (H, W) in [0, 1], as read
    input: np.ndarray  # uint8 (S, S), as training stored it
    truth: np.ndarray | None = None
    mask_error: str | None = None


def load(item: Item, image_size: int, mask_threshold: float | None, setting: str = "--mask-threshold") -> Loaded:
    """DatasetError when the image cannot be read; a bad mask only leaves the image unscored.
    `setting`: how messages name the mask threshold option."""
    grey = read_grey(item.image)
    loaded = Loaded(item, grey, network_input(grey, image_size))
    if item.masks:
        try:
            truth = read_mask(item.masks, threshold=mask_threshold, setting=setting, resize_fix=None)
            if truth.shape != grey.shape:
                raise DatasetError(
                    f"Mask '{item.masks[0]}' is {truth.shape[1]}x{truth.shape[0]} but its image '{item.image}' is "
                    f"{grey.shape[1]}x{grey.shape[0]} (width x height); scores are taken at the image's size. Fix: "
                    "export the mask again at the image's size.")
            loaded.truth = truth
        except DatasetError as error:
            loaded.mask_error = str(error)
    return loaded


def attempt(item: Item, image_size: int, mask_threshold: float | None, setting: str = "--mask-threshold") -> Loaded | str:
    """The loaded image, or why it could not be loaded (one image must not stop the others)."""
    try:
        return load(item, image_size, mask_threshold, setting)
    except ImageReadError as error:
        return error.skipped()
    except DatasetError as error:
        return str(error)
    except Exception as error:  # a decoder's own failure on a strange file
        return (f"Cannot read image file '{item.image}': {type(error).__name__}: {error}. The image is skipped "
                "(listed at the end).")


def unique_names(items: list[Item]) -> tuple[list[Item], list[tuple[str, str]]]:
    """Items whose output names are free; a second image of the same stem (x.png, x.jpg) fails."""
    seen: dict[str, Path] = {}
    kept, clashes = [], []
    for item in items:
        if item.name in seen:
            clashes.append((str(item.image), f"'{item.image}' has the same name as '{seen[item.name]}', so their "
                            f"outputs ({item.name}_mask.png, ...) would collide. Fix: rename one of them."))
        else:
            seen[item.name] = item.image
            kept.append(item)
    return kept, clashes


def write_outputs(loaded: Loaded, probability: np.ndarray, network: Network, out: Path,
                  probabilities: str | None, overlays: bool) -> dict:
    """The image's files at its own size, and its row (scores when it has a reference mask)."""
    name, shape = loaded.item.name, loaded.grey.shape
    full = original_size(probability, shape)
    mask = full > network.threshold
    write_mask(out, name, mask)
    if probabilities:
        write_probability(out, name, full, probabilities)
    if overlays:
        write_overlay(out, name, loaded.grey, mask, loaded.truth)
    row = {"id": name, "image": str(loaded.item.image), "height": shape[0], "width": shape[1]}
    if loaded.truth is not None:
        row.update(score(full, loaded.truth, network.threshold))
    return row


WRITE_FIXES = {errno.ENOSPC: "free space on that disk, or give OUT on another disk",
               errno.EDQUOT: "free space within your disk quota, or give OUT on another disk",
               errno.ENAMETOOLONG: "rename the image to a shorter name",
               errno.EACCES: "give your user write access to OUT, or give another OUT",
               errno.EROFS: "give OUT on a disk that is not read-only"}


def unwritten(item: Item, out: Path, error: OSError) -> str:
    """Why `item`'s files could not be written into `out`, in one line with the fix."""
    where = f" ('{error.filename}')" if error.filename else ""
    fix = WRITE_FIXES.get(error.errno, "check that OUT is writable and has free space")
    return (f"Cannot write the outputs of '{item.image}' into '{out}': {error.strerror or error}{where}. Fix: {fix}. "
            "The image is skipped (listed at the end).")


def predict(network: Network, items: list[Item], out: Path, *, probabilities: str | None = None,
            overlays: bool = True, batch_size: int = 8, mask_threshold: float | None = None, scoring: bool = False,
            progress: bool = True, say: Callable[[str], None] | None = None,
            threshold_setting: str = "--mask-threshold", known: frozenset[str] = frozenset()) -> Outcome:
    """Segment every item into `out`; the next batch is decoded while the network runs on this one.
    `scoring`: masks were asked for, so an image without one is listed as unscored. A file that
    cannot be written fails its image only. The caller has checked `out` (`check_output`). `known`:
    input digests of the images the network was trained on (its card), to tell which these are."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    outcome = Outcome(str(network.path), out, network.image_size, network.threshold)
    items, outcome.failures = unique_names(items)
    bar = tqdm(total=len(items), desc="Predicting", unit="img", disable=not progress, file=sys.stderr)
    say = say or (lambda line: bar.write(line, file=sys.stderr))
    for _, why in outcome.failures:
        say(f"Error: {why}")
    batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    with ThreadPoolExecutor(max_workers=min(4, batch_size)) as pool:

        def submit(batch: list[Item]) -> list:
            return [pool.submit(attempt, item, network.image_size, mask_threshold, threshold_setting)
                    for item in batch]

        pending = submit(batches[0]) if batches else []
        for number, batch in enumerate(batches):
            results = [future.result() for future in pending]
            pending = submit(batches[number + 1]) if number + 1 < len(batches) else []
            loaded = [result for result in results if isinstance(result, Loaded)]
            outcome.seen_in_training += [entry.item.name for entry in loaded if known and input_digest(entry.input) in known]
            for item, result in zip(batch, results, strict=True):
                if isinstance(result, str):
                    outcome.failures.append((str(item.image), result))
                    say(f"Error: {result}")
                elif result.mask_error:
                    outcome.failures.append((str(result.item.masks[0]), result.mask_error))
                    say(f"Error: {result.mask_error} (the image is predicted, not scored)")
                elif scoring and not item.masks:
                    outcome.unscored.append(item.name)
            if loaded:
                inputs = torch.from_numpy(np.stack([entry.input for entry in loaded]))[:, None].float().div_(255.0)
                for entry, probability in zip(loaded, network.probabilities(inputs)[:, 0].numpy(), strict=True):
                    try:
                        outcome.rows.append(write_outputs(entry, probability, network, out, probabilities, overlays))
                    except OSError as error:  # a full disk, a name too long: this image only
                        outcome.failures.append((str(entry.item.image), unwritten(entry.item, out, error)))
                        say(f"Error: {outcome.failures[-1][1]}")
                        if entry.item.name in outcome.unscored:
                            outcome.unscored.remove(entry.item.name)
            bar.update(len(batch))
    bar.close()
    return outcome


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unet-transfer predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="model.pt or model.safetensors (recommend or save_weights=)")
    parser.add_argument("input", type=Path, help="an image file or a folder of images (with --dataset: its root)")
    parser.add_argument("output", type=Path, help="folder for the masks, overlays and scores")
    masks = parser.add_mutually_exclusive_group()
    masks.add_argument("--masks", type=Path, metavar="DIR", help="reference masks: DIR/<stem>.png or <stem>_mask.png")
    masks.add_argument("--dataset", metavar="NAME", help="read INPUT as this dataset (conf/dataset/NAME.yaml), masks included")
    parser.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a dataset setting with --dataset, e.g. include_normal=true (repeatable)")
    parser.add_argument("--mask-threshold", type=float, default=None,
                        help="binarise soft --masks at this fraction of full scale (default: masks must be binary)")
    parser.add_argument("--probabilities", choices=PROBABILITY_FORMATS, help="also write the probability map")
    parser.add_argument("--no-overlay", action="store_true", help="do not write <stem>_overlay.png")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def overlap(out: Path, folder: Path) -> str | None:
    """How `out` overlaps `folder` (is, lies inside, contains), or None."""
    a, b = out.resolve(), folder.resolve()
    if a == b:
        return "is"
    if a.is_relative_to(b):
        return "lies inside"
    if b.is_relative_to(a):
        return "contains"
    return None


def check_output(out: Path, read: dict[str, Path]) -> None:
    """OUT must be a folder predict can make or write, apart from every folder it reads (`read`:
    what -> folder), so no output can ever replace or be read as an input or a mask."""
    for what, folder in read.items():
        how = overlap(out, folder)
        if how:
            suggestion = folder.resolve().parent / f"{folder.resolve().name}_predicted"
            raise ConfigError(f"OUT={str(out)!r} {how} {what} {str(folder)!r}: predict writes '<image name>_mask.png' "
                              "and other files where it would replace or read images and masks. Fix: give a new "
                              f"folder apart from them, e.g. {str(suggestion)!r}.")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"OUT={str(out)!r} is a file, not a folder. Fix: give a folder for the masks, overlays and "
                          "scores (it is made if missing).")
    existing = next(parent for parent in (out, *out.absolute().parents) if parent.exists())
    if not existing.is_dir():
        raise ConfigError(f"OUT={str(out)!r} cannot be made: {str(existing)!r} is a file. Fix: give a folder path.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"OUT={str(out)!r} cannot be written: your user may not write into {str(existing)!r}. Fix: "
                          "give a folder you can write to, or give your user write access to it.")


def read_folders(args: argparse.Namespace) -> dict[str, Path]:
    """The folders predict reads: INPUT's (a file's own folder), the masks folder, the dataset root."""
    folders = {"the dataset root" if args.dataset else "INPUT":
               args.input.parent if args.input.is_file() else args.input}
    if args.masks:
        folders["the masks folder"] = args.masks
    return folders


def planned(items: list[Item], probabilities: str | None, overlays: bool) -> list[str]:
    """Every file this run may write into OUT."""
    return [*(name for item in items for name in file_names(item.name, probabilities, overlays)), *SUMMARY_FILES,
            MANIFEST]


def check_free(out: Path, names: list[str]) -> None:
    """Refuse to start when OUT holds a file this run would replace that predict did not write."""
    foreign = unowned(out, names)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise ConfigError(f"OUT={str(out)!r} already holds '{foreign[0]}'{more}, which predict did not write (not in "
                          f"its {MANIFEST}) and this run would replace; predict never replaces such files. Fix: give "
                          "a new or empty folder, or move those files away.")


def trained_images(network: Network) -> frozenset[str]:
    """What the network saw of each image it was trained on (input digests, data/contract.py), from
    its model card (card.json beside it, of the same recipe); empty when there is none."""
    try:
        card = json.loads((network.path.parent / "card.json").read_text())
    except (OSError, ValueError):
        return frozenset()
    if not isinstance(card, dict) or card.get("recipe_key") != network.checkpoint.meta.get("recipe_key"):
        return frozenset()
    digests = (card.get("data") or {}).get("image_digests") if isinstance(card.get("data"), dict) else None
    return frozenset(d for d in digests if isinstance(d, str)) if isinstance(digests, list) else frozenset()


def trained_on(network: Network, outcome: Outcome, dataset: str | None, known: frozenset[str]) -> list[str]:
    """Warnings when scored images are images the network was trained on: by content, those whose
    network input equals one its card lists (names say nothing: new images may reuse them); with
    no card, a `--dataset` of the name its checkpoint records may hold them."""
    scored = {row["id"] for row in outcome.scored}
    seen = sorted(scored & set(outcome.seen_in_training))
    if seen:
        shown = ", ".join(seen[:3]) + (" ..." if len(seen) > 3 else "")
        return [f"{len(seen)} of the {len(scored)} scored images are images this network was trained on (the same "
                f"pixels as its training images, by its card.json): {shown}; their scores are training scores, not "
                "what to expect on new images (the card's cross-validated scores are)"]
    if not known and dataset and network.checkpoint.meta.get("dataset") == dataset:
        return [f"this network was trained on dataset {dataset!r} (its checkpoint says so); if INPUT holds those "
                "files, images it was trained on are among the scored ones and the scores are optimistic"]
    return []


def say_skipped(source: Path, skipped: list[Path]) -> None:
    if skipped:
        shown = ", ".join(path.name for path in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        print(f"Skipped {len(skipped)} file(s) in {source} that are masks or predict's outputs beside their images "
              f"(not predicted): {shown}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.batch_size < 1:
        parser().error("--batch-size must be >= 1")
    try:
        if args.mask_threshold is not None and not 0.0 < args.mask_threshold <= 1.0:
            raise ConfigError(f"--mask-threshold {args.mask_threshold:g} is out of range. Fix: give a fraction in "
                              "(0, 1] of full scale, e.g. --mask-threshold 0.5, or leave it out for binary masks.")
        check_output(args.output, read_folders(args))
        network = load_network(args.checkpoint, args.device)
        known = trained_images(network)
        mask_threshold, dataset_name, setting = args.mask_threshold, None, "--mask-threshold"
        if args.dataset:
            items, mask_threshold, dataset_name = from_dataset(args.dataset, args.input, args.dataset_option)
            setting = "--dataset-option mask_threshold"
        else:
            images, skipped = listed_inputs(args.input)
            say_skipped(args.input, skipped)
            items = with_mask_folder(images, args.masks)
        names = planned(items, args.probabilities, not args.no_overlay)
        check_free(args.output, names)
        try:
            claim(args.output, names)
        except OSError as error:
            raise ConfigError(f"OUT={str(args.output)!r} cannot be written ({error.strerror or error}). Fix: give a "
                              "folder you can write to, on a disk with free space.") from None
        outcome = predict(network, items, args.output, probabilities=args.probabilities, overlays=not args.no_overlay,
                          batch_size=args.batch_size, mask_threshold=mask_threshold,
                          scoring=bool(args.masks or args.dataset), progress=not args.no_progress,
                          threshold_setting=setting, known=known)
        outcome.warnings = trained_on(network, outcome, dataset_name, known)
        for warning in outcome.warnings:
            print(f"Warning: {warning}")
    except Exception as error:  # a UserError, also when Hydra's instantiate wrapped it: one line, exit code 2
        return one_line_exit(error)
    try:
        write_summary(outcome)
    except OSError as error:
        print(f"Error: cannot write the scores into {args.output} ({error.strerror or error}); the masks written are "
              "kept. Fix: free space on that disk or make OUT writable, and run again.", file=sys.stderr)
        return 1
    print(f"Predicted {len(outcome.rows)} image(s) into {args.output} (network input {network.image_size}x"
          f"{network.image_size}, threshold {network.threshold:g}, {network.device})")
    if outcome.scored:
        dice = [row["dice"] for row in outcome.scored]
        print(f"Dice {np.mean(dice):.4f} (mean of {len(dice)} scored image(s)); see {args.output / 'summary.md'}")
    if outcome.unscored:
        print(f"{len(outcome.unscored)} image(s) had no mask and were not scored: {', '.join(outcome.unscored[:5])}"
              + (" ..." if len(outcome.unscored) > 5 else ""))
    if outcome.failures:
        print(f"{len(outcome.failures)} file(s) failed:", file=sys.stderr)
        for file, _ in outcome.failures:
            print(f"  {file}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
