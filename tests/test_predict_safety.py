"""predict never touches what it reads: it refuses an output folder that overlaps its inputs or
masks, never replaces a file it did not write, never predicts masks or its own outputs; a
file it cannot write fails that image only; BUSI-style masks beside their images are merged.

A random width-4 network (32 px) is enough: these tests are about files, not accuracy. `sure`
is the same network made to call every pixel foreground, so scores are known in advance."""

from __future__ import annotations

import csv
import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet_transfer.checkpoint import save_weights
from unet_transfer.data.contract import record
from unet_transfer.inference import predict
from unet_transfer.model import UNet

SHAPE = (30, 40)  # (height, width)


def checkpoint(path: Path, bias: float | None = None, **meta) -> Path:
    torch.manual_seed(0)
    model = UNet(width=4)
    if bias is not None:  # every pixel foreground (or background): a prediction known in advance
        with torch.no_grad():
            model.blocks.dec1.head[0].weight.zero_()
            model.blocks.dec1.head[0].bias.fill_(bias)
    return save_weights(model, path, {"width": 4}, {"dataset": "busi", **meta, **record(32)})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")


@pytest.fixture(scope="module")
def sure(tmp_path_factory) -> Path:
    return checkpoint(tmp_path_factory.mktemp("sure") / "model.pt", bias=10.0)


def image(path: Path, seed: int = 0, shape=SHAPE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def mask(path: Path, box: tuple[int, int, int, int], shape=SHAPE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros(shape, dtype=np.uint8)
    top, bottom, left, right = box
    pixels[top:bottom, left:right] = 255
    Image.fromarray(pixels).save(path)
    return path


def busi_class_folder(folder: Path) -> Path:
    """Two BUSI images with their masks beside them; 'benign (2)' has a second lesion (_mask_1)."""
    for n in (1, 2):
        image(folder / f"benign ({n}).png", seed=n)
        mask(folder / f"benign ({n})_mask.png", (5, 15, 5, 15))
    mask(folder / "benign (2)_mask_1.png", (20, 25, 20, 35))
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def rows(out: Path) -> dict[str, dict]:
    with open(out / "per_image.csv", newline="") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


def run(*args) -> int:
    return predict.main([*map(str, args), "--no-progress"])


# --- 1. the output folder never overlaps what predict reads --------------------------------------


@pytest.mark.parametrize("where", ["images", "masks", "inside images", "parent of images", "beside the file"])
def test_an_output_folder_that_overlaps_the_inputs_is_refused_before_anything_is_loaded(tmp_path, capsys, where):
    images, masks = tmp_path / "data" / "images", tmp_path / "data" / "masks"
    image(images / "a.png")
    mask(images / "b_mask.png", (0, 5, 0, 5))  # a mask named like predict's output, which README accepts
    mask(masks / "a_mask.png", (0, 5, 0, 5))
    source = images / "a.png" if where == "beside the file" else images
    out = {"images": images, "masks": masks, "inside images": images / "predicted",
           "parent of images": tmp_path / "data", "beside the file": images}[where]
    before = snapshot(images), snapshot(masks)
    missing_checkpoint = tmp_path / "nothing.pt"  # never loaded: the refusal comes first
    assert run(missing_checkpoint, source, out, "--masks", masks) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("Error: OUT=") and "nothing.pt" not in err, err
    assert (snapshot(images), snapshot(masks)) == before
    assert not (images / "predicted").exists()


def test_a_busi_folder_as_its_own_output_is_refused_and_nothing_changes(tmp_path, ckpt, capsys):
    folder = busi_class_folder(tmp_path / "benign")
    before = snapshot(folder)
    assert run(ckpt, folder, folder) == 2
    assert "Error: OUT=" in capsys.readouterr().err
    assert snapshot(folder) == before


def test_an_existing_file_predict_did_not_write_is_never_replaced(tmp_path, ckpt, capsys):
    image(tmp_path / "images" / "a.png")
    out = tmp_path / "out"
    theirs = mask(out / "a_mask.png", (0, 5, 0, 5))  # somebody's reference mask, already in OUT
    before = theirs.read_bytes()
    assert run(ckpt, tmp_path / "images", out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a_mask.png" in err and "predict did not write" in err, err
    assert theirs.read_bytes() == before and not (out / "a_overlay.png").exists()


def test_predict_replaces_its_own_files_on_a_second_run(tmp_path, ckpt):
    image(tmp_path / "images" / "a.png")
    out = tmp_path / "out"
    assert run(ckpt, tmp_path / "images", out) == 0
    first = (out / "a_mask.png").stat().st_mtime_ns
    assert run(ckpt, tmp_path / "images", out, "--probabilities", "npy") == 0
    assert (out / "a_mask.png").stat().st_mtime_ns >= first and (out / "a_prob.npy").is_file()
    written = set(json.loads((out / predict.MANIFEST).read_text())["files"])
    assert {"a_mask.png", "a_overlay.png", "a_prob.npy", "summary.json", "summary.md"} <= written


def test_predicts_own_outputs_and_masks_beside_their_images_are_not_predicted(tmp_path, ckpt, capsys):
    folder = busi_class_folder(tmp_path / "benign")
    image(folder / "benign (1)_overlay.png", seed=9)  # an earlier predict's output, copied here
    out = tmp_path / "out"
    assert run(ckpt, folder, out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_predicted"] == 2, summary
    assert sorted(p.name for p in out.glob("*_mask*.png")) == ["benign (1)_mask.png", "benign (2)_mask.png"]
    assert "Skipped 4 file(s)" in capsys.readouterr().out


def test_a_former_output_folder_is_not_read_as_images(tmp_path, ckpt):
    image(tmp_path / "images" / "a.png")
    first = tmp_path / "first"
    assert run(ckpt, tmp_path / "images", first) == 0
    second = tmp_path / "second"
    assert run(ckpt, first, second) == 2  # nothing but predict's own files there: no image to predict
    assert not second.exists() or not list(second.glob("*_mask_mask.png"))


# --- 7. output errors: one line before work, or per image ----------------------------------------


def test_an_output_path_that_is_a_file_is_one_line_before_work(tmp_path, capsys):
    image(tmp_path / "images" / "a.png")
    (tmp_path / "out").write_text("not a folder")
    assert run(tmp_path / "nothing.pt", tmp_path / "images", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a file" in err and "nothing.pt" not in err, err


def test_an_unwritable_output_folder_is_one_line_before_work(tmp_path, capsys, monkeypatch):
    image(tmp_path / "images" / "a.png")
    out = tmp_path / "locked"
    out.mkdir()
    real_access = predict.os.access
    monkeypatch.setattr(predict.os, "access", lambda path, mode: False if Path(path) == out else real_access(path, mode))
    assert run(tmp_path / "nothing.pt", tmp_path / "images", out / "predicted") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be written" in err and str(out) in err, err


def test_a_full_disk_fails_that_image_only(tmp_path, ckpt, capsys, monkeypatch):
    for n in range(3):
        image(tmp_path / "images" / f"im{n}.png", seed=n)
    real = predict.write_mask

    def full_for_im1(out, name, pixels):
        if name == "im1":
            raise OSError(errno.ENOSPC, "No space left on device", str(out / f"{name}_mask.png"))
        return real(out, name, pixels)

    monkeypatch.setattr(predict, "write_mask", full_for_im1)
    out = tmp_path / "out"
    assert run(ckpt, tmp_path / "images", out, "--batch-size", "2") == 1
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if "im1" in line and line.startswith("Error:")]
    assert len(lines) == 1 and "No space left on device" in lines[0], captured.err
    assert "1 file(s) failed" in captured.err
    assert sorted(p.name for p in out.glob("*_mask.png")) == ["im0_mask.png", "im2_mask.png"]
    assert json.loads((out / "summary.json").read_text())["failures"][0]["file"].endswith("im1.png")


def test_a_name_too_long_for_the_output_files_fails_that_image_only(tmp_path, ckpt, capsys):
    long = "x" * 240  # the image's own name fits; '<stem>_overlay.png' and the temporary file do not
    image(tmp_path / "images" / f"{long}.png")
    image(tmp_path / "images" / "short.png", seed=1)
    out = tmp_path / "out"
    assert run(ckpt, tmp_path / "images", out) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "1 file(s) failed" in err and long in err
    assert (out / "short_mask.png").is_file()


# --- 17. --masks with BUSI layouts -------------------------------------------------------------


def test_extra_lesion_masks_beside_the_images_are_merged(tmp_path, sure):
    folder = busi_class_folder(tmp_path / "benign")
    out = tmp_path / "out"
    assert run(sure, folder, out, "--masks", folder) == 0
    scored = rows(out)
    assert set(scored) == {"benign (1)", "benign (2)"}
    # All-foreground prediction: Dice = 2|T| / (|T| + H*W); 'benign (2)' is scored against both lesions.
    pixels = SHAPE[0] * SHAPE[1]
    for name, truth in (("benign (1)", 100), ("benign (2)", 100 + 75)):
        assert float(scored[name]["dice"]) == pytest.approx(2 * truth / (truth + pixels)), name


def test_a_copy_of_a_busi_folder_as_masks_never_pairs_an_image_with_an_image(tmp_path, sure):
    images = busi_class_folder(tmp_path / "benign")
    masks = busi_class_folder(tmp_path / "copy")
    out = tmp_path / "out"
    assert run(sure, images, out, "--masks", masks) == 0
    scored = rows(out)
    assert float(scored["benign (2)"]["dice"]) == pytest.approx(2 * 175 / (175 + SHAPE[0] * SHAPE[1]))


def test_a_soft_mask_names_predicts_own_option(tmp_path, ckpt, capsys):
    image(tmp_path / "images" / "a.png")
    soft = np.random.default_rng(0).integers(0, 256, SHAPE, dtype=np.uint8)
    (tmp_path / "masks").mkdir()
    Image.fromarray(soft).save(tmp_path / "masks" / "a_mask.png")
    assert run(ckpt, tmp_path / "images", tmp_path / "out", "--masks", tmp_path / "masks") == 1
    err = capsys.readouterr().err
    assert "--mask-threshold" in err and "dataset.mask_threshold" not in err, err


def card_of(folder: Path, names: list[str], recipe_key: str = "k1") -> dict:
    """A model card that lists these images of `folder` as trained on, by what the network saw."""
    from unet_transfer.data.contract import input_digest, network_input
    from unet_transfer.data.imageio import read_grey

    digests = [input_digest(network_input(read_grey(folder / f"{name}.png"), 32)) for name in names]
    return {"recipe_key": recipe_key, "data": {"dataset": "busi", "n_images": len(names), "content": "busi-abc",
                                               "image_digests": sorted(digests)}}


def test_scoring_on_the_images_the_network_was_trained_on_is_warned(tmp_path, capsys):
    folder = busi_class_folder(tmp_path / "benign")
    ckpt = checkpoint(tmp_path / "recommended" / "model.pt", recipe_key="k1")
    (tmp_path / "recommended" / "card.json").write_text(json.dumps(card_of(folder, ["benign (1)"])))
    assert run(ckpt, folder, tmp_path / "out", "--masks", folder) == 0
    out = capsys.readouterr().out
    assert "Warning: 1 of the 2 scored images are images this network was trained on" in out, out  # a partial overlap
    assert "benign (1)" in out and "benign (2)" not in out.split("Warning:")[1].splitlines()[0]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert any("trained on" in warning for warning in summary["warnings"])


def test_new_images_with_the_names_it_trained_on_are_not_warned_about(tmp_path, capsys):
    trained = busi_class_folder(tmp_path / "trained")
    ckpt = checkpoint(tmp_path / "recommended" / "model.pt", recipe_key="k1")
    (tmp_path / "recommended" / "card.json").write_text(json.dumps(card_of(trained, ["benign (1)", "benign (2)"])))
    new = tmp_path / "new"
    for n in (1, 2):  # the same names, other pixels (as a second simulated set has)
        image(new / f"benign ({n}).png", seed=10 + n)
        mask(new / f"benign ({n})_mask.png", (5, 15, 5, 15))
    assert run(ckpt, new, tmp_path / "out", "--masks", new) == 0
    assert "Warning:" not in capsys.readouterr().out


def test_new_images_are_not_warned_about(tmp_path, ckpt, capsys):
    folder = busi_class_folder(tmp_path / "benign")
    assert run(ckpt, folder, tmp_path / "out", "--masks", folder) == 0
    assert "Warning:" not in capsys.readouterr().out


# --- 6, 12. what predict reads, and what it says when it cannot --------------------------------


def exif_rotated_jpeg(path: Path, stored: np.ndarray) -> Path:
    """A JPEG whose pixels are stored as `stored` and tagged 'rotate 90 degrees clockwise to show'."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, quality=100, exif=exif)
    return path


def test_an_exif_rotated_jpeg_is_predicted_as_it_is_shown(tmp_path, sure):
    stored = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (20, 1))  # 40 wide, 20 high as stored
    (tmp_path / "images").mkdir()
    exif_rotated_jpeg(tmp_path / "images" / "a.jpg", stored)
    mask(tmp_path / "masks" / "a_mask.png", (0, 10, 0, 20), shape=(40, 20))  # drawn on the shown, 20x40 picture
    out = tmp_path / "out"
    assert run(sure, tmp_path / "images", out, "--masks", tmp_path / "masks") == 0
    assert np.array(Image.open(out / "a_mask.png")).shape == (40, 20)
    assert "a" in rows(out)


def test_an_unreadable_image_is_skipped_in_predicts_words(tmp_path, ckpt, capsys):
    image(tmp_path / "images" / "good.png")
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    assert run(ckpt, tmp_path / "images", tmp_path / "out") == 1
    line = next(line for line in capsys.readouterr().err.splitlines() if "broken.png" in line)
    assert "together with its mask" not in line and "skipped" in line, line


def test_an_image_over_the_pixel_limit_says_so_in_predict(tmp_path, ckpt, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 30x40 = 1200 > 2 x 100: Pillow refuses it
    image(tmp_path / "images" / "big.png")
    assert run(ckpt, tmp_path / "images", tmp_path / "out") == 1
    line = next(line for line in capsys.readouterr().err.splitlines() if "big.png" in line)
    assert "pixels" in line and "UNET_TRANSFER_MAX_IMAGE_PIXELS" in line and "damaged" not in line, line
