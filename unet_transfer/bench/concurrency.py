"""Runs at once on one GPU (`runs_per_gpu`): a paper-size run leaves a large GPU mostly idle
(small convolutions, the Python loop, data loading), so several runs at once get through a
study faster. This times 1, 2, ... training processes at once on the GPU, each a bare
training loop with the real path's settings, and reports the total throughput of each count.

    python -m unet_transfer.bench.concurrency --width 64 --size 256 --batch 8 --seconds 20 (one worker)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def worker(width: int, size: int, batch: int, seconds: float, precision: str, channels_last: bool) -> dict:
    """Train a bare loop for `seconds` after a warm-up; images per second."""
    import torch
    import torch.nn.functional as F

    from unet_transfer.model import UNet

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = UNet(width=width).to(device, memory_format=memory)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    images = torch.rand(batch, 1, size, size, device=device).contiguous(memory_format=memory)
    masks = (torch.rand(batch, 1, size, size, device=device) > 0.5).float()
    dtype = torch.bfloat16 if precision.startswith("bf16") else None

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.binary_cross_entropy_with_logits(model(images).float(), masks)
        loss.backward()
        optimizer.step()

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(5):
        step()
    synchronize()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    synchronize()
    return {"images_per_s": steps * batch / (time.perf_counter() - start)}


def measure(width: int, size: int, batch: int, seconds: float, precision: str, channels_last: bool,
            counts=(1, 2, 4)) -> dict:
    """{count: total images/s of `count` processes at once} and the best count."""
    from unet_transfer.study.commands import child_environment

    command = [sys.executable, "-m", "unet_transfer.bench.concurrency", "--width", str(width), "--size", str(size),
               "--batch", str(batch), "--seconds", str(seconds), "--precision", precision,
               *(["--channels-last"] if channels_last else [])]
    totals = {}
    for count in counts:
        processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=child_environment())
                     for _ in range(count)]
        rates = [json.loads(p.communicate()[0].strip().splitlines()[-1])["images_per_s"] for p in processes]
        totals[count] = sum(rates)
    best = max(totals, key=totals.get)
    return {"images_per_s": totals, "best_count": best, "gain": totals[best] / totals[counts[0]],
            "size": {"width": width, "image_size": size, "batch_size": batch}, "precision": precision,
            "channels_last": channels_last}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(worker(args.width, args.size, args.batch, args.seconds, args.precision, args.channels_last)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
