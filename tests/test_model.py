import pytest
import torch
from torch import nn

from unet_transfer.blocks import Blocks
from unet_transfer.errors import ConfigError
from unet_transfer.model import UNet
from unet_transfer.networks.protocol import block_map, set_frozen_blocks


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_keras_variant_has_the_published_parameter_count():
    model = UNet(width=64, dropout_at=("deepest_encoder", "bottleneck"), extra_conv=True)
    assert n_params(model) == 31_031_685


def test_paper_text_variant_drops_only_the_extra_conv():
    assert n_params(UNet(width=64)) == 31_030_593


def test_blocks_are_ordered_by_depth_and_the_head_belongs_to_block_9():
    model = UNet(width=4)
    assert model.block_names == ("enc1", "enc2", "enc3", "enc4", "bottleneck", "dec4", "dec3", "dec2", "dec1")
    assert model.block_names == Blocks(4).names
    head_keys = [k for k in model.state_dict() if ".head." in k]
    block_of = block_map(model).block_of_name(model)
    assert head_keys and all(block_of[k] == 9 for k in head_keys)
    assert block_of["blocks.enc2.1.weight"] == 2
    # every parameter belongs to exactly one block
    assert sum(n_params(model.block(b)) for b in range(1, 10)) == n_params(model)


def test_block_widths_follow_the_design_table():
    model = UNet(width=64)
    first_conv_out = [next(m for m in model.block(b).modules() if isinstance(m, nn.Conv2d)).out_channels
                      for b in range(1, 10)]
    assert first_conv_out == [64, 128, 256, 512, 1024, 512, 256, 128, 64]


@pytest.mark.parametrize("levels,size", [(4, 64), (4, 32), (3, 24), (2, 16)])
def test_output_is_one_logit_map_of_the_input_size(levels, size):
    model = UNet(width=4, levels=levels)
    assert model.n_blocks == 2 * levels + 1
    assert model(torch.rand(2, 1, size, size)).shape == (2, 1, size, size)


def test_dropout_placement_is_a_setting():
    paper = UNet(width=4)
    keras = UNet(width=4, dropout_at=("deepest_encoder", "bottleneck"))
    has_dropout = lambda m, b: any(isinstance(x, nn.Dropout) for x in m.block(b).modules())  # noqa: E731
    assert [has_dropout(paper, b) for b in (4, 5)] == [False, True]
    assert [has_dropout(keras, b) for b in (4, 5)] == [True, True]


def test_weights_are_he_normal_and_biases_zero():
    model = UNet(width=64)
    conv = model.block(3)[1]  # first conv of enc3: fan_in = 128 * 9
    assert conv.bias.abs().max() == 0
    expected_std = (2.0 / (128 * 9)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.02)


def test_frozen_blocks_keep_batchnorm_in_eval_mode_through_train():
    model = UNet(width=4, norm="batch")
    set_frozen_blocks(model, {1, 2})  # the protocol's one rule, for every network
    model.train()
    bn = lambda b: [m for m in model.block(b).modules() if isinstance(m, nn.BatchNorm2d)]  # noqa: E731
    assert bn(1) and all(not m.training for m in bn(1) + bn(2))
    assert all(m.training for m in bn(3))
    before = bn(1)[0].running_mean.clone()
    model(torch.rand(2, 1, 32, 32))
    assert torch.equal(bn(1)[0].running_mean, before)


def test_bad_model_settings_name_the_value():
    with pytest.raises(ConfigError, match="dropout_at"):
        UNet(width=4, dropout_at=("decoder",))
    with pytest.raises(ConfigError, match="norm"):
        UNet(width=4, norm="group")
