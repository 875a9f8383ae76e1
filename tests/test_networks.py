"""The block protocol on every network the framework knows: the block map covers each tensor
once, the paths and depth orders are the blocks, and freezing (gradients and normalisation)
keeps frozen blocks bit-identical through training."""

import copy
import pickle
import re

import pytest
import torch
from torch import nn

from unet_transfer.blocks import Blocks, BlockSpec, unet_specs
from unet_transfer.errors import ConfigError
from unet_transfer.model import UNet
from unet_transfer.networks import basicunet, flexunet, protocol

SIZE = 32  # FlexibleUNet halves 5 times: 32 px is its smallest input


def tiny_flexunet(backbone):
    return flexunet.build(backbone, decoder_channels=(16, 8, 8, 4, 4))


NETWORKS = {
    "unet": lambda: UNet(width=4, norm="batch", dropout=0.0),
    "flexunet-resnet18": lambda: tiny_flexunet("resnet18"),
    "flexunet-efficientnet-b0": lambda: tiny_flexunet("efficientnet-b0"),
    "basicunet": lambda: basicunet.build(features=(4, 4, 8, 8, 16, 4), norm="batch"),
}


@pytest.fixture(scope="module", params=list(NETWORKS))
def network(request):
    torch.manual_seed(0)
    return request.param, NETWORKS[request.param]()


def test_the_block_map_covers_every_parameter_and_buffer_exactly_once(network):
    _, model = network
    entries = protocol.adapter_of(model).block_modules(model)
    protocol.check_block_map(model, entries)  # raises on a miss or a double
    owners = protocol.block_map(model).block_of_name(model)
    assert set(owners) == {n for n, _ in [*model.named_parameters(), *model.named_buffers()]}
    assert any("running_mean" in n for n in owners)  # buffers are mapped too


def test_paths_partition_the_blocks_and_both_depth_orders_are_permutations(network):
    _, model = network
    blocks = protocol.blocks_of(model)
    assert sorted(blocks.contracting + blocks.expanding) == list(blocks.numbers)
    assert not set(blocks.contracting) & set(blocks.expanding)
    for depth in ("longest", "shortest"):
        tiers = blocks.with_depth(depth).tiers
        assert sorted(b for tier in tiers for b in tier) == list(blocks.numbers)
    assert blocks.path_k("contracting") == ("shallow_to_deep", len(blocks.contracting))
    assert Blocks.recorded(blocks.record()) == blocks


def random_steps(model, steps=2):
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.rand(2, 1, SIZE, SIZE, generator=generator)
        y = (torch.rand(2, 1, SIZE, SIZE, generator=generator) > 0.5).float()
        optimizer.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
        optimizer.step()


def tensors(block_map, number):
    return [t.detach().clone() for t in [*block_map.parameters(number), *block_map.buffers(number)]]


def test_frozen_blocks_stay_bit_identical_through_training_and_trainable_ones_move(network):
    name, built = network
    model = copy.deepcopy(built)
    blocks = protocol.block_map(model)
    frozen = set(blocks.blocks.contracting)  # the encoder with its BatchNorms
    protocol.set_frozen_blocks(model, frozen, blocks)
    model.train()
    held = [m for b in frozen for root in blocks.of(b) for m in root.modules() if protocol._is_held_norm(m)]
    assert held and not any(m.training for m in held)  # also right after model.train()
    before = {b: tensors(blocks, b) for b in blocks.blocks.numbers}
    random_steps(model)
    model.eval()
    model.train()  # the norm rule survives the mode switches Lightning makes
    random_steps(model, 1)
    assert not any(m.training for m in held)
    for number in blocks.blocks.numbers:
        after = tensors(blocks, number)
        same = all(torch.equal(a, b) for a, b in zip(before[number], after, strict=True))
        assert same == (number in frozen), f"{name} block {blocks.blocks.name(number)}"


def test_unfreezing_releases_the_norms_and_the_model_still_pickles(network):
    _, built = network
    model = copy.deepcopy(built)
    blocks = protocol.set_frozen_blocks(model, {1})
    norms = [m for root in blocks.of(1) for m in root.modules() if protocol._is_held_norm(m)]
    assert norms and all(protocol.norms_held(m) for m in norms)
    pickle.loads(pickle.dumps(model))  # the hold is no closure
    twin = copy.deepcopy(model)  # the analysis keeps a copy of the loaded network
    twin_norms = [m for m in twin.modules() if protocol.norms_held(m)]
    assert len(twin_norms) == len(norms)
    protocol.release_norms([twin], training=True)
    assert all(m.training for m in twin_norms) and all(protocol.norms_held(m) for m in norms)
    protocol.set_frozen_blocks(model, set(), blocks)  # gradual unfreezing: block 1 trains again
    model.train()
    assert all(m.training and not protocol.norms_held(m) for m in norms)
    assert all(p.requires_grad for p in model.parameters())


def test_the_paper_unet_keeps_its_blocks_and_numbers():
    model = UNet(width=4)
    blocks = protocol.blocks_of(model, "shortest")
    assert blocks == Blocks(4, "shortest") and blocks.tiers == Blocks(4, "shortest").tiers
    assert sum(p.numel() for p in model.parameters()) == 121_653  # unchanged by the protocol


def test_network_block_lists_follow_monai_and_the_skips():
    r18 = protocol.blocks_of(tiny_flexunet("resnet18"), "shortest")
    assert r18.names == ("stem", "layer1", "layer2", "layer3", "layer4", "decoder0", "decoder1", "decoder2",
                         "decoder3", "decoder4", "head")
    assert r18.tiers == ((1, 9, 10, 11), (2, 8), (3, 7), (4, 6), (5,))  # decoder0 joins layer3's skip
    b0 = protocol.blocks_of(tiny_flexunet("efficientnet-b0"))
    assert b0.names[:6] == ("stem", "blocks0", "blocks1", "blocks2", "blocks3_4", "blocks5_6")
    assert b0.roles[5] == "bottleneck" and b0.roles[-1] == "head"
    basic = protocol.blocks_of(basicunet.build(features=(4, 4, 8, 8, 16, 4)), "shortest")
    assert basic.names[4] == "down_4" and basic.tiers[0] == (1, 9, 10)  # conv_0, upcat_1, final_conv


def test_efficientnet_loses_its_unused_classifier_head():
    model = tiny_flexunet("efficientnet-b0")
    assert all(isinstance(getattr(model.encoder, n), nn.Identity) for n in flexunet.DEAD_MODULES)
    assert not any(n.startswith(("encoder._fc", "encoder._bn1", "encoder._conv_head")) for n, _ in model.named_parameters())


def test_a_block_map_that_misses_or_doubles_a_tensor_names_it():
    model = UNet(width=4, norm="batch")
    entries = protocol.adapter_of(model).block_modules(model)
    with pytest.raises(protocol.BlockMapError, match=r"blocks\.dec1\.head\.0\.weight belongs to no block"):
        protocol.check_block_map(model, [*entries[:-1], (entries[-1][0], (model.blocks["dec1"].up, model.blocks["dec1"].convs))])
    with pytest.raises(protocol.BlockMapError, match=r"blocks\.enc1\.0\.weight belongs to blocks \['enc1', 'enc2'\]"):
        protocol.check_block_map(model, [entries[0], (entries[1][0], (*entries[1][1], model.blocks["enc1"])),
                                         *entries[2:]])


def test_an_unknown_network_or_a_bad_block_list_is_one_clear_error():
    with pytest.raises(ConfigError, match="has no block map.*ADAPTERS"):
        protocol.block_map(nn.Conv2d(1, 1, 1))
    with pytest.raises(ConfigError, match="not in the order"):
        Blocks.listed([BlockSpec("up", "decoder", 1), BlockSpec("down", "encoder", 1)])
    with pytest.raises(ConfigError, match="1..T"):
        Blocks.listed([BlockSpec("a", "encoder", 1), BlockSpec("b", "decoder", 3)])
    assert Blocks.listed(unet_specs(4)) == Blocks(4)


def test_imagenet_weights_offline_are_one_line_naming_what_is_missing(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ConfigError, match=r"efficientnet-b0.*efficientnet-b0-355c32eb\.pth.*model\.pretrained="):
        flexunet.build("efficientnet-b0", pretrained=True, decoder_channels=(16, 8, 8, 4, 4))
    with pytest.raises(ConfigError, match="no 2-D ImageNet weights for resnet18"):
        flexunet.build("resnet18", pretrained=True)
    with pytest.raises(ConfigError, match="no such file"):
        flexunet.build("resnet18", pretrained="/nonexistent/weights.pth")


def test_a_weights_file_loads_strictly_and_an_rgb_stem_is_summed(tmp_path):
    from monai.networks.nets.efficientnet import EfficientNetBNFeatures

    torch.manual_seed(3)
    rgb = EfficientNetBNFeatures("efficientnet-b0", pretrained=False, in_channels=3)
    # EfficientNet-PyTorch's keys, as MONAI's download: no stack index ("_blocks.3.x" not "_blocks.1.3.x")
    state = {re.sub(r"^_blocks\.\d+\.", "_blocks.", k): v for k, v in rgb.state_dict().items()}
    torch.save(state, tmp_path / "b0.pth")
    model = flexunet.build("efficientnet-b0", pretrained=str(tmp_path / "b0.pth"), decoder_channels=(16, 8, 8, 4, 4))
    assert torch.equal(model.encoder._conv_stem.weight, rgb._conv_stem.weight.sum(1, keepdim=True))
    assert torch.equal(model.encoder._blocks[6][0]._project_conv.weight, rgb._blocks[6][0]._project_conv.weight)
    del state["_blocks.15._project_conv.weight"]
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(ConfigError, match=r"do not fit.*_blocks\.6\.15\._project_conv\.weight"):
        flexunet.build("efficientnet-b0", pretrained=str(tmp_path / "short.pth"))


def test_features_and_convolutions_of_each_block_for_the_analysis(network):
    _, model = network
    blocks = protocol.block_map(model)
    convs = protocol.convolutions(model, blocks)
    assert [n for n, _ in convs] == sorted(n for n, _ in convs) and {n for n, _ in convs} >= set(blocks.blocks.contracting)
    features = {}
    hooks = [protocol.representation(model, b, blocks).register_forward_hook(
        lambda m, i, o, b=b: features.setdefault(b, o)) for b in blocks.blocks.numbers]
    model.eval()
    with torch.no_grad():
        model(torch.rand(1, 1, SIZE, SIZE))
    for hook in hooks:
        hook.remove()
    assert set(features) == set(blocks.blocks.numbers) and all(f.dim() == 4 for f in features.values())


def test_the_paper_unet_analysis_hooks_match_its_own():
    model = UNet(width=4, extra_conv=True)
    assert protocol.convolutions(model) == model.convolutions()
    assert all(protocol.representation(model, b) is model.representation(b) for b in range(1, 10))
