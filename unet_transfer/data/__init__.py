"""Data: readers and simulators produce a SegmentationSet; the DataModule serves folds of it."""

from unet_transfer.data.arrays import SegmentationSet

__all__ = ["SegmentationSet"]
