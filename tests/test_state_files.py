"""State files kept between runs (splits.json, file_digests.json) with the right JSON syntax
but the wrong shape: set aside or rebuilt like a truncated file, never trusted, never a traceback."""

import json
import os

import pytest

from unet_transfer.data.digests import FileDigests, file_digest, version_of
from unet_transfer.data.splits import kfold, load_or_create

IDS = [f"img{i:02d}" for i in range(12)]
LABELS = ["a" if i % 3 else "b" for i in range(12)]


def fewer_folds(held_out):
    return [*held_out[:3], held_out[3] + held_out[4]]


def twice_the_same(held_out):
    return [held_out[0], held_out[0], *held_out[2:]]


def an_unknown_id(held_out):
    return [[*held_out[0], "ghost"], *held_out[1:]]


def one_id_missing(held_out):
    return [held_out[0][1:], *held_out[1:]]


@pytest.mark.parametrize("damage", [
    fewer_folds, twice_the_same, an_unknown_id, one_id_missing,
    lambda held_out: "img00,img01",  # held_out as a string
    lambda held_out: [",".join(fold) for fold in held_out],  # folds as strings
    lambda held_out: [[1, 2], *held_out[1:]],  # ids that are not strings
])
def test_a_splits_file_of_the_wrong_shape_is_set_aside_and_the_folds_dealt_again(tmp_path, damage):
    path = tmp_path / "splits.json"
    right = load_or_create(path, IDS, 5, 0, LABELS)
    stored = json.loads(path.read_text())
    stored["5-fold seed 0"]["held_out"] = damage(right)
    path.write_text(json.dumps(stored))
    assert load_or_create(path, IDS, 5, 0, LABELS) == right == kfold(IDS, 5, 0, LABELS)
    assert (tmp_path / "splits.json.damaged").exists()
    assert json.loads(path.read_text())["5-fold seed 0"]["held_out"] == right


def test_a_splits_entry_whose_fold_count_disagrees_with_its_name_is_not_trusted(tmp_path):
    path = tmp_path / "splits.json"
    three = kfold(IDS, 3, 0, LABELS)
    path.write_text(json.dumps({"5-fold seed 0": {"folds": 3, "seed": 0, "ids": IDS, "held_out": three}}))
    assert load_or_create(path, IDS, 5, 0, LABELS) == kfold(IDS, 5, 0, LABELS)


def test_a_splits_file_of_another_dataset_is_dealt_again_for_this_one(tmp_path):
    path = tmp_path / "splits.json"
    load_or_create(path, IDS[:10], 5, 0, LABELS[:10])
    assert load_or_create(path, IDS, 5, 0, LABELS) == kfold(IDS, 5, 0, LABELS)


def image(tmp_path, name="a.png", content=b"pixels"):
    path = tmp_path / name
    path.write_bytes(content)
    return path, os.stat(path)


@pytest.mark.parametrize("stored", [
    [],  # a list, not a dict
    "text",
    "short entry",  # the entry of the file: its version only, no digest
    "number entry",
    "wrong types",
])
def test_a_digest_store_of_the_wrong_shape_costs_hashing_again_not_a_traceback(tmp_path, stored):
    path, stat = image(tmp_path)
    name = str(path.resolve())
    layouts = {"short entry": {name: version_of(stat)}, "number entry": {name: 7},
               "wrong types": {name: [*map(str, version_of(stat)), 5]}}
    store = tmp_path / "file_digests.json"
    store.write_text(json.dumps(layouts.get(stored, stored) if isinstance(stored, str) else stored))
    assert FileDigests(store).digests([(path, stat)]) == [file_digest(path)]
    written = json.loads(store.read_text())
    assert written == {name: [*version_of(stat), file_digest(path)]}
    assert FileDigests(store).digests([(path, stat)]) == [file_digest(path)]


def test_good_digest_entries_survive_beside_bad_ones(tmp_path):
    path, stat = image(tmp_path)
    store = tmp_path / "file_digests.json"
    name = str(path.resolve())
    store.write_text(json.dumps({name: [*version_of(stat), "kept"], "/elsewhere/b.png": [1, 2]}))
    assert FileDigests(store).digests([(path, stat)]) == ["kept"]  # not hashed again: the entry is fine
