"""predict and export speak the block protocol: a checkpoint of each registered network (the
paper's U-Net, FlexibleUNet on ResNet-18 and EfficientNet-B0, BasicUNet) is predicted with and
round-trips through ONNX and TorchScript; a MONAI checkpoint whose settings do not fit its
tensors is refused before any real network is built."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from unet_transfer.checkpoint import save_weights
from unet_transfer.data.contract import record
from unet_transfer.errors import ConfigError
from unet_transfer.inference import export, predict
from unet_transfer.inference.network import build_network, builders, load_network

pytest.importorskip("monai")

SIZE = 32
NETWORKS = {
    "unet": {"_target_": "unet_transfer.model.UNet", "width": 4},
    "flexunet-resnet18": {"_target_": "unet_transfer.networks.flexunet.build", "backbone": "resnet18",
                          "pretrained": False, "decoder_channels": [16, 8, 8, 8, 4]},
    "flexunet-efficientnet-b0": {"_target_": "unet_transfer.networks.flexunet.build", "backbone": "efficientnet-b0",
                                 "pretrained": True, "decoder_channels": [16, 8, 8, 8, 4]},
    "basicunet": {"_target_": "unet_transfer.networks.basicunet.build", "features": [4, 4, 8, 8, 16, 4],
                  "norm": ["batch", {}]},
}


def checkpoint_of(name: str, folder, **meta):
    """A checkpoint as a run writes it (save_weights with the model config and data/contract's
    record), of a freshly built network with non-trivial norm statistics."""
    settings = NETWORKS[name]
    torch.manual_seed(0)
    model = build_network(builders()[settings["_target_"]], {k: v for k, v in settings.items() if k != "_target_"})
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 1, SIZE, SIZE))  # running statistics away from their defaults
    return save_weights(model.eval(), folder / f"{name}.pt", settings, {**record(SIZE), **meta})


def grey_images(folder, n=2):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((40, 48)) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return folder


@pytest.mark.parametrize("name", list(NETWORKS))
def test_predict_and_onnx_torchscript_round_trip_on_a_checkpoint_of_each_network(name, tmp_path):
    path = checkpoint_of(name, tmp_path)
    network = load_network(path, "cpu")
    assert not network.model.training
    out = tmp_path / "out"
    assert predict.main([str(path), str(grey_images(tmp_path / "images")), str(out), "--no-progress"]) == 0
    masks = sorted(out.rglob("*mask*.png"))
    assert masks and all(Image.open(m).size == (48, 40) for m in masks)
    results = export.export(path, tmp_path / "exported", check_images=tmp_path / "images")
    assert {p.name for p, _ in results} == {f"{name}.onnx", f"{name}.torchscript.pt"}
    for file, difference in results:
        assert difference is None or difference <= export.TOLERANCE, (file, difference)


def test_a_recorded_image_size_the_network_does_not_take_is_named_with_its_step(tmp_path):
    path = checkpoint_of("flexunet-resnet18", tmp_path, image_size=48)  # ResNet halves 5 times: multiples of 32
    with pytest.raises(ConfigError, match=r"image_size=48: the FlexibleUNet .* multiple of 32.* 32 and 64"):
        load_network(path, "cpu")


@pytest.mark.parametrize("channels", [{"in_channels": 3}, {"out_channels": 2}])
def test_a_network_that_does_not_map_grey_to_one_map_is_refused_in_one_line(tmp_path, channels):
    settings = {**NETWORKS["basicunet"], **channels}
    torch.manual_seed(0)
    model = build_network(builders()[settings["_target_"]], {k: v for k, v in settings.items() if k != "_target_"})
    path = save_weights(model.eval(), tmp_path / "odd.pt", settings, record(SIZE))
    with pytest.raises(ConfigError, match=r"does not map one grey channel to one foreground map"):
        load_network(path, "cpu")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Sound checkpoints of the MONAI networks, written before any guard is in place."""
    folder = tmp_path_factory.mktemp("sound")
    return {name: checkpoint_of(name, folder) for name in ("basicunet", "flexunet-resnet18")}


@pytest.fixture
def no_real_monai(written, monkeypatch):
    """Building a MONAI network other than on the meta device is a test failure."""
    from monai.networks.nets import BasicUNet, FlexibleUNet

    for cls in (BasicUNet, FlexibleUNet):
        def guarded(self, *args, _real=cls.__init__, _cls=cls, **kwargs):
            if torch.get_default_device().type != "meta":
                pytest.fail(f"a {_cls.__name__} was built from an unchecked checkpoint")
            _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", guarded)
    return written


@pytest.mark.parametrize("name, settings, named", [
    ("basicunet", {"features": [4096, 4096, 8192, 8192, 16384, 4096]}, "has shape"),
    ("basicunet", {"features": [4, 4, 8]}, "features"),
    ("basicunet", {"colour": 3}, "colour"),
    ("basicunet", {"bias": "yes"}, "model.bias='yes'"),
    ("flexunet-resnet18", {"backbone": "resnet50"}, "model.backbone='resnet50'"),
    ("flexunet-resnet18", {"backbone": "vgg16"}, "vgg16"),
    ("flexunet-resnet18", {"decoder_channels": [10**6] * 5}, "decoder_channels"),
    ("flexunet-resnet18", {"_target_": "monai.networks.nets.FlexibleUNet"}, "only the registered networks"),
])
def test_a_monai_checkpoint_whose_settings_do_not_fit_its_tensors_is_refused_before_building(
        name, settings, named, tmp_path, no_real_monai):
    from unet_transfer.checkpoint import read_checkpoint, write_safetensors

    sound = read_checkpoint(no_real_monai[name])
    path = write_safetensors(sound.state, tmp_path / f"{name}.safetensors", {**sound.model, **settings}, sound.meta)
    with pytest.raises(ConfigError) as error:
        load_network(path, "cpu")
    text = str(error.value)
    assert len(text.splitlines()) == 1 and path.name in text and named in text, text
    assert export.main([str(path), str(tmp_path / "exported")]) == 2
    assert not (tmp_path / "exported").exists()
