"""Using a study's answer: recommend its best configuration, train it on every image, predict on
new files at their own size, score them, and survive a file that cannot be read."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import TINY
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from unet_transfer.config import CONF_DIR
from unet_transfer.inference import predict, recommend
from unet_transfer.simulate.folder import write_folder
from unet_transfer.training.run import run

# A study small enough for a test that still learns: simulated chest X-rays (large lungs), width 8,
# 32 px, 12 epochs from scratch; all blocks trained (Dice ~0.8) against only the deepest (poor).
# fp32 NCHW (fast.auto=false): a layout chosen by timing under load would change what it learns.
STUDY = [*TINY, "dataset=synthetic_xray", "dataset.n_images=24", "model.width=8", "trainer.max_epochs=12",
         "optimizer.lr=1e-3", "augment=none", "folds=2", "trainer.precision=32-true", "fast.auto=false"]
CONFIGURATIONS = {"all": ["freeze=none"], "deepest": ["freeze=deep_to_shallow", "k=1"]}


def study_run(root: Path, name: str, fold: int, *overrides: str):
    """A run as a study sweep leaves it, Hydra's resolved config in .hydra/config.yaml included."""
    out = root / "multirun" / "tiny" / f"{name},fold={fold}"
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*STUDY, *overrides, f"fold={fold}", f"output_dir='{out}'",
                                                       f"paths.cache_dir={root / 'cache'}"])
    run(cfg)
    (out / ".hydra").mkdir()
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")
    return cfg


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("use")
    for name, overrides in CONFIGURATIONS.items():
        for fold in (0, 1):
            weights = [f"save_weights={root / 'fold0.pt'}"] if (name, fold) == ("all", 0) else []
            study_run(root, name, fold, *overrides, *weights)
    return root


@pytest.fixture(scope="module")
def recommended(study):
    assert recommend.main([str(study / "multirun" / "tiny"), "--out", str(study / "recommended")]) == 0
    return study / "recommended"


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_recommend_trains_the_best_configuration_on_every_image_with_a_card(study, recommended):
    card = json.loads((recommended / "card.json").read_text())
    assert card["configuration"]["trainable_blocks"] == list(range(1, 10))  # all blocks beat the deepest alone
    assert card["data"]["n_images"] == card["training"]["images_trained"] == 24  # no fold held out
    fold_dice = [json.loads(path.read_text())["dice"]
                 for path in sorted((study / "multirun" / "tiny").glob("all,fold=*/metrics.json"))]
    scores = card["cross_validation"]["metrics"]["dice"]
    assert scores["mean"] == pytest.approx(statistics.fmean(fold_dice))
    assert scores["std"] == pytest.approx(statistics.stdev(fold_dice))
    assert "cross-validation of the recipe" in card["cross_validation"]["note"]
    assert "no held-out score of its own" in (recommended / "card.md").read_text()
    assert {"model.pt", "model.safetensors", "config.yaml"} <= set(card["files"])
    assert card["software"]["torch"] and card["training"]["duration_s"] > 0
    # The same recipe again: found, not trained again.
    stamp = (recommended / "model.pt").stat().st_mtime_ns
    assert recommend.main([str(study / "multirun" / "tiny"), "--out", str(recommended)]) == 0
    assert (recommended / "model.pt").stat().st_mtime_ns == stamp


def test_predict_on_new_images_at_another_size_scores_as_at_the_training_size(study, recommended):
    """New images at 40x56 are segmented at their own size, and score as the same images written at
    the network's 32x32 do: the way to the network's size and back costs next to nothing. (How
    well the network generalises to images simulated at another scale is not a property of
    predict: with two folds, the cross-validated spread is no yardstick for it.)"""
    new, square = study / "new", study / "new_32"
    write_folder(new, kind="xray", n=12, size=48, seed=7, shape=(40, 56))  # images no run has seen, 40x56
    write_folder(square, kind="xray", n=12, size=48, seed=7, shape=(32, 32))  # the same, at the network's size
    scores = {}
    for folder in (new, square):
        out = folder.with_name(folder.name + "_predicted")
        code = predict.main([str(recommended / "model.safetensors"), str(folder / "images"), str(out), "--masks",
                             str(folder / "masks"), "--probabilities", "npy", "--no-progress"])
        assert code == 0
        summary = json.loads((out / "summary.json").read_text())
        assert len(read_csv(out / "per_image.csv")) == summary["n_scored"] == 12 and summary["n_failed"] == 0
        scores[folder] = summary["metrics"]["dice"]["mean"]
    out = study / "new_predicted"
    for image in (new / "images").glob("*.png"):
        mask = cv2.imread(str(out / f"{image.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (40, 56) and set(np.unique(mask)) <= {0, 255}
        assert cv2.imread(str(out / f"{image.stem}_overlay.png")).shape == (40, 56, 3)
        probability = np.load(out / f"{image.stem}_prob.npy")
        assert np.array_equal(probability > 0.5, mask > 0)
    assert abs(scores[new] - scores[square]) <= 0.05, scores  # 0.02 here; a misplaced mask loses far more
    rejected = statistics.fmean(json.loads(path.read_text())["dice"]  # the deepest block alone, cross-validated
                                for path in (study / "multirun" / "tiny").glob("deepest,fold=*/metrics.json"))
    assert scores[new] > max(0.5, rejected + 0.1), (scores, rejected)  # it segments, far better than the rejected


def test_predict_uses_exactly_the_preprocessing_of_training(study):
    """A fold's network on its held-out images, written as files at the training size, scores
    exactly what the run scored: the same decoding, resizing and quantisation."""
    run_dir = study / "multirun" / "tiny" / "all,fold=0"
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    from hydra.utils import instantiate

    data, _ = instantiate(cfg.dataset).load(cfg.paths.cache_dir)
    held_out = read_csv(run_dir / "per_image.csv")
    images, masks = study / "held_out" / "images", study / "held_out" / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for row in held_out:
        index = data.ids.index(row["id"])
        cv2.imwrite(str(images / f"{row['id']}.png"), data.images[index])
        cv2.imwrite(str(masks / f"{row['id']}_mask.png"), data.masks[index].astype(np.uint8) * 255)
    out = study / "held_out_predicted"
    assert predict.main([str(study / "fold0.pt"), str(images), str(out), "--masks", str(masks), "--no-progress"]) == 0
    predicted = {row["id"]: row for row in read_csv(out / "per_image.csv")}
    for row in held_out:
        for metric in ("dice", "pixel_error", "adjusted_rand"):
            assert float(predicted[row["id"]][metric]) == pytest.approx(float(row[metric]), abs=1e-6), (row, metric)


def test_predict_feeds_the_network_what_training_cached_for_files_of_any_size_and_format(tmp_path):
    from layouts import write_image, write_mask
    from PIL import Image

    from unet_transfer.data.contract import network_input
    from unet_transfer.data.imageio import read_grey
    from unet_transfer.data.preprocess import preprocess
    from unet_transfer.data.readers import read_folder

    write_image(tmp_path / "images" / "grey.png", 1, size=(30, 40))
    write_image(tmp_path / "images" / "colour.jpg", 2, size=(90, 70), rgb=True)
    wide = (np.random.default_rng(3).random((20, 50)) * 4095).astype(np.uint16)  # 12-bit data in 16 bits
    Image.fromarray(wide).save(tmp_path / "images" / "deep.tif")
    for name, size in (("grey", (30, 40)), ("colour", (90, 70)), ("deep", (20, 50))):
        write_mask(tmp_path / "masks" / f"{name}.png", size=size)
    samples = read_folder(tmp_path)
    cached = preprocess(samples, 32, progress=False)
    for sample, stored in zip(samples, cached.images, strict=True):
        assert np.array_equal(network_input(read_grey(sample.image), 32), stored), sample.image


def test_an_unreadable_file_is_named_and_the_others_are_still_written(study, recommended, capsys):
    folder = study / "with_corrupt"
    write_folder(folder, kind="xray", n=2, size=32, seed=11)
    (folder / "images" / "broken.png").write_bytes(b"not a png")
    out = study / "corrupt_predicted"
    code = predict.main([str(recommended / "model.pt"), str(folder / "images"), str(out), "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "1 file(s) failed" in err
    assert sorted(p.name for p in out.glob("*_mask.png")) == ["xr_0000_mask.png", "xr_0001_mask.png"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_predicted"] == 2 and summary["failures"][0]["file"].endswith("broken.png")


def test_a_dataset_config_pairs_images_and_masks_for_scoring(study, recommended):
    from layouts import write_image, write_mask

    root = study / "mine"
    for n, size in enumerate(((30, 40), (50, 36))):
        write_image(root / "images" / f"case{n}.png", n, size=size)
        write_mask(root / "masks" / f"case{n}_mask.png", seed=n, size=size)
    out = study / "mine_predicted"
    assert predict.main([str(recommended / "model.pt"), str(root), str(out), "--dataset", "folder",
                         "--dataset-option", "mask_suffix=_mask", "--no-progress"]) == 0
    rows = {row["id"]: row for row in read_csv(out / "per_image.csv")}
    assert {name: (int(row["height"]), int(row["width"])) for name, row in rows.items()} == {
        "case0": (30, 40), "case1": (50, 36)}
    assert cv2.imread(str(out / "case1_mask.png"), cv2.IMREAD_UNCHANGED).shape == (50, 36)


def test_a_bad_checkpoint_is_one_clear_line_and_exit_code_2(study, tmp_path, capsys):
    broken = tmp_path / "model.safetensors"
    broken.write_bytes(b"\x00" * 64)
    write_folder(tmp_path / "new", kind="xray", n=1, size=32, seed=3)  # the inputs are fine: the checkpoint is not
    assert predict.main([str(broken), str(tmp_path / "new" / "images"), str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: checkpoint=") and "model.safetensors" in err and len(err.splitlines()) == 1
