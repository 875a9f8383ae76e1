"""The sample sheet is a real, non-trivial PNG with a row per simulator and per real set."""

from __future__ import annotations

import numpy as np
from PIL import Image

from unet_transfer.data.arrays import SegmentationSet
from unet_transfer.simulate.sheet import write_sample_sheet


def test_sheet_writes_png(tmp_path):
    out = write_sample_sheet(tmp_path / "sheet.png", size=32, seed=0, n_per_kind=2)
    assert out.exists() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as image:
        grey = np.asarray(image.convert("L"), dtype=float)
    assert grey.std() > 20  # not blank
    assert grey.shape[0] > grey.shape[1]  # four rows of two


def test_sheet_adds_real_rows(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)
    masks = np.zeros((3, 32, 32), dtype=bool)
    masks[:, 8:20, 10:22] = True
    real = {"my scans": SegmentationSet(images, masks, ("a", "b", "c"))}
    plain = write_sample_sheet(tmp_path / "plain.png", size=32, n_per_kind=2)
    both = write_sample_sheet(tmp_path / "nested" / "both.png", size=32, n_per_kind=2, real=real)
    with Image.open(plain) as a, Image.open(both) as b:
        assert b.size[1] > a.size[1]  # one more row
