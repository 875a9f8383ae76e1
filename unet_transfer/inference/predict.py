"""unet-transfer predict CKPT INPUT OUT [--masks DIR | --dataset NAME] [--probabilities png16|npy]

Segment images with a trained network: for every image in INPUT (a file, or a folder's image
files: PNG, JPEG, BMP, TIFF, GIF, DICOM) write into OUT, at the image's own size,
`<stem>_mask.png` (0/255), `<stem>_overlay.png` and optionally `<stem>_prob.png` (16-bit) or
`<stem>_prob.npy`. With reference masks (`--masks DIR`, or `--dataset NAME` to read INPUT as
that dataset) it scores them with the project's metrics: per_image.csv, summary.json and
summary.md.

Images are preprocessed exactly as the checkpoint's training did (inference/preprocessing.py:
the rule and the size are read from the checkpoint). An image that cannot be read is reported
and skipped; the others are still written, the failures are listed at the end, and the exit
code is 1. A checkpoint that cannot be used stops at once with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unet_transfer.data.imageio import read_grey, read_mask
from unet_transfer.errors import DatasetError, one_line_exit
from unet_transfer.inference.inputs import Item, from_dataset, image_files, with_mask_folder
from unet_transfer.inference.network import Network, load_network
from unet_transfer.inference.outputs import (
    PROBABILITY_FORMATS,
    original_size,
    write_mask,
    write_overlay,
    write_probability,
)
from unet_transfer.inference.preprocessing import network_input
from unet_transfer.inference.scoring import Outcome, score, write_summary


@dataclass
class Loaded:
    """An image read and prepared for the network, with its reference mask when it has a usable one."""

    item: Item
    grey: np.ndarray  # (H, W) in [0, 1], as read
    input: np.ndarray  # uint8 (S, S), as training stored it
    truth: np.ndarray | None = None
    mask_error: str | None = None


def load(item: Item, image_size: int, mask_threshold: float | None) -> Loaded:
    """DatasetError when the image cannot be read; a bad mask only leaves the image unscored."""
    grey = read_grey(item.image)
    loaded = Loaded(item, grey, network_input(grey, image_size))
    if item.masks:
        try:
            truth = read_mask(item.masks, threshold=mask_threshold)
            if truth.shape != grey.shape:
                raise DatasetError(
                    f"Mask '{item.masks[0]}' is {truth.shape[1]}x{truth.shape[0]} but its image '{item.image}' is "
                    f"{grey.shape[1]}x{grey.shape[0]} (width x height); scores are taken at the image's size. Fix: "
                    "export the mask again at the image's size.")
            loaded.truth = truth
        except DatasetError as error:
            loaded.mask_error = str(error)
    return loaded


def attempt(item: Item, image_size: int, mask_threshold: float | None) -> Loaded | str:
    """The loaded image, or why it could not be loaded (one image must not stop the others)."""
    try:
        return load(item, image_size, mask_threshold)
    except DatasetError as error:
        return str(error)
    except Exception as error:  # a decoder's own failure on a strange file
        return f"Cannot read image file '{item.image}': {type(error).__name__}: {error}."


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


def predict(network: Network, items: list[Item], out: Path, *, probabilities: str | None = None,
            overlays: bool = True, batch_size: int = 8, mask_threshold: float | None = None, scoring: bool = False,
            progress: bool = True, say: Callable[[str], None] | None = None) -> Outcome:
    """Segment every item into `out`; the next batch is decoded while the network runs on this one.
    `scoring`: masks were asked for, so an image without one is listed as unscored."""
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
            return [pool.submit(attempt, item, network.image_size, mask_threshold) for item in batch]

        pending = submit(batches[0]) if batches else []
        for number, batch in enumerate(batches):
            results = [future.result() for future in pending]
            pending = submit(batches[number + 1]) if number + 1 < len(batches) else []
            loaded = [result for result in results if isinstance(result, Loaded)]
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
                    outcome.rows.append(write_outputs(entry, probability, network, out, probabilities, overlays))
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


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.batch_size < 1:
        parser().error("--batch-size must be >= 1")
    try:
        network = load_network(args.checkpoint, args.device)
        mask_threshold = args.mask_threshold
        if args.dataset:
            items, mask_threshold = from_dataset(args.dataset, args.input, args.dataset_option)
        else:
            items = with_mask_folder(image_files(args.input), args.masks)
        outcome = predict(network, items, args.output, probabilities=args.probabilities, overlays=not args.no_overlay,
                          batch_size=args.batch_size, mask_threshold=mask_threshold,
                          scoring=bool(args.masks or args.dataset), progress=not args.no_progress)
    except Exception as error:  # a UserError, also when Hydra's instantiate wrapped it: one line, exit code 2
        return one_line_exit(error)
    write_summary(outcome)
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
