"""Speed and memory benchmark of the training stack on this machine (make bench).

    unet-transfer bench [--out bench.json] [--quick] [--threads N]   (make bench)

On whatever device is present (CUDA if available, else the CPU) it measures, and writes to
bench.json plus a readable table on stdout:

- training throughput of the real path (Lightning Trainer + SegmentationModule +
  SegmentationDataModule reading the cache, default fast settings) against a bare fp32 NCHW
  PyTorch loop with torch's default Adam (speedup), against a bare loop with the same precision,
  layout and optimiser fed by the same DataLoader (framework overhead), and against that loop on
  one fixed in-memory batch (what loading adds), at the paper's size and at the demo's size;
- step/epoch time, FLOPs and memory when only the deepest or only the shallowest block trains,
  against all blocks (the freezing of the real path: FreezeSchedule -> UNet.set_frozen_blocks);
- data loading throughput (the real train_dataloader, on-line augmentation);
- the fixed cost of one run of a sweep (in-process, as a Hydra sweep job pays it) and of a cold
  `python train.py` start;
- achieved FLOP/s (torch.utils.flop_counter) and, on a GPU of known peak, the fraction of it;
- the wall time of the demo study and of the full paper study on this device, estimated from
  the measured rates;
- a short fp32-NCHW vs fast-path agreement check (held-out Dice of the same training).

Variants are measured in alternating rounds (the bare loops run between the real path's
epochs, in a rotating order) after a warm-up round, and medians are reported, so the ratios hold
even when other work shares the machine. `--quick` shrinks everything to about a minute.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from unet_transfer.bench.common import TARGETS, compose_cfg, plans, sizes
from unet_transfer.bench.estimate import estimates
from unet_transfer.bench.runs import (
    measure_agreement,
    measure_fixed_cost,
    stand_in_checkpoint,
    timed,
)
from unet_transfer.bench.table import table
from unet_transfer.bench.throughput import measure_size
from unet_transfer.hardware import fast_precision, native_bf16


def quiet() -> None:
    import warnings

    import pytorch_lightning  # noqa: F401  (it sets its loggers to INFO on import; lower them after)

    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric", "unet_transfer"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")


def device_info(threads: int | None) -> dict:
    import pytorch_lightning as pl
    import torch

    cuda = torch.cuda.is_available()
    if threads:
        torch.set_num_threads(threads)
    name = torch.cuda.get_device_name() if cuda else (platform.processor() or platform.machine())
    if not cuda:
        try:
            with open("/proc/cpuinfo") as handle:
                name = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), name)
        except OSError:
            pass
    cfg = compose_cfg(["output_dir=."])
    return {"type": "cuda" if cuda else "cpu", "name": name, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "native_bf16": native_bf16(), "precision": fast_precision(),
            "configured_precision": str(cfg.trainer.precision), "channels_last": bool(cfg.fast.channels_last),
            "compile": bool(cfg.fast.compile), "torch": torch.__version__, "lightning": pl.__version__,
            "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unet-transfer bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench.json", help="where to write the results (JSON)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps (~1 minute; for tests)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 with --quick, which is then "
                             "insensitive to other work on the machine)")
    parser.add_argument("--cache-dir", default=None, help="dataset cache (default: the config's paths.cache_dir)")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="where the demo's pretrained checkpoint is, or is made on demand for the agreement "
                             "check (default: the config's paths.checkpoint_dir)")
    args = parser.parse_args(argv)
    if args.quick and args.threads is None:
        args.threads = 1
    start = time.perf_counter()
    quiet()
    info = device_info(args.threads)
    cuda = info["type"] == "cuda"
    load = info["load_average_start"]
    info["busy"] = bool(load and not cuda and load[0] > 0.5 * (info["cpu_count"] or 1))
    if info["busy"]:
        print(f"bench: note: other work is running (load {load[0]:.1f} on {info['cpu_count']} cores). Absolute "
              f"timings with {info['threads']} threads will be slower than on an idle machine (threads wait for "
              "each other's turn on a core); the alternating rounds keep the ratios comparable. "
              "`--threads 1` suffers least.", flush=True)
    results: dict = {"version": 1, "quick": args.quick, "device": info, "targets": TARGETS,
                     "throughput": {}, "freeze": {}, "data": {}}
    with tempfile.TemporaryDirectory(prefix="unet-transfer-bench-") as tmp:
        work = Path(tmp)
        cache_dir = Path(args.cache_dir or compose_cfg(["output_dir=."]).paths.cache_dir).resolve()
        checkpoint_dir = Path(args.checkpoint_dir or "checkpoints").resolve()
        common = ["experiment=demo", f"paths.cache_dir={cache_dir}", f"paths.checkpoint_dir={checkpoint_dir}",
                  "trainer.enable_progress_bar=false"]
        if args.threads:
            common.append(f"threads={args.threads}")
        size, plan = sizes(args.quick), plans(args.quick, cuda)
        if args.quick:  # an untrained stand-in for the demo's pretrained checkpoint: no pretraining
            stand_in_checkpoint(common, size["demo"], work)
        phases = results["phase_s"] = {}
        for label in ("demo", "paper"):
            print(f"bench: {label} size {asdict(size[label])}, {plan[label].rounds} rounds of "
                  f"{plan[label].steps} steps per variant", flush=True)
            with timed(phases, label):
                measured = measure_size(label, size[label], plan[label], common, work)
            gc.collect()  # the models and Trainer of this size form reference cycles: free them now
            for key in ("throughput", "freeze", "data"):
                results[key][label] = measured[key]
        print("bench: agreement check (fp32 NCHW vs fast path; may pretrain the demo checkpoint first)",
              flush=True)
        with timed(phases, "agreement"):
            results["agreement"] = measure_agreement(common, size["demo"], work, epochs=2 if args.quick else 8)
        print("bench: fixed cost of a run", flush=True)
        with timed(phases, "fixed_cost"):
            results["fixed_cost"] = measure_fixed_cost(common, size["demo"], work, repeats=2 if args.quick else 3,
                                                       cold_repeats=1 if args.quick else 3, threads=args.threads)
        results["estimate"] = estimates(results)
    results["wall_s"] = time.perf_counter() - start
    results["device"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(table(results))
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
