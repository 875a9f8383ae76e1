"""Hydra glue: resolvers used by conf/ for output folders that never collide and stay readable."""

from __future__ import annotations

import hashlib
import os
import re
import secrets

from omegaconf import OmegaConf

TOKEN_VARIABLE = "UNET_TRANSFER_RUN_TOKEN"
CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")


def process_token() -> str:
    """A short token, fixed for this process and inherited by the workers it launches.

    Two sweeps started in the same second get different folders; the jobs of one sweep,
    even in other processes (joblib, submitit), agree on theirs.
    """
    if TOKEN_VARIABLE not in os.environ:
        os.environ[TOKEN_VARIABLE] = secrets.token_hex(3)
    return os.environ[TOKEN_VARIABLE]


def path_safe(text: str, limit: int = 120) -> str:
    """Override strings as folder names: no slashes, bounded length, never empty."""
    text = re.sub(r"[^A-Za-z0-9=,._+-]", "_", str(text)) or "default"
    if len(text) > limit:
        text = text[: limit - 13] + "_" + hashlib.sha256(text.encode()).hexdigest()[:12]
    return text


def native_bf16() -> bool:
    """bf16 pays off only where the hardware computes it natively: recent GPUs, and CPUs with
    AVX512-BF16 or AMX. Elsewhere (e.g. AVX2 CPUs) bf16 autocast is several times slower."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def fast_precision() -> str:
    """The default `trainer.precision` (`${fast_precision:}`): bf16 mixed where native, else fp32."""
    return "bf16-mixed" if native_bf16() else "32-true"


def gpu_present() -> bool:
    import torch

    return torch.cuda.is_available()


def loader_workers() -> int:
    """The default `loader.num_workers` (`${loader_workers:}`): none on a CPU, where the data sit in
    memory and a worker would take a core from the convolutions; on a GPU, up to 4 processes
    that augment the next batches while the device trains (never all the cores)."""
    if not gpu_present():
        return 0
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("token", process_token, replace=True)
    OmegaConf.register_new_resolver("fast_precision", fast_precision, replace=True)
    OmegaConf.register_new_resolver("path_safe", path_safe, replace=True)
    OmegaConf.register_new_resolver("gpu_present", gpu_present, replace=True)
    OmegaConf.register_new_resolver("loader_workers", loader_workers, replace=True)
