"""Hydra launchers of unet-transfer (Hydra only accepts launchers from the hydra_plugins namespace)."""
