"""Results you can trust after crashes, reruns and bad files: a run returns only numbers it
computed, corrupt state is named and repaired, two processes never train one run twice, bad
settings stop at once with one line, suspicious data is reported."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SYNTHETIC, TINY
from layouts import write_image, write_mask

from unet_transfer.data import splits
from unet_transfer.data.readers import read_folder
from unet_transfer.errors import ConfigError, DatasetError
from unet_transfer.report import NoRunsError, write_report
from unet_transfer.training import identity
from unet_transfer.training.run import run


def write_folder(root: Path, count: int, size: int = 24, empty: bool = False) -> Path:
    """`images/img<N>.png` + `masks/img<N>.png` (the `folder` reader's default layout)."""
    for n in range(count):
        write_image(root / "images" / f"img{n:03d}.png", n, size=(size, size))
        write_mask(root / "masks" / f"img{n:03d}.png", mask=np.zeros((size, size), bool) if empty else None,
                   seed=n, size=(size, size))
    return root


# --- 1. a run trains unless its own result is valid ------------------------------------------


def test_a_second_single_run_trains_instead_of_copying_an_unrelated_one(make_cfg, monkeypatch):
    run(make_cfg(name="outputs/2026-11-27/a"))
    monkeypatch.setenv("UNET_TRANSFER_RUN_TOKEN", "another-invocation")  # `python train.py` again, same day
    second = run(make_cfg(name="outputs/2026-11-27/b"))
    assert "same_as" not in second and second["duration_s"] > 0


def test_resume_false_always_trains_and_a_copy_names_a_run_that_trained(make_cfg):
    first = run(make_cfg("freeze=shallow_to_deep", "k=9", name="sweep/a"))
    copied = run(make_cfg("freeze=deep_to_shallow", "k=9", name="sweep/b"))
    assert copied["same_as"] == "a" and "same_as" not in first
    for name, freeze in (("a", "shallow_to_deep"), ("b", "deep_to_shallow")):
        again = run(make_cfg(f"freeze={freeze}", "k=9", "resume=false", name=f"sweep/{name}"))
        assert "same_as" not in again and again["duration_s"] > 0


def test_a_code_change_makes_a_finished_run_train_again(make_cfg, monkeypatch, caplog):
    cfg = make_cfg()
    first = run(cfg)
    assert run(cfg) == first  # same code, same settings: skipped
    monkeypatch.setattr(identity, "code_digest", lambda: "0123456789abcdef")
    with caplog.at_level(logging.INFO, logger="unet_transfer"):
        again = run(cfg)
    assert again["code_digest"] == "0123456789abcdef" and again["run_key"] != first["run_key"]
    assert "Redoing" in caplog.text and "the code changed" in caplog.text
    assert json.loads((Path(cfg.output_dir) / "metrics.previous.json").read_text()) == first


# --- 2. corrupt state is named and repaired --------------------------------------------------


def test_a_damaged_metrics_json_is_kept_aside_and_the_run_trains_again(make_cfg):
    cfg = make_cfg()
    run(cfg)
    path = Path(cfg.output_dir) / "metrics.json"
    path.write_text('{"dice": 0.7')  # truncated
    metrics = run(cfg)
    assert (path.parent / "metrics.damaged.json").read_text() == '{"dice": 0.7'
    assert json.loads(path.read_text()) == metrics


def test_a_damaged_sibling_result_does_not_stop_a_run(make_cfg, tmp_path):
    (tmp_path / "sweep" / "other").mkdir(parents=True)
    (tmp_path / "sweep" / "other" / "metrics.json").write_bytes(b"\x00garbage")
    assert run(make_cfg(name="sweep/mine"))["n_images"] == 4


@pytest.mark.parametrize("damaged", ["images.npy", "masks.npy", "index.json"])
def test_a_truncated_cache_entry_is_rebuilt_with_a_log_line(make_cfg, tmp_path, caplog, damaged):
    first = run(make_cfg(name="first"))
    entry = Path(first["cache"])
    data = (entry / damaged).read_bytes()
    (entry / damaged).write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        again = run(make_cfg("resume=false", name="second"))
    assert f"cache entry {entry} is damaged" in caplog.text and "rebuilding" in caplog.text
    rebuilt = (entry / damaged).read_bytes()
    if damaged == "index.json":  # it also records when it was made
        rebuilt, data = ({k: v for k, v in json.loads(text).items() if k != "created"} for text in (rebuilt, data))
    assert rebuilt == data and again["dice"] == first["dice"]


def test_a_damaged_splits_json_is_kept_aside_and_the_same_folds_dealt_again(tmp_path, caplog):
    ids = [f"img{i:02d}" for i in range(20)]
    path = tmp_path / "splits.json"
    first = splits.load_or_create(path, ids, 5, 0)
    path.write_text(path.read_text()[:40])
    with caplog.at_level(logging.WARNING):
        assert splits.load_or_create(path, ids, 5, 0) == first
    assert (tmp_path / "splits.json.damaged").exists() and "dealt again from the split seed" in caplog.text


def test_the_report_says_unreadable_when_every_result_is(tmp_path):
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "metrics.json").write_text("{")
    with pytest.raises(NoRunsError, match="unreadable"):
        write_report(tmp_path / "runs")


def test_the_report_flags_runs_of_one_fold_scored_on_other_images(make_cfg, tmp_path):
    for name in ("a", "b"):
        run(make_cfg(f"seed={ord(name)}", name=f"runs/{name}"))
    path = tmp_path / "runs" / "b" / "metrics.json"
    metrics = json.loads(path.read_text())
    path.write_text(json.dumps({**metrics, "folds_digest": "another-split"}))
    text = write_report(tmp_path / "runs")["summary.md"].read_text()
    assert "held out 2 different sets of images" in text


# --- 3. two processes on one study never train a run twice -----------------------------------


def test_two_sweeps_of_one_study_at_once_train_each_run_once_and_keep_whole_logs(tmp_path):
    command = [sys.executable, str(ROOT / "train.py"), "-m", "study=shared", "freeze=shallow_to_deep", "k=1,2",
               "fold=0,1", *TINY, *SYNTHETIC, "logger=csv", "trainer.max_epochs=2", "hydra/launcher=basic",
               f"paths.cache_dir={tmp_path / 'cache'}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("UNET_TRANSFER_RUN_TOKEN", None)
    processes = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs[0][-2000:] + outputs[1][-2000:]
    trained = [line for text in outputs for line in text.splitlines()
               if " Result " in f" {line}" and "results copied" not in line]
    assert len(trained) == 4, "\n".join(trained)  # 4 runs, each trained by exactly one of the two
    for log_file in (tmp_path / "multirun" / "shared").rglob("logs/metrics.csv"):
        assert sum(1 for line in log_file.read_text().splitlines() if line.split(",")[0].isdigit()) >= 2


# --- 4. every bad setting fails fast, in one line ---------------------------------------------


@pytest.mark.parametrize("override,words", [
    ("batch_size=0", "batch_size=0"),
    ("folds=abc", "folds='abc'"),
    ("folds=1", "folds=1"),
    ("dataset.image_size=abc", "dataset.image_size='abc'"),
    ("dataset.image_size=100", "the nearest valid sizes are 96 and 112"),
    ("trainer.max_epochs=-1", "would train without end"),
    ("pretrained=/nowhere/natural.pt", "make pretrain"),
])
def test_bad_settings_stop_before_any_work(make_cfg, tmp_path, override, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        run(make_cfg(override))
    assert not list((tmp_path / "cache").glob("synthetic*"))  # nothing was preprocessed


def test_an_unwritable_cache_folder_is_named(make_cfg, tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ConfigError, match="paths.cache_dir=.*not a folder this run can write"):
        run(make_cfg(f"paths.cache_dir={tmp_path / 'a_file' / 'cache'}"))


def test_an_unreadable_data_folder_is_named(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "data", count=3)

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("unet_transfer.data.readers.common.os.scandir", denied)
    with pytest.raises(DatasetError, match="cannot be read: permission denied.*chmod"):
        read_folder(root)


def test_a_missing_checkpoint_is_found_before_the_training_stack_loads(tmp_path):
    code = f"""
import sys
from unet_transfer.config import compose_config
from unet_transfer.errors import ConfigError
from unet_transfer.training.run import run
cfg = compose_config({[*TINY, *SYNTHETIC, 'pretrained=/nowhere/x.pt', f'output_dir={tmp_path / "run"}',
                      f'paths.cache_dir={tmp_path / "cache"}']!r})
try:
    run(cfg)
except ConfigError as error:
    print("stopped:", error)
print("lightning loaded:", "pytorch_lightning" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=120)
    assert "stopped: pretrained='/nowhere/x.pt': no such file" in result.stdout, result.stderr[-2000:]
    assert "lightning loaded: False" in result.stdout


# --- 5. messages that tell the truth ----------------------------------------------------------


def test_a_root_that_is_a_file_is_called_a_file(tmp_path):
    (tmp_path / "data.zip").write_bytes(b"PK")
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        read_folder(tmp_path / "data.zip")


def test_permission_denied_is_not_called_damaged(tmp_path, monkeypatch):
    from unet_transfer.data import imageio

    root = write_folder(tmp_path / "data", count=1)
    image = next((root / "images").iterdir())

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(image))

    monkeypatch.setattr(imageio.Image, "open", denied)
    with pytest.raises(DatasetError) as error:
        imageio.read_grey(image)
    assert "permission denied" in str(error.value) and "damaged" not in str(error.value)


def test_the_missing_checkpoint_advice_names_a_target_that_exists(make_cfg):
    with pytest.raises(ConfigError) as error:
        run(make_cfg("pretrained=/nowhere/natural.pt"))
    targets = re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), flags=re.M)
    advised = re.findall(r"`make ([a-z-]+)", str(error.value))
    assert advised and all(target in targets for target in advised)


# --- 6. suspicious data is reported, not swallowed --------------------------------------------


def test_empty_masks_orphan_masks_and_tiny_images_are_reported(make_cfg, tmp_path):
    root = write_folder(tmp_path / "data", count=6, size=20, empty=True)
    (root / "masks" / "lost.png").write_bytes((root / "masks" / "img000.png").read_bytes())
    metrics = run(make_cfg("dataset=folder", f"dataset.root={root}", "dataset.image_size=64", "folds=2",
                           name="runs/one"))
    found = " | ".join(metrics["warnings"])
    assert "all 6 masks are empty" in found
    assert "1 mask file(s)" in found and "'lost.png'" in found
    assert "6 of 6 images are far smaller than the training size 64 px" in found
    summary = write_report(tmp_path / "runs")["summary.md"].read_text()
    assert "data (folder): folder: all 6 masks are empty" in summary


# --- 7. the cache tells changed content apart ------------------------------------------------


def test_the_cache_key_follows_content_when_size_and_mtime_are_kept(tmp_path):
    from unet_transfer.data.digests import FileDigests
    from unet_transfer.data.preprocess import fingerprint

    root = write_folder(tmp_path / "data", count=3)
    samples = read_folder(root)
    store = FileDigests(tmp_path / "digests.json")
    key = fingerprint(samples, store, image_size=64)
    image = samples[1].image
    stat, data = os.stat(image), bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other content
    image.write_bytes(bytes(data))
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(image).st_size == stat.st_size and os.stat(image).st_mtime_ns == stat.st_mtime_ns
    assert fingerprint(samples, FileDigests(tmp_path / "digests.json"), image_size=64) != key
