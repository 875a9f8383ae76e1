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


THREADS_ENV = "UNET_TRANSFER_THREADS"


def usable_cores() -> int:
    """The cores this process may run on (a container or `taskset` may allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_for_one_process(setting: int | str | None = None, busy: float | None = None,
                            window_s: float = 0.3) -> tuple[int, str]:
    """(threads, why) for a command that is the only training on the machine (one run, report,
    recommend, pretraining). Every core is right on an idle machine, but where other work holds
    cores, threads that wait for them stall every step (35 min against 3 for a pretraining on 2
    shared cores). First wins: `setting` (e.g. `threads=`), $UNET_TRANSFER_THREADS, $OMP_NUM_THREADS
    (a sweep's launcher sets it per run), else the cores minus those busy with other work now
    (`busy`: a share of all cores, measured when not given), at least 1."""
    from unet_transfer.errors import ConfigError

    cores = usable_cores()
    hint = f"set {THREADS_ENV} to choose"
    for value, source in ((setting, "threads="), (os.environ.get(THREADS_ENV), f"{THREADS_ENV}="),
                          (os.environ.get("OMP_NUM_THREADS"), "OMP_NUM_THREADS=")):
        if value in (None, ""):
            continue
        try:
            chosen = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}{value!r} is not a whole number of threads: give e.g. 1 or 2, or leave it "
                              "unset to use the cores not busy with other work") from None
        if chosen < 1:
            raise ConfigError(f"{source}{value} must be at least 1 (or unset: the cores not busy with other work)")
        return chosen, f"threads: {chosen} of {cores} cores (as set: {source}{value})"
    share = cpu_busy_now(window_s) if busy is None else busy
    if share is None:
        return cores, f"threads: {cores} of {cores} cores (other work unknown); {hint}"
    taken = min(cores, round(share * (os.cpu_count() or cores)))
    chosen = max(1, cores - taken)
    return chosen, f"threads: {chosen} of {cores} cores ({taken} busy with other work); {hint}"


def use_threads(threads: int) -> None:
    """Make this process compute on `threads` cores: torch's pool now, and the OpenMP/BLAS pools
    of libraries not loaded yet (they read the environment once, when loaded)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)
