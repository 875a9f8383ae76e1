"""A sample sheet: simulated images next to real ones, mask outlines drawn, for a person to judge."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unet_transfer.data.arrays import SegmentationSet
from unet_transfer.simulate.natural import simulate_natural
from unet_transfer.simulate.ultrasound import simulate_ultrasound
from unet_transfer.simulate.xray import simulate_xray


def _rows(size: int, seed: int, n: int) -> list[tuple[str, SegmentationSet]]:
    return [
        ("simulated ultrasound, benign", simulate_ultrasound(n, size, seed, malignant_fraction=0.0)),
        ("simulated ultrasound, malignant", simulate_ultrasound(n, size, seed + 1, malignant_fraction=1.0)),
        ("simulated chest X-ray", simulate_xray(n, size, seed)),
        ("simulated natural scene", simulate_natural(n, size, seed)),
    ]


def write_sample_sheet(
    path: str | Path,
    size: int = 256,
    seed: int = 0,
    n_per_kind: int = 4,
    real: dict[str, SegmentationSet] | None = None,
) -> Path:
    """Write a PNG grid: one row per simulator (ultrasound benign and malignant, X-ray,
    natural), then one row per entry of ``real`` (its first images, labelled by name), each
    image with its mask outlined in red. Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(size, seed, n_per_kind)
    for name, data in (real or {}).items():
        rows.append((f"real: {name}", data))
    cols = n_per_kind
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.4 * cols, 2.55 * len(rows)), squeeze=False)
    for r, (title, data) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(data):
                ax.axis("off")
                continue
            ax.imshow(data.images[c], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            mask = data.masks[c]
            if mask.any() and not mask.all():
                ax.contour(mask.astype(np.float32), levels=[0.5], colors="red", linewidths=0.8)
            label = data.ids[c] if data.labels is None else f"{data.ids[c]} ({data.labels[c]})"
            ax.set_xlabel(label, fontsize=7)
        axes[r, 0].set_ylabel(title, fontsize=8)
    fig.suptitle(f"Sample sheet: size {size}, seed {seed} (red: mask outline)", fontsize=10)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.98))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
