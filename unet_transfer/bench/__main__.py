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
  against all blocks (the freezing of the real path: FreezeSchedule -> networks.protocol.set_frozen_blocks);
- data loading throughput (the real train_dataloader, on-line augmentation), and the time to
  simulate the demo's data as a share of the demo study;
- the fixed cost of one run of a sweep (in-process, as a Hydra sweep job pays it) and of a cold
  `python train.py` start;
- achieved FLOP/s (torch.utils.flop_counter) and, on a GPU of known peak, the fraction of it;
- the wall time of the demo study and of the full paper study on this device, estimated from
  the measured rates;
- a short fp32-NCHW vs fast-path agreement check (held-out Dice of the same training).

- where TensorFlow is importable, the paper's own stack (the Keras U-Net) at the same sizes;
- a verdict: is the default path at least the bare fp32 loop at both sizes (and how far from
  the Keras stack).

Variants are measured in alternating rounds (the bare loops run between the real path's
epochs, in a rotating order) after a warm-up round, and the best round of each is reported
(the spread beside it), so rates and ratios hold when other work shares the machine. The whole
bench keeps to a time budget (`--budget-s`, 9 minutes by default): the paper-size rounds take
what the rest leaves. `--quick` shrinks everything to about a minute.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from unet_transfer.bench import concurrency, keras, simulation
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
from unet_transfer.hardware import cpu_busy_now, native_bf16

OTHER_WORK_SHARE = 0.25  # other processes keeping a quarter of the cores busy change the timings


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

    from unet_transfer.training.fast import device_name

    cuda = torch.cuda.is_available()
    if threads:
        torch.set_num_threads(threads)
    device = torch.device("cuda" if cuda else "cpu")
    return {"type": device.type, "name": device_name(device), "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "native_bf16": native_bf16(), "torch": torch.__version__,
            "lightning": pl.__version__, "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None}


def remaining(deadline: float) -> float:
    return deadline - time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unet-transfer bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench.json", help="where to write the results (JSON)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps (~1 minute; for tests)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 with --quick, which is then "
                             "insensitive to other work on the machine)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="wall-time budget of the whole bench (default 540 s; the paper-size rounds take what "
                             "the rest leaves)")
    parser.add_argument("--check-demo", action="store_true",
                        help="afterwards run the demo study from scratch in a temporary folder and compare its wall "
                             "time with the estimate (adds a few minutes)")
    parser.add_argument("--cache-dir", default=None, help="dataset cache (default: the config's paths.cache_dir)")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="where the demo's pretrained checkpoint is, or is made on demand for the agreement "
                             "check (default: the config's paths.checkpoint_dir)")
    args = parser.parse_args(argv)
    if args.quick and args.threads is None:
        args.threads = 1
    start = time.perf_counter()
    deadline = start + (args.budget_s or (60.0 if args.quick else 540.0))
    quiet()
    info = device_info(args.threads)
    cuda = info["type"] == "cuda"
    info["cpu_busy_start"] = None if cuda else cpu_busy_now()
    load = info["load_average_start"]
    busy = info["cpu_busy_start"]
    if busy is None and load and not cuda:  # no /proc/stat: the load average is all there is
        busy = load[0] / (info["cpu_count"] or 1)
    info["busy"] = bool(busy is not None and busy > OTHER_WORK_SHARE)
    if info["busy"]:
        print(f"bench: note: other work is running ({busy:.0%} of {info['cpu_count']} cores busy). Absolute "
              f"timings with {info['threads']} threads will be slower than on an idle machine; the rates are the "
              "best rounds and the ratios come from alternating rounds. `--threads 1` suffers least.", flush=True)
    results: dict = {"version": 2, "quick": args.quick, "device": info, "targets": TARGETS,
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

        def measure(label: str, share: float) -> None:
            budget = start + (deadline - start) * share if label == "demo" else deadline - RESERVE_S
            print(f"bench: {label} size {asdict(size[label])}, up to {plan[label].rounds} rounds of "
                  f"{plan[label].steps} step(s) per variant, {max(0.0, budget - time.perf_counter()):.0f} s budget",
                  flush=True)
            with timed(phases, label):
                measured = measure_size(label, size[label], plan[label], common, work, budget)
            gc.collect()  # the models and Trainer of this size form reference cycles: free them now
            for key in ("throughput", "freeze", "data"):
                results[key][label] = measured[key]

        measure("demo", share=0.2)
        print("bench: simulated data (the demo's sets, built without the cache)", flush=True)
        with timed(phases, "simulation"):
            results["simulation"] = simulation.measure(args.quick)
        print("bench: agreement check (fp32 NCHW vs fast path; may pretrain the demo checkpoint first)", flush=True)
        with timed(phases, "agreement"):
            results["agreement"] = measure_agreement(common, size["demo"], work, epochs=2 if args.quick else 8)
        print("bench: fixed cost of a run", flush=True)
        with timed(phases, "fixed_cost"):
            results["fixed_cost"] = measure_fixed_cost(common, size["demo"], work, repeats=2 if args.quick else 3,
                                                       cold_repeats=1 if args.quick else 2, threads=args.threads)
        measure("paper", share=1.0)
        if cuda and not args.quick:
            paper = results["throughput"]["paper"]
            print("bench: runs at once on the GPU (runs_per_gpu): 1, 2 and 4 training processes", flush=True)
            with timed(phases, "concurrency"):
                results["concurrency"] = concurrency.measure(
                    size["paper"].width, size["paper"].image_size, int(compose_cfg(["experiment=paper_busi",
                                                                                      "output_dir=."]).batch_size),
                    seconds=15.0, precision=paper["precision"], channels_last=paper["channels_last"])
        if keras.available() and not args.quick:
            print("bench: the paper's own stack (Keras on TensorFlow), same sizes", flush=True)
            with timed(phases, "keras"):
                results["keras"] = {label: keras.images_per_s(s.width, s.image_size, s.batch_size,
                                                              budget_s=max(10.0, remaining(deadline) / 2),
                                                              threads=None if cuda else info["threads"])
                                    for label, s in size.items()}
        results["estimate"] = estimates(results)
    results["verdict"] = verdict(results)
    results["wall_s"] = time.perf_counter() - start
    if args.check_demo:
        print("bench: --check-demo: the demo study from scratch, to compare with the estimate", flush=True)
        results["check_demo"] = check_demo(results["estimate"]["demo"]["total_h"] * 3600)
    results["device"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(table(results))
    print(f"\nwritten: {out}")
    return 0


RESERVE_S = 15.0  # kept back from the paper-size rounds for the estimates and the table


def verdict(results: dict) -> dict:
    """Plain answers: is the default path at least the bare fp32 loop at both sizes, and how does
    it compare with the paper's stack where TensorFlow was there to measure."""
    out = {label: {"speedup_vs_bare_fp32": t["speedup"], "meets": t["speedup"] >= 1.0}
           for label, t in results["throughput"].items()}
    if "keras" in results:
        goal = 2.0 if results["device"]["native_bf16"] else 1.2
        for label, k in results["keras"].items():
            ratio = results["throughput"][label]["images_per_s"]["real"] / k["images_per_s"]
            out[label].update({"vs_keras": ratio, "keras_goal": goal, "meets_keras_goal": ratio >= goal})
    return out


def check_demo(estimate_s: float) -> dict:
    """The demo study from scratch (pretraining included) in a temporary folder, timed."""
    import subprocess

    from unet_transfer.training.commands import child_environment

    with tempfile.TemporaryDirectory(prefix="unet-transfer-demo-") as folder:
        begin = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "unet_transfer", "study", "demo"], cwd=folder,
                              env=child_environment(), capture_output=True, text=True)
        wall = time.perf_counter() - begin
    ratio = estimate_s / wall
    return {"measured_s": wall, "estimated_s": estimate_s, "ratio": ratio, "within_25_percent": abs(ratio - 1) <= 0.25,
            "returncode": done.returncode}


if __name__ == "__main__":
    sys.exit(main())
