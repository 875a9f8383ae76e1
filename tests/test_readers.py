"""Every dataset layout is found, paired and sorted; every bad layout fails with the fix."""

from __future__ import annotations

import warnings

import pytest
from layouts import (
    write_busi,
    write_ecssd,
    write_folder,
    write_image,
    write_mask,
    write_montgomery,
    write_udiat,
    write_xpie,
)

from unet_transfer.data.readers import (
    DATASETS,
    RawSample,
    read_busi,
    read_dataset,
    read_ecssd,
    read_folder,
    read_montgomery,
    read_udiat,
    read_xpie,
)
from unet_transfer.errors import ConfigError, DatasetError


def ids(samples):
    return [s.id for s in samples]


# --- each layout -------------------------------------------------------------------------------


def test_busi_excludes_normal_by_default(tmp_path):
    samples = read_busi(write_busi(tmp_path))
    assert ids(samples) == sorted(ids(samples))
    assert ids(samples) == [
        "benign (1)", "benign (2)", "benign (3)", "malignant (1)", "malignant (2)"
    ]
    assert {s.label for s in samples} == {"benign", "malignant"}
    assert all(isinstance(s, RawSample) for s in samples)


def test_busi_collects_every_mask_of_an_image(tmp_path):
    samples = {s.id: s for s in read_busi(write_busi(tmp_path))}
    two = samples["benign (2)"]
    assert [p.name for p in two.masks] == ["benign (2)_mask.png", "benign (2)_mask_1.png"]
    assert two.image.name == "benign (2).png"
    assert all(len(s.masks) == 1 for k, s in samples.items() if k != "benign (2)")


def test_busi_include_normal_and_root_forms(tmp_path):
    write_busi(tmp_path)
    with_normal = read_busi(tmp_path, include_normal=True)
    assert len(with_normal) == 7
    assert [s.label for s in with_normal].count("normal") == 2
    inner = read_busi(tmp_path / "Dataset_BUSI_with_GT", include_normal=True)
    assert inner == with_normal
    only = read_busi(tmp_path, classes=("malignant",))
    assert ids(only) == ["malignant (1)", "malignant (2)"]


def test_udiat(tmp_path):
    samples = read_udiat(write_udiat(tmp_path))
    assert ids(samples) == ["000001", "000002", "000003"]
    assert samples[0].masks == (tmp_path / "GT" / "000001.png",)
    assert samples[0].label is None


def test_montgomery_left_and_right(tmp_path):
    write_montgomery(tmp_path)
    samples = read_montgomery(tmp_path)  # the parent of MontgomerySet works too
    assert ids(samples) == ["MCUCXR_0001_1", "MCUCXR_0002_0", "MCUCXR_0003_1"]
    left, right = samples[0].masks
    assert left.parent.name == "leftMask" and right.parent.name == "rightMask"
    assert read_montgomery(tmp_path / "MontgomerySet") == samples


def test_ecssd_jpg_with_png_masks(tmp_path):
    samples = read_ecssd(write_ecssd(tmp_path))
    assert ids(samples) == ["0001", "0002", "0003"]
    assert samples[0].image.suffix == ".jpg" and samples[0].masks[0].suffix == ".png"


def test_xpie_default_and_custom_folders(tmp_path):
    write_xpie(tmp_path)
    assert ids(read_xpie(tmp_path)) == ["00001", "00002", "00003"]
    (tmp_path / "XPIE" / "img").rename(tmp_path / "XPIE" / "images")
    assert len(read_xpie(tmp_path / "XPIE", image_dir="images")) == 3


def test_folder_with_suffix_and_mixed_extensions(tmp_path):
    samples = read_folder(write_folder(tmp_path), mask_suffix="_mask")
    assert ids(samples) == ["case1", "case2", "case3"]
    assert {s.image.suffix for s in samples} == {".png", ".jpg", ".bmp"}
    assert samples[0].masks[0].name == "case1_mask.png"


def test_folder_images_and_masks_in_one_folder(tmp_path):
    for n in (1, 2):
        write_image(tmp_path / "data" / f"x{n}.png", n)
        write_mask(tmp_path / "data" / f"x{n}_mask.png", seed=n)
    samples = read_folder(tmp_path, images="data", masks="data", mask_suffix="_mask")
    assert ids(samples) == ["x1", "x2"]
    with pytest.raises(ConfigError, match="mask_suffix"):
        read_folder(tmp_path, images="data", masks="data")


def test_extensions_case_insensitive_hidden_and_other_files_ignored(tmp_path):
    write_udiat(tmp_path, count=2)
    write_image(tmp_path / "original" / "000009.PNG", 9)
    write_mask(tmp_path / "GT" / "000009.Png", seed=9)
    write_image(tmp_path / "original" / ".000010.png", 10)  # hidden: ignored
    (tmp_path / "original" / "Thumbs.db").write_bytes(b"x")
    (tmp_path / "original" / "notes.txt").write_text("x")
    assert ids(read_udiat(tmp_path)) == ["000001", "000002", "000009"]


def test_registry_and_read_dataset(tmp_path):
    assert set(DATASETS) >= {"busi", "udiat", "montgomery", "ecssd", "xpie", "folder"}
    for reader, description, source in DATASETS.values():
        assert callable(reader) and description and source
    assert len(read_dataset("ecssd", write_ecssd(tmp_path))) == 3
    with pytest.raises(ConfigError, match="busi"):
        read_dataset("nope", tmp_path)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, where, layout",
    [
        ("busi", "kaggle", "benign (1)_mask.png"),
        ("udiat", "m.yap", "GT/000001.png"),
        ("montgomery", "nlm.nih.gov", "leftMask"),
        ("ecssd", "cuhk", "ground_truth_mask"),
        ("xpie", "cvteam", "gt/"),
        ("folder", "images", "masks"),
    ],
)
def test_missing_root_says_where_to_get_and_put(tmp_path, name, where, layout):
    root = tmp_path / "not here"
    with pytest.raises(DatasetError) as e:
        read_dataset(name, root)
    message = str(e.value)
    assert str(root) in message and where in message.lower() and layout in message
    assert "dataset.root" in message


def test_busi_root_without_class_folders(tmp_path):
    (tmp_path / "other").mkdir()
    with pytest.raises(DatasetError, match="Dataset_BUSI_with_GT"):
        read_busi(tmp_path)


def test_missing_subfolder_names_it_and_the_setting(tmp_path):
    write_udiat(tmp_path)
    (tmp_path / "GT").rename(tmp_path / "masks")
    with pytest.raises(DatasetError) as e:
        read_udiat(tmp_path)
    assert "'GT'" in str(e.value) and "dataset.mask_dir" in str(e.value) and "masks" in str(e.value)


def test_image_without_mask_errors_naming_it(tmp_path):
    write_udiat(tmp_path)
    (tmp_path / "GT" / "000002.png").unlink()
    with pytest.raises(DatasetError) as e:
        read_udiat(tmp_path)
    assert "000002.png" in str(e.value) and "on_missing_mask=skip" in str(e.value)


def test_image_without_mask_skipped_with_one_warning(tmp_path):
    write_folder(tmp_path, count=4, mask_suffix="")
    (tmp_path / "masks" / "case2.png").unlink()
    (tmp_path / "masks" / "case3.png").unlink()
    with pytest.warns(UserWarning) as record:
        samples = read_folder(tmp_path, on_missing_mask="skip")
    assert ids(samples) == ["case1", "case4"]
    assert len(record) == 1
    assert "case2" in str(record[0].message) and "case3" in str(record[0].message)


def test_busi_image_without_mask_and_skip(tmp_path):
    write_busi(tmp_path)
    (tmp_path / "Dataset_BUSI_with_GT" / "malignant" / "malignant (1)_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"malignant \(1\)\.png"):
        read_busi(tmp_path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        samples = read_busi(tmp_path, on_missing_mask="skip")
    assert "malignant (1)" not in ids(samples) and len(record) == 1


def test_montgomery_needs_both_lung_masks(tmp_path):
    write_montgomery(tmp_path)
    (tmp_path / "MontgomerySet/ManualMask/rightMask/MCUCXR_0002_0.png").unlink()
    with pytest.raises(DatasetError, match="MCUCXR_0002_0.png"):
        read_montgomery(tmp_path)


def test_empty_dataset_names_folder_and_expectation(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError) as e:
        read_folder(tmp_path)
    message = str(e.value)
    assert str(tmp_path / "images") in message and "no image/mask pairs" in message
    assert "<name>" in message


def test_empty_busi(tmp_path):
    for cls in ("benign", "malignant"):
        (tmp_path / cls).mkdir()
    with pytest.raises(DatasetError, match="no image/mask pairs"):
        read_busi(tmp_path)


def test_duplicate_ids(tmp_path):
    write_folder(tmp_path, count=1, mask_suffix="")
    write_image(tmp_path / "images" / "case1.tif", 5)  # same stem as case1.jpg/.png
    with pytest.raises(DatasetError) as e:
        read_folder(tmp_path)
    assert "case1" in str(e.value) and "rename" in str(e.value)


def test_ambiguous_masks(tmp_path):
    write_folder(tmp_path, count=1, mask_suffix="")
    write_mask(tmp_path / "masks" / "case1.bmp", seed=3)
    with pytest.raises(DatasetError, match="case1.bmp"):
        read_folder(tmp_path)


def test_bad_on_missing_mask_value(tmp_path):
    write_folder(tmp_path, count=1)
    with pytest.raises(ConfigError, match="skip"):
        read_folder(tmp_path, mask_suffix="_mask", on_missing_mask="ignore")
