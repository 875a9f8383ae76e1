"""Checkpoints other tools can read: the safetensors twin (strict, never unpickled), and ONNX and
TorchScript exports that give PyTorch's outputs within 1e-4 at any batch size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unet_transfer.checkpoint import load_pretrained, read_checkpoint, save_weights
from unet_transfer.data.contract import record
from unet_transfer.errors import ConfigError
from unet_transfer.inference import export
from unet_transfer.inference.network import load_network
from unet_transfer.model import UNet
from unet_transfer.simulate.folder import write_folder


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(3)
    return save_weights(UNet(width=4), tmp_path / "model.pt", {"_target_": "unet_transfer.model.UNet", "width": 4},
                        {"dataset": "test", **record(32)})


def test_save_weights_writes_a_safetensors_twin_with_the_settings_in_its_metadata(checkpoint, monkeypatch):
    twin = checkpoint.with_suffix(".safetensors")
    from safetensors import safe_open

    with safe_open(str(twin), framework="pt") as handle:
        assert json.loads(handle.metadata()["meta"])["image_size"] == 32
    torch_file = read_checkpoint(checkpoint)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a safetensors file must not be unpickled"))
    loaded = read_checkpoint(twin)
    assert loaded.model == torch_file.model and loaded.meta == torch_file.meta
    assert set(loaded.state) == set(torch_file.state)
    assert all(torch.equal(loaded.state[key], torch_file.state[key]) for key in loaded.state)
    model = UNet(width=4)
    load_pretrained(model, twin)
    assert all(torch.equal(model.state_dict()[key], loaded.state[key]) for key in loaded.state)


def test_safetensors_loading_is_strict_and_names_the_first_difference(checkpoint, tmp_path):
    twin = checkpoint.with_suffix(".safetensors")
    with pytest.raises(ConfigError, match=r"'blocks\.enc1\.0\.weight' has shape \(4, 1, 3, 3\), the model expects \(8"):
        load_pretrained(UNet(width=8), twin)
    state = read_checkpoint(twin).state
    from safetensors.torch import save_file

    save_file({**state, "extra.weight": torch.zeros(1)}, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ConfigError, match="lacks, first 'extra.weight'"):
        load_pretrained(UNet(width=4), tmp_path / "extra.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(twin.read_bytes()[:200])
    with pytest.raises(ConfigError, match=r"pretrained='.*cut.safetensors' cannot be loaded as safetensors"):
        load_pretrained(UNet(width=4), tmp_path / "cut.safetensors")


def test_a_checkpoint_remade_by_a_new_recipe_leaves_no_stale_twin_when_its_pretraining_fails(
        make_cfg, tmp_path, monkeypatch):

    from unet_transfer.errors import UserError
    from unet_transfer.training import pretrain

    checkpoint = tmp_path / "ckpt" / "made.pt"
    cfg = make_cfg(f"pretrained={checkpoint}", "pretrain=demo_pretrain", "pretrain_overrides=['trainer.max_epochs=1']")
    monkeypatch.setattr(pretrain, "run_child", lambda command, **kwargs: (
        save_weights(UNet(width=4), checkpoint, {"width": 4}), 0)[1])
    pretrain.ensure_pretrained(cfg)
    assert checkpoint.with_suffix(".safetensors").exists()
    monkeypatch.setattr(pretrain, "run_child", lambda command, **kwargs: 1)
    changed = make_cfg(f"pretrained={checkpoint}", "pretrain=demo_pretrain", "pretrain_overrides=['trainer.max_epochs=2']")
    with pytest.raises(UserError, match="Pretraining"):
        pretrain.ensure_pretrained(changed)
    assert not checkpoint.exists() and not checkpoint.with_suffix(".safetensors").exists()


def test_predict_refuses_a_checkpoint_without_its_preprocessing_and_never_builds_other_classes(tmp_path):
    bare = save_weights(UNet(width=4), tmp_path / "bare.pt", {"width": 4})
    with pytest.raises(ConfigError, match="does not record the preprocessing"):
        load_network(bare)
    other = save_weights(UNet(width=4), tmp_path / "other.pt", {"_target_": "os.system", "width": 4}, record(32))
    with pytest.raises(ConfigError, match=r"describes a 'os.system'; only the registered networks \(unet_transfer.model.UNet, "):
        load_network(other)


def test_onnx_export_matches_pytorch_within_1e_4_at_batch_1_and_3_on_random_and_real_inputs(checkpoint, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    images = write_folder(tmp_path / "real", kind="ultrasound", n=3, size=48, seed=5)[0].parent
    assert export.main([str(checkpoint), str(tmp_path / "out"), "--format", "onnx", "--check-images", str(images)]) == 0
    network = load_network(checkpoint, "cpu")
    session = onnxruntime.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    real = export.check_batches(network, images)[-1]
    assert real.shape == (3, 1, 32, 32)
    for batch in (torch.rand(1, 1, 32, 32), real, real[:1]):
        expected = export.reference(network, batch)
        assert ((expected > 0.05) & (expected < 0.95)).mean() > 0.5  # not saturated: the comparison means something
        found = session.run(["probability"], {"image": batch.numpy()})[0]
        assert found.shape == expected.shape and np.abs(found - expected).max() <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "out" / "model.onnx")).metadata_props}
    assert json.loads(meta["unet_transfer.meta"])["image_size"] == 32


def test_torchscript_export_round_trips_with_its_records(checkpoint, tmp_path):
    assert export.main([str(checkpoint), str(tmp_path), "--format", "torchscript"]) == 0
    extra = {export.META_FILE: ""}
    loaded = torch.jit.load(str(tmp_path / "model.torchscript.pt"), _extra_files=extra)
    network = load_network(checkpoint, "cpu")
    batch = torch.rand(3, 1, 32, 32)
    assert np.abs(loaded(batch).detach().numpy() - export.reference(network, batch)).max() <= 1e-4
    assert json.loads(json.loads(extra[export.META_FILE])["unet_transfer.meta"])["threshold"] == 0.5
