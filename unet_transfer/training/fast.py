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
"""

from __future__ import annotations

import copy
import json
import logging
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


class Choices:
    """The measured choices of this cache folder, one per machine and shape."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # none yet, or damaged: measuring again only costs time

    def get_or_measure(self, key: str, measure: Callable[[], dict]) -> dict:
        known = self.read().get(key)
        return known if known is not None else self.update(key, lambda found: found if found else measure())

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

    def measured(known: dict | None) -> dict:
        """The base candidates, or (given a record) the compiled variant of its winner added."""
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            if known is None:
                timings = {s: measure(model, optimizer_factory, s, shape, device)
                           for s in candidates(given, native_bf16(), try_compile=False)}
            else:
                timings = {FastSettings(**{k: v for k, v in json.loads(name).items()}): ms / 1000
                           for name, ms in known["timings"].items()}
                best, _ = pick(timings)
                compiled = FastSettings(best.precision, best.channels_last, True)
                timings[compiled] = measure(model, optimizer_factory, compiled, shape, device)
        best, why = pick(timings)
        log.info("fast.auto on %s: %s (%s)", key_parts["device"], best.name, why)
        return {**asdict(best), "chosen_by": "measured", "why": why, "step_s": timings[best],
                "compile_tried": known is not None or given["compile"] is not None,
                "timings": {json.dumps(asdict(s)): round(t * 1000, 3) for s, t in timings.items()}}

    choices, key = Choices(cfg.paths.get("fast_choices") or Path(cfg.paths.cache_dir) / CHOICES_FILE), digest(key_parts)
    record = choices.get_or_measure(key, lambda: measured(None))
    if not record["compile_tried"] and expected_run_s(cfg, record["step_s"], n_train) > COMPILE_WORTH_S:
        record = choices.update(key, lambda known: known if known["compile_tried"] else measured(known))
    settings = FastSettings(record["precision"], record["channels_last"], record["compile"])
    return settings, {**record, "key": key_parts}
