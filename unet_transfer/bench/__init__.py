"""The speed and memory benchmark (`unet-transfer bench`, `make bench`): one module per
measurement (throughput, loops, runs, estimate), the table, and the command in __main__."""

from unet_transfer.bench.common import bf16_peak
from unet_transfer.bench.estimate import interpolate, study_settings

__all__ = ["bf16_peak", "interpolate", "study_settings"]
