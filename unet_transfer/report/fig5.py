"""The paper's Fig. 5 (activation_maximisation.png): inputs that maximise single units of the
4th convolution and of the deepest one, for the loaded (pretrained) network and the
fine-tuned ones side by side, so a reader sees whether shallow units learned speckle-like
texture. The fine-tuned weights are those the runs kept (`keep_weights`: weights.pt in the
run folder of the first fold of contracting, expanding and all)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from unet_transfer.report.aggregate import primary_group
from unet_transfer.report.block_report import strategies
from unet_transfer.report.registry import Report, entry
from unet_transfer.run_files import KEPT_WEIGHTS

FIGURE = "activation_maximisation.png"
LAYERS = (4, -1)  # the paper's: the 4th convolution and the deepest one (1-based; -1 = last)
UNITS = 6  # channels shown per layer (the same units in every net: fine-tuning keeps their identity)


def kept_nets(report: Report, dataset: str) -> dict[str, Path]:
    """{'pretrained': checkpoint, 'contracting': weights, ...} for the dataset's primary sweep."""
    group = primary_group(report.rows, dataset)
    if group is None:
        return {}
    nets: dict[str, Path] = {}
    for name, row in strategies(report.rows, group).items():
        kept = sorted((run for run in row["runs"] if (run["path"] / KEPT_WEIGHTS).is_file()),
                      key=lambda r: (r["fold"], str(r["seed"])))
        if kept:
            nets[name] = kept[0]["path"] / KEPT_WEIGHTS
            pretrained = kept[0].get("pretrained_file")
            if pretrained and Path(pretrained).is_file():
                nets.setdefault("pretrained", Path(pretrained))
    order = ("pretrained", "contracting", "expanding", "all")
    return {name: nets[name] for name in order if name in nets} if len(nets) > 1 else {}


def load(path: Path):
    """The network of a kept checkpoint, built as predict builds one: only a registered network
    (networks/protocol.ADAPTERS), its settings and tensors checked on the meta device first."""
    from unet_transfer.checkpoint import checked_network, read_checkpoint

    return checked_network(read_checkpoint(path, setting="checkpoint"), path)[0]


def images_of(nets: dict[str, Path], size: int, steps: int, units: int) -> dict[tuple[str, int], object]:
    """(net, layer) -> the maximising images of the first `units` channels of that layer."""
    from unet_transfer.analysis.activation import Settings, maximise
    from unet_transfer.networks.protocol import convolutions as body_convolutions

    out = {}
    for name, path in nets.items():
        model = load(path)
        convolutions = body_convolutions(model)  # (block, conv) in depth order, the output head left out
        for layer in LAYERS:
            _, conv = convolutions[layer - 1 if layer > 0 else layer]
            chosen = list(range(min(units, conv.out_channels)))
            out[(name, layer)] = maximise(model, conv, chosen, Settings(size=size, steps=steps)).squeeze(1).numpy()
    return out


def plot(images: dict, nets: list[str], path: Path, title: str) -> Path:
    units = max(len(v) for v in images.values())
    fig = Figure(figsize=(1.15 * units * len(LAYERS) + 1.2, 1.25 * len(nets) + 1.0), dpi=150, layout="constrained")
    panels = fig.subfigures(1, len(LAYERS), wspace=0.04)
    for panel, layer in zip(panels, LAYERS, strict=True):
        axes = panel.subplots(len(nets), units, squeeze=False)
        for r, name in enumerate(nets):
            for c in range(units):
                ax = axes[r, c]
                ax.set_xticks([])
                ax.set_yticks([])
                grid = images[(name, layer)]
                if c < len(grid):
                    ax.imshow(grid[c], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                if c == 0:
                    ax.set_ylabel(name if name == "pretrained" else f"{name}-tuned", fontsize=8)
                if r == 0:
                    ax.set_title(f"unit {c}", fontsize=7)
        which = "4th convolution" if layer == 4 else "deepest convolution" if layer == -1 else f"convolution {layer}"
        panel.suptitle(which, fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=150)
    return path


@entry(FIGURE, order=75, describes={FIGURE: "Fig. 5, inputs that maximise single units, pretrained vs fine-tuned"})
def write_activation(report: Report, out: Path, steps: int = 128) -> dict[str, Path]:
    for dataset in sorted({r["dataset"] for r in report.rows}):
        nets = kept_nets(report, dataset)
        if nets:
            size = next(int(r["image_size"]) for r in report.runs if r["dataset"] == dataset and r.get("image_size"))
            images = images_of(nets, size, steps, UNITS)
            return {FIGURE: plot(images, list(nets), out / FIGURE, f"{dataset}: inputs that maximise single units")}
    report.notes.append(f"{FIGURE}: no run kept its weights (keep_weights) beside a pretrained checkpoint; skipped")
    return {}
