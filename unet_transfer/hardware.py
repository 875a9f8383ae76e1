"""Facts about the machine a run lands on, for the defaults that depend on it (the resolvers
`${gpu_present:}`, `${loader_workers:}` in conf/) and for training/fast.py's candidates."""

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


def loader_workers() -> int:
    """The default `loader.num_workers`: none on a CPU, where the data sit in memory and a worker
    would take a core from the convolutions; on a GPU, up to 4 processes that augment the next
    batches while the device trains (never all the cores)."""
    if not gpu_present():
        return 0
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def cpu_peak_flops(threads: int) -> dict:
    """An estimate of the CPU's fp32 peak for `threads` cores: cores x clock x FLOPs per cycle
    (2 FMA units of the widest vectors: 64 with AVX-512, 32 with AVX2, 16 otherwise). The clock
    is /proc/cpuinfo's (often the base clock in a VM; turbo can be higher)."""
    flags = cpu_flags()
    per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 16
    try:
        with open("/proc/cpuinfo") as handle:
            mhz = float(next(line.split(":", 1)[1] for line in handle if line.startswith("cpu MHz")))
    except (OSError, StopIteration, ValueError):
        mhz = 0.0
    vector = "AVX-512" if per_cycle == 64 else "AVX2" if per_cycle == 32 else "SSE"
    return {"flops_per_s": threads * mhz * 1e6 * per_cycle if mhz else None, "ghz": mhz / 1000,
            "flops_per_cycle": per_cycle, "vectors": vector, "cores": threads}


def _cpu_times(stat: str = "/proc/stat") -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores since boot, or None where /proc/stat is missing."""
    try:
        with open(stat) as handle:
            fields = [int(v) for v in handle.readline().split()[1:9]]  # user .. steal (guest is inside user)
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    except (OSError, ValueError, IndexError):
        return None
    return sum(fields) - idle, sum(fields)


def cpu_busy_now(window_s: float = 1.0, stat: str = "/proc/stat") -> float | None:
    """Share of all cores busy during the next window_s seconds while this process sleeps: the
    other work on the machine now. The load average would also count work that just ended (it
    decays over minutes), so a bench started right after another job would call an idle machine busy."""
    import time

    first = _cpu_times(stat)
    time.sleep(window_s)
    second = _cpu_times(stat)
    if first is None or second is None or second[1] <= first[1]:
        return None
    return (second[0] - first[0]) / (second[1] - first[1])
