"""A report over runs of several networks: each network's rows and sweeps apart (labelled
model=<name>), each with its own blocks (names and count, from metrics.json `blocks`), one
section per network in networks.md and networks.png side by side."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet_transfer.report import write_report

pytest.importorskip("monai")

NETWORKS = {  # _target_ -> (extra settings, dice offset)
    "unet_transfer.model.UNet": ({"model.width": 4}, 0.0),
    "unet_transfer.networks.flexunet.build": ({"model.backbone": "resnet18", "model.decoder_channels": [16, 8, 8, 8, 4]},
                                              0.05),
}


def blocks_and_sizes(target: str, settings: dict):
    """The network's block record and each block's parameter count, from its adapter (meta device)."""
    from unet_transfer.checkpoint import build_network, builders
    from unet_transfer.networks.protocol import block_map

    arguments = {key[len("model."):]: value for key, value in settings.items()}
    with torch.device("meta"):
        blocks = block_map(build_network(builders()[target], arguments))
    return blocks.blocks, {n: sum(p.numel() for p in blocks.parameters(n)) for n in blocks.blocks.numbers}


def write_run(root: Path, target: str, direction: str, k: int, fold: int, layout, sizes, dice: float) -> None:
    extra, _ = NETWORKS[target]
    trained = list(layout.numbers) if direction == "none" else list(layout.swept(direction, k))
    settings = {"model._target_": target, **extra, "dataset.image_size": 64, "pretrained": f"pre/{target}.pt"}
    metrics = {"dataset": "busi", "direction": direction, "freeze": direction, "k": len(trained), "fold": fold,
               "folds": 3, "trainable_blocks": trained, "dice": dice, "pixel_error": 2.0, "adjusted_rand": 0.6,
               "epochs": 2, "seed": 0, "pretrained": f"pre/{target}.pt", "image_size": 64,
               "trainable_params": sum(sizes[b] for b in trained),
               "trainable_share": sum(sizes[b] for b in trained) / sum(sizes.values()),
               "n_blocks": layout.n, "depth": "longest", "blocks": layout.record(), "settings": settings}
    folder = root / f"{target.split('.')[-2]}_{direction}_k{k}_f{fold}"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("networks")
    for target, (extra, offset) in NETWORKS.items():
        layout, sizes = blocks_and_sizes(target, extra)
        for direction in ("shallow_to_deep", "deep_to_shallow"):
            for k in layout.k_range:
                for fold in range(3):
                    dice = 0.6 + offset + 0.02 * k * (direction == "shallow_to_deep") + 0.01 * k + 0.01 * fold
                    write_run(root, target, direction, k, fold, layout, sizes, dice)
        for fold in range(3):
            write_run(root, target, "none", 0, fold, layout, sizes, 0.8 + offset)
    return root, write_report(root)


def test_each_network_is_its_own_sweep_with_its_own_blocks(report):
    root, paths = report
    text = (root / "summary.md").read_text()
    assert "model=flexunet" in text and "model=unet" in text
    assert "decoder_channels" not in text and "pretrained=" not in text  # a network's own settings say nothing more
    assert "11 (head, deepest)" in text and "9 (dec1, deepest)" in text  # each network's legend, own n and names
    assert "networks.md" in text and "networks.png" in text
    for network in ("model=flexunet", "model=unet"):  # each network's main sweep has its own reference rows
        section = text.split(f"### Contracting vs expanding (pretrained, 2 epochs, {network})")[1].split("###")[0]
        assert "| All blocks fine-tuned |" in section
    assert "Other configurations" not in text


def test_networks_md_has_one_section_per_network_with_its_block_names(report):
    root, paths = report
    text = (root / "networks.md").read_text()
    unet, flex = text.split("### The 4-level U-Net")[1].split("### FlexibleUNet (resnet18)")
    assert "enc1" in unet and "layer1" not in unet
    assert "stem, layer1" in flex and "decoder4, head" in flex and "enc1" not in flex
    assert "100.0%" in flex  # k = n trains every parameter


def test_networks_figure_and_fig4_are_drawn_per_network(report):
    root, paths = report
    for name in ("networks.png", "dice_vs_blocks.png"):
        image = np.asarray(Image.open(root / name).convert("L"), dtype=float)
        assert image.std() > 10, name
    assert Image.open(root / "dice_vs_blocks.png").size[0] > Image.open(root / "networks.png").size[0] * 1.2


def test_fig4_legend_names_each_reference_once_when_each_panel_is_one_network(report, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from unet_transfer.inference.choose import study_rows
    from unet_transfer.report.fig4 import plot_metric_vs_blocks

    root, _ = report
    labels = []
    draw = Figure.legend
    monkeypatch.setattr(Figure, "legend", lambda self, handles, names, **kw: labels.extend(names) or draw(
        self, handles, names, **kw))
    assert plot_metric_vs_blocks(study_rows(root)[0], "dice", tmp_path / "fig4.png")
    assert labels.count("All blocks fine-tuned") == 1 and not [name for name in labels if "model=" in name]


def test_a_checkpoint_names_a_row_only_where_one_network_started_from_several():
    from unet_transfer.report.collect import variant_settings

    def run(backbone, checkpoint):
        return {"dataset": "busi", "method": "freeze", "has_pretrained": True,
                "settings": {"model._target_": "unet_transfer.networks.flexunet.build", "model.backbone": backbone,
                             "pretrained": checkpoint}}

    flex = ("busi", "freeze", "unet_transfer.networks.flexunet.build")
    each_its_own = variant_settings([run("resnet18", "r.pt"), run("efficientnet-b0", "e.pt")])
    assert each_its_own[flex] == {"model.backbone"}  # the backbone says it; its checkpoint says nothing more
    two_starts = variant_settings([run("resnet18", "r.pt"), run("resnet18", "other.pt"), run("efficientnet-b0", "e.pt")])
    assert two_starts[flex] == {"model.backbone", "pretrained"}
