"""Physically grounded synthetic data: breast ultrasound, chest X-ray and natural scenes.

Every simulator is ``simulate_X(n, size, seed, **settings) -> SegmentationSet``, pure
numpy/scipy and deterministic: image ``i`` depends only on the seed, its index, the size and
the settings (not on ``n``), and is the same on any machine.
"""

from unet_transfer.simulate.natural import simulate_natural
from unet_transfer.simulate.ultrasound import simulate_ultrasound
from unet_transfer.simulate.xray import simulate_xray

SIMULATORS = {"ultrasound": simulate_ultrasound, "xray": simulate_xray, "natural": simulate_natural}

__all__ = ["SIMULATORS", "simulate_natural", "simulate_ultrasound", "simulate_xray"]
