"""Making the simulated data: how long the demo's simulated sets take to build, as a share of
the demo study (target: a small share; the sets are made once and cached), and the ultrasound
simulator's rate at the paper's image size."""

from __future__ import annotations

import time

from unet_transfer.bench.common import compose_cfg

PAPER_SIZE_IMAGES = 8  # enough for a rate at 256 px (about a second here)


def build_seconds(experiment: str) -> dict:
    """The seconds to build (simulate, no cache) the dataset of one experiment."""
    from hydra.utils import instantiate

    source = instantiate(compose_cfg([f"experiment={experiment}", "output_dir=."]).dataset)
    start = time.perf_counter()
    source.build()
    return {"dataset": source.name, "images": source.n_images, "image_size": source.image_size,
            "seconds": time.perf_counter() - start}


def measure(quick: bool) -> dict:
    """The demo's sets (its target data and its pretraining scenes) and the paper-size rate."""
    from unet_transfer.simulate import simulate_ultrasound

    sets = {experiment: build_seconds(experiment) for experiment in ("demo", "demo_pretrain")}
    n = 2 if quick else PAPER_SIZE_IMAGES
    start = time.perf_counter()
    simulate_ultrasound(n, 256, seed=0)
    return {"sets": sets, "demo_seconds": sum(s["seconds"] for s in sets.values()),
            "paper_size_images_per_s": n / (time.perf_counter() - start)}
