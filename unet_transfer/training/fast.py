"""The fastest correct settings for this machine, chosen by measurement (`fast.auto`).

Which memory layout and precision train a U-Net fastest depends on the hardware and the shape:
bf16 pays only where the device computes it natively, and on some CPUs not even there; channels-
last convolutions win on one CPU and lose on another. So on first use for a (device, torch
version, model, image size, batch, threads) the run times a few training steps of every
candidate (NCHW or channels-last; fp32, and bf16 autocast where native; torch.compile too when
the run is long enough to repay compiling) and keeps the fastest in the cache folder
(`fast_choices.json`, or `paths.fast_choices`): later runs and every other run of the sweep read it. A setting given
explicitly (`trainer.precision`, `fast.channels_last`, `fast.compile`) is never changed; the run
records the settings it used and why in metrics.json (`fast`). The measurement runs on a copy of
the model with the global random state restored, so it never changes a run's numbers.

A timing disturbed by other work must not be kept for good: the record says which share of the
cores other processes kept busy while it was taken (`other_work`), and a record taken under load
or whose candidates differ implausibly (`MAX_SPREAD`) is measured again by the next run that
reads it, each candidate keeping its least disturbed time, up to `MAX_MEASUREMENTS` times. A
record of the wrong shape (a hand edit, another version) is measured again like a missing one.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from unet_transfer.files import atomic_write_text, file_lock

log = logging.getLogger("unet_transfer")

CHOICES_FILE = "fast_choices.json"
COMPILE_WORTH_S = 600.0  # torch.compile is only tried for runs expected to train longer than this
STEP_BUDGET_S = 3.0  # time a candidate for about this long (at least 2 steps after a warm-up step)
# The candidates are one network in two layouts and precisions: native bf16 (tensor cores, AMX)
# or channels-last gains a few times at most, so step times further apart than this say more
# about other work on the machine than about the settings (a 251x "speedup" was recorded so).
MAX_SPREAD = 8.0
# Other processes busy on more than this share of all cores while timing: the training threads
# wait for cores, and a step waits for its slowest thread, so the timings are disturbed.
LOADED = 0.25
MAX_MEASUREMENTS = 3  # a record that stays implausible or loaded (a machine always busy) is then kept
RECORD_FIELDS = {"precision": str, "channels_last": bool, "compile": bool, "chosen_by": str, "why": str,
                 "step_s": (int, float), "compile_tried": bool, "timings": dict}


@dataclass(frozen=True)
class FastSettings:
    precision: str = "32-true"
    channels_last: bool = False
    compile: bool = False

    @property
    def name(self) -> str:
        return (f"{'bf16' if self.precision.startswith('bf16') else 'fp32'}, "
                f"{'channels-last' if self.channels_last else 'NCHW'}{', compiled' if self.compile else ''}")


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def candidates(given: dict, native_bf16: bool, try_compile: bool) -> list[FastSettings]:
    """Every combination the settings given explicitly leave open."""
    precisions = [given["precision"]] if given["precision"] else ["32-true", *(["bf16-mixed"] * native_bf16)]
    layouts = [given["channels_last"]] if given["channels_last"] is not None else [False, True]
    compiles = [given["compile"]] if given["compile"] is not None else [False, *([True] * try_compile)]
    return [FastSettings(p, c, k) for k in compiles for p in precisions for c in layouts]


def pick(timings: dict[FastSettings, float]) -> tuple[FastSettings, str]:
    """The fastest candidate, and why, in words (its speed against the plain fp32 NCHW loop)."""
    best = min(timings, key=timings.get)
    plain = timings.get(FastSettings())
    against = f"; {plain / timings[best]:.2f}x the plain fp32 NCHW steps" if plain else ""
    others = ", ".join(f"{s.name} {t * 1000:.1f} ms" for s, t in sorted(timings.items(), key=lambda item: item[1]))
    return best, f"fastest of {len(timings)} measured ({others}){against}"


def time_steps(model, optimizer_factory, settings: FastSettings, shape: list, device) -> float:
    """Seconds per training step of `settings` on a copy of `model` (best of the timed steps)."""
    import torch
    import torch.nn.functional as F

    net = copy.deepcopy(model).to(device).train()
    memory = torch.channels_last if settings.channels_last else torch.contiguous_format
    net = net.to(memory_format=memory)
    run = torch.compile(net) if settings.compile else net
    optimizer = optimizer_factory([p for p in net.parameters() if p.requires_grad])
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(shape, generator=generator).to(device).contiguous(memory_format=memory)
    masks = (torch.rand((shape[0], 1, *shape[2:]), generator=generator) > 0.5).float().to(device)
    dtype = torch.bfloat16 if settings.precision.startswith("bf16") else None

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.binary_cross_entropy_with_logits(run(images).float(), masks)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()  # warm-up (and compilation)
    times, start = [], time.perf_counter()
    while len(times) < 2 or (time.perf_counter() - start < STEP_BUDGET_S and len(times) < 20):
        begin = time.perf_counter()
        step()
        times.append(time.perf_counter() - begin)
    return min(times)  # the least disturbed by other work on the machine


def other_work_during(run: Callable[[], dict]) -> tuple[dict, float | None]:
    """run()'s result and the share of all cores that other processes kept busy meanwhile (this
    process's own CPU time taken off the machine's); None where unknown or too short to tell."""
    from unet_transfer.hardware import _cpu_times

    before, own, start = _cpu_times(), time.process_time(), time.perf_counter()
    result = run()
    after, own, elapsed = _cpu_times(), time.process_time() - own, time.perf_counter() - start
    if before is None or after is None or elapsed < 1.0 or after[1] <= before[1]:
        return result, None
    tick = os.sysconf("SC_CLK_TCK")
    others = (after[0] - before[0]) / tick - own  # CPU seconds of the other processes
    return result, round(min(1.0, max(0.0, others / ((after[1] - before[1]) / tick))), 3)


def recorded_timings(record: dict) -> dict[FastSettings, float]:
    """Seconds per step of each candidate a record measured (ValueError/TypeError if malformed)."""
    timings = {FastSettings(**json.loads(name)): float(ms) / 1000 for name, ms in record["timings"].items()}
    if not timings or not all(t > 0 for t in timings.values()):
        raise ValueError("no positive timings")
    return timings


def is_record(record) -> bool:
    """A record as `choose` writes it: every field the reader needs, of its type."""
    if not isinstance(record, dict) or not all(isinstance(record.get(k), t) for k, t in RECORD_FIELDS.items()):
        return False
    if not isinstance(record.get("measurements", 1), int) or not isinstance(record.get("other_work"), (int, float, type(None))):
        return False  # fields older records lack, but of the wrong type when present
    try:
        recorded_timings(record)
    except (TypeError, ValueError):
        return False
    return True


def stale_reason(record: dict) -> str | None:
    """Why a well-formed record's timings look disturbed (so worth measuring again), or None."""
    if record.get("measurements", 1) >= MAX_MEASUREMENTS:
        return None
    other = record.get("other_work")
    if isinstance(other, (int, float)) and other > LOADED:
        return f"timed while other processes kept {other:.0%} of the cores busy"
    times = recorded_timings(record).values()
    if max(times) / min(times) > MAX_SPREAD:
        return f"its candidates' step times differ {max(times) / min(times):.0f}x, more than settings explain"
    return None


class Choices:
    """The measured choices of this cache folder, one per machine and shape."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def read(self, warn: bool = False) -> dict:
        """The well-formed records: none yet, damaged or of the wrong shape only costs measuring again."""
        try:
            stored = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            stored = None
        kept = {k: r for k, r in stored.items() if is_record(r)} if isinstance(stored, dict) else {}
        if warn and (not isinstance(stored, dict) or len(kept) < len(stored)):
            log.warning("%s is damaged (not the layout it is written in): fast.auto measures again", self.path)
        return kept

    def get_or_measure(self, key: str, measure: Callable[[dict | None], dict],
                       usable: Callable[[dict], bool] = lambda record: True) -> dict:
        """The record of `key` if usable; else measure(the record, or None), under the lock."""
        known = self.read(warn=True).get(key)
        if known is not None and usable(known):
            return known
        return self.update(key, lambda found: found if found is not None and usable(found) else measure(found))

    def update(self, key: str, change: Callable[[dict | None], dict]) -> dict:
        """Replace the record of `key` by change(record), under the lock: one run of a sweep measures."""
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            record = change(self.read().get(key))
            atomic_write_text(self.path, json.dumps({**self.read(), key: record}, indent=1))
        return record


def given_settings(cfg) -> dict:
    fast = cfg.get("fast") or {}
    return {"precision": cfg.trainer.get("precision"), "channels_last": fast.get("channels_last"),
            "compile": fast.get("compile")}


def expected_run_s(cfg, step_s: float, n_train: int) -> float:
    epochs = int(cfg.trainer.get("max_epochs") or 0)
    steps = -(-n_train // int(cfg.batch_size))
    limit = cfg.trainer.get("limit_train_batches")
    if isinstance(limit, int) and not isinstance(limit, bool):
        steps = min(steps, limit)
    return epochs * steps * step_s


def choose(cfg, model, optimizer_factory, n_train: int, measure: Callable = time_steps) -> tuple[FastSettings, dict]:
    """The settings this run trains with, and the record metrics.json keeps of them."""
    import torch
    from omegaconf import OmegaConf

    from unet_transfer.data.cache import digest
    from unet_transfer.hardware import native_bf16

    given = given_settings(cfg)
    fixed = {k: v for k, v in given.items() if v is not None}
    if len(fixed) == len(given):
        settings = FastSettings(**given)
        return settings, {**asdict(settings), "chosen_by": "given", "why": "all given explicitly"}
    if not (cfg.get("fast") or {}).get("auto", True):
        settings = FastSettings(**{**asdict(FastSettings()), **fixed})
        return settings, {**asdict(settings), "chosen_by": "default", "why": "fast.auto=false: fp32 NCHW unless given"}
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.trainer.get("accelerator") in ("auto", "gpu", "cuda")
                          else "cpu")
    shape = [int(cfg.batch_size), int(cfg.model.get("in_channels", 1)), int(cfg.dataset.image_size),
             int(cfg.dataset.image_size)]  # a list: the record is JSON and must read back equal
    key_parts = {"device": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
                 "model": {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k != "_target_"},
                 "shape": shape,
                 "given": fixed}

    def measured(known: dict | None, again: bool = False) -> dict:
        """The base candidates; given a record, the compiled variant of its winner added, or
        (again) its candidates timed once more, each keeping its least disturbed time."""
        timings = recorded_timings(known) if known is not None else {}
        if known is None:
            targets = candidates(given, native_bf16(), try_compile=False)
        elif again:
            targets = list(timings)
        else:
            best, _ = pick(timings)
            targets = [FastSettings(best.precision, best.channels_last, True)]
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            fresh, other = other_work_during(lambda: {s: measure(model, optimizer_factory, s, shape, device)
                                                      for s in targets})
        timings = {**timings, **{s: min(t, timings.get(s, t)) for s, t in fresh.items()}}
        best, why = pick(timings)
        log.info("fast.auto on %s: %s (%s)", key_parts["device"], best.name, why)
        if known is not None and not again and other is not None and isinstance(known.get("other_work"), (int, float)):
            other = max(other, known["other_work"])  # the record mixes both measurements
        return {**asdict(best), "chosen_by": "measured", "why": why, "step_s": timings[best],
                "compile_tried": (known["compile_tried"] if again else known is not None) or given["compile"] is not None,
                "timings": {json.dumps(asdict(s)): round(t * 1000, 3) for s, t in timings.items()},
                "other_work": other, "measurements": 1 if known is None else known.get("measurements", 1) + again}

    def measured_again(known: dict | None) -> dict:
        """A missing record measured, or one whose timings look disturbed measured once more."""
        if known is None:
            return measured(None)
        log.info("fast.auto: the recorded timings for this machine and shape look disturbed (%s): measuring "
                 "again", stale_reason(known))
        return measured(known, again=True)

    choices, key = Choices(cfg.paths.get("fast_choices") or Path(cfg.paths.cache_dir) / CHOICES_FILE), digest(key_parts)
    record = choices.get_or_measure(key, measured_again, usable=lambda known: stale_reason(known) is None)
    if not record["compile_tried"] and expected_run_s(cfg, record["step_s"], n_train) > COMPILE_WORTH_S:
        record = choices.update(key, lambda known: known if known is not None and known["compile_tried"]
                                else measured(known))
    settings = FastSettings(record["precision"], record["channels_last"], record["compile"])
    return settings, {**record, "key": key_parts}
