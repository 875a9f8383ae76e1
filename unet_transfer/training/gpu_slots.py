"""One GPU each for runs that execute at once on a multi-GPU machine (the parallel launcher with
n_jobs = number of GPUs): a run takes the first free slot, held by a file lock while it trains,
so eight runs on eight GPUs never share one and no GPU idles while a run waits. With one GPU,
or on a cluster where each job sees only its own GPUs, there is nothing to choose."""

from __future__ import annotations

import getpass
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from unet_transfer.files import file_lock

LOCK_DIR = Path(tempfile.gettempdir()) / f"unet-transfer-gpu-slots-{getpass.getuser()}"


def wants_a_slot(accelerator: str, devices, n_gpus: int) -> bool:
    """A one-device run that may land on a GPU, on a machine with several: pick which."""
    return n_gpus > 1 and str(accelerator) in ("auto", "gpu", "cuda") and str(devices) == "1"


def gpus_to_choose_from(trainer_cfg) -> int:
    """The number of GPUs a run with these Trainer settings picks one of (0: nothing to pick)."""
    import torch

    n_gpus = torch.cuda.device_count()
    return n_gpus if wants_a_slot(trainer_cfg.get("accelerator", "auto"), trainer_cfg.get("devices", 1), n_gpus) else 0


@contextmanager
def gpu_slot(n_gpus: int, runs_per_gpu: int = 1, folder: Path = LOCK_DIR, poll_s: float = 1.0) -> Iterator[int | None]:
    """Yields the GPU index this run should use (None when there is only one GPU or none). Slots
    alternate between GPUs (slot s -> GPU s % n_gpus), so runs spread before they share; with
    more runs than slots, a run waits for a free one."""
    if n_gpus <= 1:
        yield None
        return
    from filelock import Timeout

    slots = n_gpus * max(1, int(runs_per_gpu))
    while True:
        for slot in range(slots):
            lock = file_lock(folder / f"slot{slot}.lock", timeout=0)
            try:
                lock.acquire()
            except Timeout:
                continue
            try:
                yield slot % n_gpus
            finally:
                lock.release()  # also when the run fails; a killed process releases it too
            return
        time.sleep(poll_s)
