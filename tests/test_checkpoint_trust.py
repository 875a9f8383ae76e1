"""A checkpoint is untrusted input: every recorded setting and every tensor is checked before
anything is built from it, and a bad one is one line naming the file (exit code 2 for commands).
Also: non-finite weights are refused, export's self-check fails on NaN, and files written
atomically get the mode a plain open() would give."""

from __future__ import annotations

import json
import os
import stat
import struct

import numpy as np
import pytest
import torch

from unet_transfer.checkpoint import load_pretrained, read_checkpoint, save_weights
from unet_transfer.data.contract import record
from unet_transfer.errors import ConfigError
from unet_transfer.inference import export, predict
from unet_transfer.inference.network import load_network
from unet_transfer.model import UNet

TARGET = {"_target_": "unet_transfer.model.UNet"}


def saved(path, settings=None, meta=None, model=None):
    torch.manual_seed(0)
    return save_weights(model or UNet(width=4), path, {**TARGET, "width": 4, **(settings or {})},
                        record(32) if meta is None else meta)


def one_line(error: pytest.ExceptionInfo, path) -> str:
    text = str(error.value)
    assert len(text.splitlines()) == 1 and path.name in text
    return text


def images(tmp_path):
    """An input folder apart from the output folder (predict refuses one inside the other)."""
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    return folder


def loaders(path):
    """Both ways a checkpoint is read: predict/export (`checkpoint=`) and fine-tuning (`pretrained=`)."""
    return (lambda: load_network(path, "cpu"), lambda: load_pretrained(UNet(width=4), path))


@pytest.fixture
def no_big_unet(monkeypatch):
    """Building a U-Net (other than on the meta device, which allocates nothing) from settings that
    no tensor of the checkpoint supports is a test failure."""
    real = UNet.__init__

    def guarded(self, *args, levels=4, width=64, **kwargs):
        if (levels > 6 or width > 64) and torch.get_default_device().type != "meta":
            pytest.fail(f"a UNet(levels={levels}, width={width}) was built from an unchecked checkpoint")
        real(self, *args, levels=levels, width=width, **kwargs)

    monkeypatch.setattr(UNet, "__init__", guarded)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_levels_40_in_the_metadata_is_refused_before_any_network_is_built(tmp_path, no_big_unet, suffix, capsys):
    path = saved(tmp_path / f"model{suffix}", {"levels": 40})
    with pytest.raises(ConfigError) as error:
        load_network(path, "cpu")
    assert "levels=40" in one_line(error, path)
    assert predict.main([str(path), str(images(tmp_path)), str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "levels=40" in err
    assert export.main([str(path), str(tmp_path / "exported")]) == 2
    assert not (tmp_path / "exported").exists()


@pytest.mark.parametrize("settings, named", [
    ({"width": 10**9}, "width"),
    ({"width": "4"}, "width"),
    ({"width": 4.0}, "width"),
    ({"levels": True}, "levels"),
    ({"levels": 3}, "levels"),
    ({"in_channels": 0}, "in_channels"),
    ({"dropout": 2}, "dropout"),
    ({"dropout": "half"}, "dropout"),
    ({"dropout_at": "bottleneck"}, "dropout_at"),
    ({"extra_conv": "yes"}, "extra_conv"),
    ({"norm": "layer"}, "norm"),
    ({"colour": 3}, "colour"),
])
def test_every_model_setting_is_checked_against_the_rules_and_the_tensors(tmp_path, no_big_unet, settings, named):
    path = saved(tmp_path / "model.safetensors", settings)
    with pytest.raises(ConfigError) as error:
        load_network(path, "cpu")
    assert named in one_line(error, path)


@pytest.mark.parametrize("meta, named", [
    ({"image_size": 100}, "image_size=100"),
    ({"image_size": 1e6}, "image_size"),
    ({"image_size": 2**20}, "image_size"),
    ({"image_size": "32"}, "image_size"),
    ({"image_size": True}, "image_size"),
    ({"threshold": -5}, "threshold=-5"),
    ({"threshold": 1}, "threshold=1"),
    ({"threshold": float("nan")}, "threshold=nan"),
    ({"threshold": "0.5"}, "threshold"),
    ({"preprocessing": "grey"}, "preprocessing"),
])
def test_the_recorded_image_size_threshold_and_rule_are_checked(tmp_path, meta, named):
    path = saved(tmp_path / "model.pt", meta={**record(32), **meta})
    with pytest.raises(ConfigError) as error:
        load_network(path, "cpu")
    assert named in one_line(error, path)


def relabel(path, key: str, dtype: str) -> None:
    """Rewrite the safetensors header so that tensor `key` claims `dtype` (same bytes, same offsets)."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    header[key]["dtype"] = dtype
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= length
    path.write_bytes(data[:8] + text.ljust(length) + data[8 + length:])


def test_tensors_relabelled_as_integers_in_the_header_are_refused(tmp_path):
    path = saved(tmp_path / "model.safetensors")
    relabel(path, "blocks.enc1.0.weight", "I32")
    assert read_checkpoint(path).state["blocks.enc1.0.weight"].dtype == torch.int32  # the forgery reads back
    for load in loaders(path):
        with pytest.raises(ConfigError) as error:
            load()
        assert "'blocks.enc1.0.weight'" in one_line(error, path) and "int32" in str(error.value)


def test_a_checkpoint_whose_records_or_values_are_not_what_they_claim_is_one_line(tmp_path, capsys):
    torch.save({"model": "abc"}, tmp_path / "abc.pt")
    state = UNet(width=4).state_dict()
    torch.save({"state_dict": {**state, "blocks.enc1.0.bias": [1, 2]}}, tmp_path / "list.pt")
    torch.save({"state_dict": "weights", "model": {}}, tmp_path / "text.pt")
    torch.save({"state_dict": state, "model": ["width", 4], "meta": record(32)}, tmp_path / "model_list.pt")
    for name in ("abc.pt", "list.pt", "text.pt", "model_list.pt"):
        path = tmp_path / name
        for load in loaders(path):
            with pytest.raises(ConfigError) as error:
                load()
            one_line(error, path)
        assert predict.main([str(path), str(images(tmp_path)), str(tmp_path / "out"), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and name in err


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_pretrained_weights_that_are_not_finite_are_refused_naming_the_tensor(tmp_path, bad):
    model = UNet(width=4)
    with torch.no_grad():
        model.blocks["dec2"].convs[0].weight[0, 0, 0, 0] = bad
    path = saved(tmp_path / "model.pt", model=model)
    for target in (path, path.with_suffix(".safetensors")):
        with pytest.raises(ConfigError) as error:
            load_pretrained(UNet(width=4), target)
        text = one_line(error, target)
        assert "'blocks.dec2.convs.0.weight'" in text and ("NaN" in text or "inf" in text)
        with pytest.raises(ConfigError, match=r"blocks\.dec2\.convs\.0\.weight"):
            load_network(target, "cpu")


def test_non_finite_pretrained_weights_stop_a_run_before_training(make_cfg, tmp_path, monkeypatch):
    from unet_transfer.training import build as build_module

    model = UNet(width=4)
    with torch.no_grad():
        model.blocks["enc1"][0].bias[0] = float("nan")
    path = saved(tmp_path / "nan.pt", model=model)
    monkeypatch.setattr(build_module, "build_datamodule", lambda *a, **k: pytest.fail("data prepared first"))
    with pytest.raises(ConfigError, match=r"nan\.pt.*'blocks\.enc1\.0\.bias'"):
        build_module.build(make_cfg(f"pretrained={path}"))


def test_a_sound_checkpoint_still_loads(tmp_path):
    path = saved(tmp_path / "model.pt", {"dropout_at": ["bottleneck"], "norm": "batch"},
                 model=UNet(width=4, norm="batch"))
    for target in (path, path.with_suffix(".safetensors")):
        network = load_network(target, "cpu")
        assert network.image_size == 32 and network.threshold == 0.5 and not network.model.training
        assert network.probabilities(torch.rand(2, 1, 32, 32)).shape == (2, 1, 32, 32)


def test_export_fails_with_exit_code_1_when_the_runtime_gives_nan(tmp_path, monkeypatch, capsys):
    path = saved(tmp_path / "model.pt")
    real_load = torch.jit.load

    def nan_runtime(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        return lambda batch: loaded(batch) * torch.tensor(float("nan"))

    monkeypatch.setattr(torch.jit, "load", nan_runtime)
    assert export.main([str(path), str(tmp_path / "out"), "--format", "torchscript"]) == 1
    out = capsys.readouterr().out
    assert "nan" in out and "NOT within" in out


def test_written_files_and_folders_get_the_mode_of_the_umask(tmp_path):
    from unet_transfer.data.arrays import SegmentationSet
    from unet_transfer.data.cache import save_set

    previous = os.umask(0o027)
    try:
        save_weights(UNet(width=4), tmp_path / "model.pt", {"width": 4})
        data = SegmentationSet(np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8), bool), ("a", "b"))
        save_set(tmp_path / "cache" / "entry", data, {"k": 1})
    finally:
        os.umask(previous)
    modes = {path.relative_to(tmp_path).as_posix(): stat.S_IMODE(path.stat().st_mode) for path in tmp_path.rglob("*")}
    assert modes == {"model.pt": 0o640, "model.safetensors": 0o640, "cache": 0o750, "cache/entry": 0o750,
                     "cache/entry/images.npy": 0o640, "cache/entry/masks.npy": 0o640,
                     "cache/entry/index.json": 0o640}


def test_every_unet_argument_has_a_checkpoint_rule():
    import inspect

    from unet_transfer.inference.network import RULES

    assert set(RULES) == set(inspect.signature(UNet.__init__).parameters) - {"self"}


def test_a_rewritten_file_keeps_the_mode_its_owner_gave_it(tmp_path):
    from unet_transfer.files import atomic_write_text

    path = atomic_write_text(tmp_path / "notes.txt", "one")
    path.chmod(0o600)
    atomic_write_text(path, "two")
    assert path.read_text() == "two" and stat.S_IMODE(path.stat().st_mode) == 0o600
