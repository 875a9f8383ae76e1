"""Training speaks only the block protocol: for the paper's U-Net and MONAI's FlexibleUNet
(ResNet-18, EfficientNet-B0) and BasicUNet, a real run freezes exactly the named blocks (their
parameters AND buffers end bit-identical to the loaded weights), every fine-tuning method runs,
and metrics.json names the network's blocks."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from unet_transfer.checkpoint import read_state_dict, save_weights
from unet_transfer.config import CONF_DIR
from unet_transfer.networks.protocol import block_map
from unet_transfer.training.run import run

pytest.importorskip("monai")

# Tiny versions of each network (32 px: FlexibleUNet halves the image 5 times).
NETWORKS = {
    "unet": ["model.width=4"],
    "flexunet": ["model=flexunet", "model.decoder_channels=[16,8,8,4,4]"],
    "flexunet_effnet": ["model=flexunet", "model.backbone=efficientnet-b0", "model.decoder_channels=[16,8,8,4,4]"],
    "basicunet": ["model=basicunet", "model.features=[4,4,8,8,16,4]", "model.norm=[batch,{}]"],  # running stats
}
TINY = ["dataset.image_size=32", "dataset.n_images=8", "folds=2", "batch_size=4", "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false", "logger=none", "augment=none"]


def compose_run(tmp_path, network: str, *overrides: str, name: str = "run"):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=[*TINY, *NETWORKS[network], f"output_dir={tmp_path / name}",
                                                        f"paths.cache_dir={tmp_path / 'cache'}", *overrides])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """network -> a checkpoint of a freshly built network (what `pretrained=` loads strictly)."""
    folder, made = tmp_path_factory.mktemp("pretrained"), {}

    def make(network: str):
        if network not in made:
            cfg = compose_run(folder, network)
            torch.manual_seed(5)
            model = instantiate(cfg.model)
            settings = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k != "_target_"}
            made[network] = save_weights(model, folder / f"{network}.pt", settings)
        return made[network]

    return make


def trained(tmp_path, pretrained, network: str, *overrides: str):
    """(metrics, loaded state, trained state, parameter/buffer name -> block number)."""
    out = tmp_path / "trained.pt"
    metrics = run(compose_run(tmp_path, network, f"pretrained={pretrained(network)}", f"save_weights={out}", *overrides))
    model = instantiate(compose_run(tmp_path, network).model)
    return metrics, read_state_dict(pretrained(network))[0], read_state_dict(out)[0], block_map(model).block_of_name(model)


def assert_frozen_blocks_identical(before: dict, after: dict, block_of: dict, trainable: set[int]) -> None:
    """Every tensor (parameters and buffers) of a frozen block equals the loaded one, bit for bit."""
    assert set(before) == set(after) == set(block_of)
    frozen = [key for key in before if block_of[key] not in trainable]
    assert frozen, "the setting froze nothing: the check would be empty"
    for key in frozen:
        assert torch.equal(before[key], after[key]), f"{key} (block {block_of[key]}) is frozen but changed"


@pytest.mark.parametrize("network", list(NETWORKS))
@pytest.mark.parametrize("direction", ["shallow_to_deep", "deep_to_shallow"])
def test_freezing_trains_exactly_the_named_blocks_of_every_network(tmp_path, pretrained, network, direction):
    metrics, before, after, block_of = trained(tmp_path, pretrained, network, f"freeze={direction}", "k=2")
    names = metrics["blocks"]["names"]
    expected = {1, 2} if direction == "shallow_to_deep" else {len(names) - 1, len(names)}
    assert set(metrics["trainable_blocks"]) == expected and metrics["n_blocks"] == len(names)
    assert_frozen_blocks_identical(before, after, block_of, expected)
    for block in expected:  # and each trained block moved
        assert any(not torch.equal(before[k], after[k]) for k in before if block_of[k] == block), names[block - 1]
    if network == "basicunet":  # norm=batch: frozen running statistics exist and stayed (checked above)
        assert any(k.endswith("running_mean") and block_of[k] not in expected for k in before)


@pytest.mark.parametrize("network", list(NETWORKS))
@pytest.mark.parametrize("method", ["lora", "bitfit", "l2sp", "layer_lr"])
def test_every_method_runs_on_every_network(tmp_path, pretrained, network, method):
    metrics, before, after, block_of = trained(tmp_path, pretrained, network, "freeze=deep_to_shallow", "k=2",
                                               f"finetune={method}")
    n = len(metrics["blocks"]["names"])
    assert metrics["method"] == method and 0 < metrics["trainable_share"] < 1
    assert_frozen_blocks_identical(before, after, block_of, {n - 1, n})
    assert any(not torch.equal(before[k], after[k]) for k in before if block_of[k] >= n - 1)


def test_metrics_name_the_networks_blocks(tmp_path, pretrained):
    metrics = run(compose_run(tmp_path, "flexunet", "freeze=contracting"))
    assert metrics["blocks"] == {"network": "FlexibleUNet (resnet18)",
                                 "names": ["stem", "layer1", "layer2", "layer3", "layer4", "decoder0", "decoder1",
                                           "decoder2", "decoder3", "decoder4", "head"],
                                 "roles": ["encoder"] * 4 + ["bottleneck"] + ["decoder"] * 5 + ["head"],
                                 "tiers": [1, 2, 3, 4, 5, 4, 3, 2, 1, 1, 1]}
    assert metrics["trainable_blocks"] == [1, 2, 3, 4, 5] and metrics["width"] is None
    assert metrics["network"] == "FlexibleUNet (resnet18)"


def test_an_image_size_the_network_cannot_halve_is_one_line_naming_its_rule(tmp_path):
    from unet_transfer.errors import ConfigError

    with pytest.raises(ConfigError, match=r"image_size=48: FlexibleUNet \(resnet18\) halves the image 5 times.*"
                                          r"multiple of 32; the nearest valid sizes are 32 and 64"):
        run(compose_run(tmp_path, "flexunet", "dataset.image_size=48"))
    with pytest.raises(ConfigError, match=r"freeze.blocks=\[12\] has unknown block\(s\) \[12\]: give block numbers in "
                                          r"1..11 \(1 = stem"):
        run(compose_run(tmp_path, "flexunet", "freeze=blocks", "freeze.blocks=[12]"))
