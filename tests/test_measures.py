"""The per-run analysis measures' registry (unet_transfer/analysis/registry.py): a new measure is
one class with `@measure`; every run records its summary in metrics.json and analysis.md shows
it; fine-tuning methods' per-block summaries are tabulated too; the report reads the registry
without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unet_transfer.analysis.registry import MEASURES, Measure, Shown, measure, shown, unregister
from unet_transfer.checkpoint import save_weights
from unet_transfer.model import UNet
from unet_transfer.report import write_report
from unet_transfer.training.run import run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def weight_size():
    """A measure registered by the test alone: each block's mean |weight| when training ends."""

    @measure
    class MeanWeight(Measure):
        shows = (Shown("block_mean_weight", "Mean absolute weight after training", "a test's measure",
                       "Mean |w|", colormap="viridis"),)

        def __init__(self, model):
            self.values: dict[int, float] = {}

        def on_train_end(self, trainer, pl_module) -> None:
            from unet_transfer.networks.protocol import block_map

            blocks = block_map(pl_module.model)
            for number in blocks.blocks.numbers:
                weights = torch.cat([p.detach().abs().flatten() for p in blocks.parameters(number)])
                self.values[number] = float(weights.double().mean())

        def summary(self):
            return {"block_mean_weight": self.values}

    yield MeanWeight
    unregister(MeanWeight)
    assert "MeanWeight" not in MEASURES


def test_a_measure_registered_in_one_class_lands_in_metrics_json_and_in_the_analysis(make_cfg, tmp_path, weight_size):
    torch.manual_seed(3)
    pretrained = save_weights(UNet(width=4), tmp_path / "pretrained.pt", {"width": 4})
    cfg = make_cfg("freeze=shallow_to_deep", "k=5", f"pretrained={pretrained}", "augment=none", name="runs/c5")
    metrics = run(cfg)
    written = json.loads((Path(cfg.output_dir) / "metrics.json").read_text())
    assert set(written["block_mean_weight"]) == {str(b) for b in range(1, 10)}
    assert all(value > 0 for value in written["block_mean_weight"].values())
    assert {"block_change", "block_cka", "block_grad_norm"} <= set(written)  # the built-in ones still there
    assert metrics["block_mean_weight"] == written["block_mean_weight"]
    text = write_report(tmp_path / "runs", only={"analysis.md"})["analysis.md"].read_text()
    assert "### Mean absolute weight after training" in text
    section = text.split("### Mean absolute weight after training")[1].split("###")[0]
    row = next(line for line in section.splitlines() if line.startswith("| Contracting"))
    assert row.split(" | ")[1] == f"{written['block_mean_weight']['1']:.3f}"  # block 1, one fold


def test_a_methods_per_block_summary_is_tabulated(tmp_path):
    for fold in range(2):
        folder = tmp_path / "runs" / f"rgn_{fold}"
        folder.mkdir(parents=True)
        folder.joinpath("metrics.json").write_text(json.dumps({
            "dataset": "us", "direction": "shallow_to_deep", "k": 9, "fold": fold, "folds": 2, "epochs": 5,
            "trainable_blocks": list(range(1, 10)), "n_blocks": 9, "dice": 0.7, "pixel_error": 3.0,
            "adjusted_rand": 0.6, "pretrained": "p.pt", "seed": 0, "method": "auto_rgn",
            "settings": {"finetune": "auto_rgn"},
            "rgn_scale": {str(b): 0.1 * b + 0.01 * fold for b in range(1, 10)}}))
    text = write_report(tmp_path / "runs", only={"analysis.md"})["analysis.md"].read_text()
    assert "### Method summary: `rgn_scale` (finetune=auto_rgn)" in text
    table = text.split("### Method summary: `rgn_scale`")[1]
    assert "| 0.105 ± 0.007 |" in table and "| 0.905 ± 0.007 |" in table  # blocks 1 and 9 over the 2 folds


def test_a_measure_may_not_take_another_measures_key():
    class Copy(Measure):
        shows = (Shown("block_cka", "CKA again", "", "CKA"),)

    with pytest.raises(ValueError, match="block_cka.*another measure's"):
        measure(Copy)
    assert "Copy" not in MEASURES


def test_the_report_reads_the_registry_without_torch():
    code = ("import sys; import unet_transfer.report.block_report; from unet_transfer.analysis.registry import shown;"
            "print([s.key for s in shown()], 'torch' in sys.modules, 'pytorch_lightning' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "['block_change', 'block_cka', 'block_grad_norm'] False False", result.stderr[-2000:]
    assert [s.key for s in shown()][:3] == ["block_change", "block_cka", "block_grad_norm"]
