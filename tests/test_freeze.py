import pytest

from unet_transfer.blocks import Blocks, canonical_direction
from unet_transfer.errors import ConfigError
from unet_transfer.training.freeze import FreezeSchedule

trainable_blocks = Blocks().trainable  # the paper's 9-block U-Net


def test_directions_follow_the_design_card():
    assert trainable_blocks("none") == tuple(range(1, 10))
    assert trainable_blocks("shallow_to_deep", 1) == (1,)
    assert trainable_blocks("shallow_to_deep", 9) == tuple(range(1, 10))
    assert trainable_blocks("deep_to_shallow", 1) == (9,)
    assert trainable_blocks("deep_to_shallow", 3) == (7, 8, 9)
    assert trainable_blocks("contracting") == (1, 2, 3, 4, 5) == trainable_blocks("shallow_to_deep", 5)
    assert trainable_blocks("expanding") == (6, 7, 8, 9) == trainable_blocks("deep_to_shallow", 4)
    assert trainable_blocks("blocks", blocks=[9, 1, 1]) == (1, 9)
    assert canonical_direction("contracting") == "shallow_to_deep"


@pytest.mark.parametrize("k", [0, 10, -1, None, "3", 2.5])
def test_k_outside_one_to_nine_names_the_value_and_the_range(k):
    with pytest.raises(ConfigError, match=r"k=.*1\.\.9"):
        trainable_blocks("deep_to_shallow", k)


def test_unknown_block_and_direction_are_refused():
    with pytest.raises(ConfigError, match=r"\[0, 10\].*1\.\.9"):
        trainable_blocks("blocks", blocks=[0, 3, 10])
    with pytest.raises(ConfigError, match="sideways"):
        trainable_blocks("sideways", 3)


def test_phases_may_only_unfreeze_in_increasing_epochs():
    schedule = FreezeSchedule("deep_to_shallow", 1, phases=[{"epoch": 2, "direction": "expanding"}, {"epoch": 4, "direction": "none"}])
    phases = schedule.resolve(Blocks())
    assert [p.trainable for p in phases] == [(9,), (6, 7, 8, 9), tuple(range(1, 10))]
    assert schedule.phase_at(3, Blocks()).trainable == (6, 7, 8, 9)
    with pytest.raises(ConfigError, match="re-freeze"):
        FreezeSchedule("none", phases=[{"epoch": 1, "direction": "shallow_to_deep", "k": 2}]).resolve(Blocks())
    with pytest.raises(ConfigError, match="increasing"):
        FreezeSchedule("blocks", blocks=[1], phases=[{"epoch": 0, "direction": "none"}]).resolve(Blocks())
