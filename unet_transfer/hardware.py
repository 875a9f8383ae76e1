"""Facts about the machine a run lands on, for the defaults that depend on it (the resolvers
`${fast_precision:}`, `${gpu_present:}`, `${loader_workers:}` in conf/)."""

from __future__ import annotations

import os


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            line = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        return set()
    return set(line.split(":", 1)[-1].split())


def gpu_present() -> bool:
    import torch

    return torch.cuda.is_available()


def native_bf16() -> bool:
    """bf16 pays off only where the hardware computes it natively: recent GPUs, and CPUs with
    AVX512-BF16 or AMX. Elsewhere (e.g. AVX2 CPUs) bf16 autocast is several times slower."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def fast_precision() -> str:
    """The default `trainer.precision`: bf16 mixed where native, else fp32."""
    return "bf16-mixed" if native_bf16() else "32-true"


def loader_workers() -> int:
    """The default `loader.num_workers`: none on a CPU, where the data sit in memory and a worker
    would take a core from the convolutions; on a GPU, up to 4 processes that augment the next
    batches while the device trains (never all the cores)."""
    if not gpu_present():
        return 0
    return max(1, min(4, (os.cpu_count() or 2) - 1))
