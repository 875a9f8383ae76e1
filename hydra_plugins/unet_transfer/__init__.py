"""Hydra plugins of unet-transfer (Hydra finds sweepers and launchers in the hydra_plugins namespace):
the folders sweeper, the parallel (joblib) and the throttled submitit_local launchers."""
