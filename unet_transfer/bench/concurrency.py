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
    """Train the bench's bare loop (fused Adam, as the real path) for `seconds` after a warm-up;
    images per second."""
    import torch

    from unet_transfer.bench.common import synchronize
    from unet_transfer.bench.loops import BareLoop
    from unet_transfer.model import UNet

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loop = BareLoop(UNet(width=width), device, lr=1e-4, channels_last=channels_last, precision=precision,
                    optimizer=lambda params: torch.optim.Adam(params, lr=1e-4, fused=True))
    images = torch.rand(batch, 1, size, size, device=device)
    masks = (torch.rand(batch, 1, size, size, device=device) > 0.5).float()
    loop.warm_up(images, masks, 5)
    images, masks = loop.inputs(images, masks)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        loop.step(images, masks)
        steps += 1
    synchronize(device)
    return {"images_per_s": steps * batch / (time.perf_counter() - start)}


def measure(width: int, size: int, batch: int, seconds: float, precision: str, channels_last: bool,
            counts=(1, 2, 4)) -> dict:
    """{count: total images/s of `count` processes at once} and the best count."""
    from unet_transfer.training.commands import child_environment

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
