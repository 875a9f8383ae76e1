"""Why the layers matter: per-block change, CKA and gradient flow of every run, activation
maximisation (Fig. 5) and the analysis report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from unet_transfer.analysis.activation import Settings, maximise, unit_activation
from unet_transfer.analysis.cka import CKAStats, linear_cka
from unet_transfer.checkpoint import save_weights
from unet_transfer.model import UNet
from unet_transfer.networks.protocol import block_map, blocks_of, set_frozen_blocks
from unet_transfer.report import write_report
from unet_transfer.simulate import simulate_ultrasound
from unet_transfer.training.run import run


def test_frozen_blocks_neither_move_nor_get_a_gradient_and_upstream_features_stay(make_cfg, tmp_path):
    torch.manual_seed(5)
    pretrained = save_weights(UNet(width=4), tmp_path / "pretrained.pt", {"width": 4})
    cfg = make_cfg("freeze=deep_to_shallow", "k=3", f"pretrained={pretrained}", "logger=csv",
                   "trainer.max_epochs=2", "augment=none")
    metrics = run(cfg)
    change, cka, grad = (metrics[key] for key in ("block_change", "block_cka", "block_grad_norm"))
    assert all(change[str(b)] == 0.0 for b in range(1, 7)) and all(change[str(b)] > 0 for b in (7, 8, 9))
    assert all(grad[str(b)] == 0.0 for b in range(1, 7)) and all(grad[str(b)] > 0 for b in (7, 8, 9))
    assert all(cka[str(b)] == pytest.approx(1.0, abs=1e-9) for b in range(1, 7))  # same weights, same input
    assert cka["9"] < 1.0
    with open(Path(cfg.output_dir) / "logs" / "metrics.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("grad_norm/dec1")]
    assert len(rows) == 2 and float(rows[0]["grad_norm/enc1"]) == 0.0 and float(rows[0]["grad_norm/dec1"]) > 0


def features(seed: int, n=3, c=5, h=6, w=7) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_gradient_flow_is_each_blocks_gradient_norm_with_its_block_index_copied_once_per_trained_set():
    from types import SimpleNamespace

    from unet_transfer.analysis.measures.gradient_flow import GradientFlow

    torch.manual_seed(0)
    model = UNet(width=4)
    set_frozen_blocks(model, [1, 2])
    block_of, numbers = block_map(model).block_of_name(model), blocks_of(model).numbers
    flow, module = GradientFlow(model), SimpleNamespace(model=model)
    flow.on_fit_start(None, module)
    flow.on_train_epoch_start(None, module)
    expected = []
    for _ in range(3):
        model.zero_grad(set_to_none=True)
        model(torch.rand(2, 1, 32, 32)).square().mean().backward()
        per_block = {b: 0.0 for b in numbers}
        for name, p in model.named_parameters():
            if p.grad is not None:
                per_block[block_of[name]] += float(p.grad.double().square().sum())
        expected.append({b: v ** 0.5 for b, v in per_block.items()})
        flow.on_before_optimizer_step(None, module, None)
    module.log = lambda *args, **kwargs: None
    flow.on_train_epoch_end(None, module)
    means = flow.mean_over_training()
    for b in numbers:
        assert means[b] == pytest.approx(sum(e[b] for e in expected) / 3, rel=1e-6)
    assert means[1] == means[2] == 0.0 and means[9] > 0
    assert len(flow._index) == 1  # one host-to-device copy for the phase, not one per step


def test_linear_cka_is_one_for_the_same_features_and_invariant_to_rotation_and_scale():
    x = features(0)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    rotation, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    rotated = torch.einsum("nchw,cd->ndhw", x, rotation)
    y = features(2) + 0.5 * x
    assert linear_cka(rotated * 7.5, y) == pytest.approx(linear_cka(x, y), abs=1e-12)
    assert linear_cka(x, features(3)) < 0.1  # unrelated features
    stats = CKAStats()  # batch by batch equals all at once
    for part in (slice(0, 1), slice(1, 3)):
        stats.add(x[part], y[part])
    assert stats.value() == pytest.approx(linear_cka(x, y), abs=1e-12)


def planted_detectors() -> nn.Module:
    """Unit 0 answers vertical edges, unit 1 horizontal ones (5x5 kernels, rectified)."""
    net = nn.Sequential(nn.Conv2d(1, 2, 5, padding=2, bias=False), nn.ReLU(), nn.Conv2d(2, 2, 1, bias=False))
    kernels = torch.zeros(2, 1, 5, 5)
    kernels[0, 0, :, :2], kernels[0, 0, :, 3:] = -1, 1
    kernels[1, 0, :2, :], kernels[1, 0, 3:, :] = -1, 1
    with torch.no_grad():
        net[0].weight.copy_(kernels)
        net[2].weight.copy_(torch.eye(2)[:, :, None, None])
    return net


def test_activation_maximisation_finds_a_planted_feature_detector():
    net = planted_detectors()
    images = maximise(net, net[2], [0, 1], Settings(size=32, steps=96, lr=0.05))
    found = unit_activation(net, net[2], images, [0, 1])
    noise = unit_activation(net, net[2], torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0)), [0, 1])
    real = torch.from_numpy(simulate_ultrasound(2, 32, 0).images).float().div(255)[:, None]
    assert (found > noise).all() and (found > unit_activation(net, net[2], real, [0, 1])).all()
    across = (images[:, 0, :, 1:] - images[:, 0, :, :-1]).abs().mean((1, 2))  # horizontal change: vertical edges
    down = (images[:, 0, 1:, :] - images[:, 0, :-1, :]).abs().mean((1, 2))
    assert across[0] > 1.5 * down[0] and down[1] > 1.5 * across[1]
    assert torch.equal(images, maximise(net, net[2], [0, 1], Settings(size=32, steps=96, lr=0.05)))  # seeded


def write_run(root: Path, name: str, trained: list[int], fold: int, speckle: float, change: float) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    blocks = range(1, 10)
    metrics = {"dataset": f"us_speckle{speckle}", "direction": "shallow_to_deep" if 1 in trained else "deep_to_shallow",
               "k": len(trained), "fold": fold, "folds": 3, "epochs": 5, "trainable_blocks": trained, "n_blocks": 9,
               "dice": 0.7, "pixel_error": 3.0, "adjusted_rand": 0.6, "pretrained": "p.pt", "seed": 0,
               "dataset_settings": {"speckle": speckle},
               "block_change": {str(b): change * (b in trained) for b in blocks},
               "block_cka": {str(b): 1.0 - change * (b in trained) for b in blocks},
               "block_grad_norm": {str(b): float(b in trained) for b in blocks}}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_the_analysis_reports_each_strategy_per_block_and_block_1_against_the_swept_setting(tmp_path):
    for speckle in (0.0, 1.0):
        for fold in range(3):
            write_run(tmp_path / "runs", f"c{speckle}_{fold}", [1, 2, 3, 4, 5], fold, speckle, 0.1 + 0.2 * speckle + 0.01 * fold)
            write_run(tmp_path / "runs", f"e{speckle}_{fold}", [6, 7, 8, 9], fold, speckle, 0.2)
    paths = write_report(tmp_path / "runs", only={"analysis.md"})
    text = paths["analysis.md"].read_text()
    assert "Relative weight change" in text and "Linear CKA" in text and "Gradient norm" in text
    assert "Block 1 against `speckle`" in text
    assert "| 1 | contracting-tuned | 3 | 0.310 ± 0.010 | 0.690 ± 0.010 |" in text  # 0.1 + 0.2 + 0.01 fold
    assert "| 0 | expanding-tuned | 3 | 0.000 ± 0.000 | 1.000 ± 0.000 |" in text
    assert {"block1_vs_speckle.png", "analysis.md"} <= set(paths)
    assert sum(1 for line in text.splitlines() if line.startswith("| Contracting path")) == 2 * 3  # 2 datasets x 3 measures
