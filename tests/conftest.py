"""Shared fixtures: the real Hydra config, shrunk to run in seconds on a CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from unet_transfer.config import CONF_DIR, register_resolvers

ROOT = Path(__file__).resolve().parents[1]
register_resolvers()

# Tiny but complete: every block exists, images are small, one short epoch.
TINY = [
    "model.width=4",
    "dataset.image_size=32",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "batch_size=4",
    "logger=none",
]
SYNTHETIC = ["dataset.n_images=20"]


@pytest.fixture(scope="session", autouse=True)
def shared_fast_choices(tmp_path_factory):
    """fast.auto measures each (machine, shape) once for the whole test session, not once per test
    folder: every run (and every subprocess, through the environment) reads one choices file."""
    path = tmp_path_factory.mktemp("fast") / "fast_choices.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNET_TRANSFER_FAST_CHOICES", str(path))
        # Runs alone take every core without first measuring the cores' load (0.3 s a run); the
        # choice itself is tested in test_process.py. Sweep workers keep their launcher's share.
        patch.setenv("UNET_TRANSFER_THREADS", str(len(os.sched_getaffinity(0))))
        yield path


@pytest.fixture
def make_cfg(tmp_path):
    """compose(overrides) -> the real config with TINY settings and folders inside tmp_path."""

    def make(*overrides: str, name: str = "run"):
        synthetic = [] if any(o.startswith("dataset=") for o in overrides) else SYNTHETIC
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose(config_name="config", overrides=[
                *TINY, *synthetic, f"output_dir={tmp_path / name}", f"paths.cache_dir={tmp_path / 'cache'}", *overrides])

    return make


def run_cli(args: list[str], cwd: Path, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python train.py ARGS` from the repository as a user would, in folder `cwd`."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout)
