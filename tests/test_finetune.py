"""Beyond freezing: each fine-tuning method trains what it says and leaves the rest untouched;
depth=shortest; gradual unfreezing with per-phase learning rates; the Methods report."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from unet_transfer.blocks import Blocks
from unet_transfer.checkpoint import read_state_dict, save_weights
from unet_transfer.finetune.auto_rgn import AutoRGN, rgn_scales
from unet_transfer.finetune.l2sp import L2SP
from unet_transfer.finetune.lora import LoRA, LoRAConv2d, adapted
from unet_transfer.model import UNet
from unet_transfer.networks.protocol import block_map, blocks_of, set_frozen_blocks
from unet_transfer.report import write_report
from unet_transfer.training.run import run


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    torch.manual_seed(11)
    return save_weights(UNet(width=4), tmp_path_factory.mktemp("ckpt") / "pretrained.pt", {"width": 4})


def trained_weights(make_cfg, tmp_path, pretrained, name: str, *overrides) -> tuple[dict, dict, dict]:
    """(loaded, trained) state dicts and the metrics of a short run from `pretrained`."""
    out = tmp_path / f"{name}.pt"
    metrics = run(make_cfg(f"pretrained={pretrained}", f"save_weights={out}", "augment=none", "trainer.max_epochs=2",
                           *overrides, name=name))
    return read_state_dict(pretrained)[0], read_state_dict(out)[0], metrics


@pytest.mark.parametrize("method", ["freeze", "layer_lr", "l2sp", "bitfit", "auto_rgn", "lora"])
def test_every_method_leaves_frozen_blocks_bit_identical(make_cfg, tmp_path, pretrained, method):
    before, after, metrics = trained_weights(make_cfg, tmp_path, pretrained, method, "freeze=deep_to_shallow", "k=3",
                                             f"finetune={method}")
    model = UNet(width=4)
    block_of = block_map(model).block_of_name(model)
    assert metrics["method"] == method and 0 < metrics["trainable_share"] < 1 and metrics["train_time_s"] > 0
    for key, tensor in before.items():
        if block_of[key] <= 6:
            assert torch.equal(tensor, after[key]), f"{method}: {key} is frozen but changed"
    assert any(not torch.equal(before[k], after[k]) for k in before if block_of[k] > 6)


def test_bitfit_trains_only_biases(make_cfg, tmp_path, pretrained):
    before, after, metrics = trained_weights(make_cfg, tmp_path, pretrained, "bitfit", "finetune=bitfit",
                                             "finetune.head=false")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(".bias") for k in changed)
    assert metrics["trainable_params"] == sum(t.numel() for k, t in before.items() if k.endswith(".bias"))


def test_layer_lr_with_zero_factors_is_hard_freezing_bit_for_bit(make_cfg, tmp_path, pretrained):
    _, frozen, first = trained_weights(make_cfg, tmp_path, pretrained, "frozen", "freeze=deep_to_shallow", "k=3")
    zeros = "finetune.factors=[0,0,0,0,0,0,1,1,1]"
    _, limit, second = trained_weights(make_cfg, tmp_path, pretrained, "zeros", "finetune=layer_lr", zeros)
    assert all(torch.equal(frozen[k], limit[k]) for k in frozen)
    assert first["dice"] == second["dice"] and second["trainable_params"] == first["trainable_params"]


def test_layer_lr_decays_by_depth_in_either_direction():
    from unet_transfer.finetune.layer_lr import LayerLR

    layout = Blocks()
    deep = [LayerLR(decay=0.5, faster="deep").factor(layout, b) for b in layout.numbers]
    assert deep == [0.5**8, 0.5**7, 0.5**6, 0.5**5, 0.5**4, 0.5**3, 0.25, 0.5, 1.0]
    shallow = [LayerLR(decay=0.5, faster="shallow", depth="shortest").factor(layout, b) for b in layout.numbers]
    assert shallow == [1.0, 0.5, 0.25, 0.125, 0.0625, 0.125, 0.25, 0.5, 1.0]  # dec_i as shallow as enc_i


def test_l2sp_is_zero_at_the_pretrained_weights_and_grows_with_distance():
    model = UNet(width=4)
    method = L2SP(alpha=0.1, beta=0.0)
    method.prepare(model, blocks_of(model).numbers)
    assert method.penalty(model).item() == 0.0
    direction = {name: torch.randn_like(p) for name, p in model.named_parameters()}
    values = []
    for step in (1e-3, 2e-3, 4e-3):
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(method.anchor[name] + step * direction[name])
        values.append(method.penalty(model).item())
    assert 0 < values[0] < values[1] < values[2]
    assert values[1] / values[0] == pytest.approx(4.0, rel=1e-3)  # quadratic: alpha/2 ||w - w0||^2


def test_auto_rgn_scales_each_tensor_by_its_relative_gradient_norm():
    weights = [torch.full((4,), 2.0), torch.full((4,), 1.0), torch.full((9,), 3.0)]
    grads = [torch.full((4,), 0.2), torch.full((4,), 0.4), torch.full((9,), 0.3)]
    rgn = [0.1, 0.4, 0.1]  # ||g|| / ||w||
    assert rgn_scales(weights, grads).tolist() == pytest.approx([r / max(rgn) for r in rgn])
    params = [torch.nn.Parameter(w.clone()) for w in weights]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    optimizer = torch.optim.SGD([{"params": [p], "lr": 0.01, "base_lr": 0.01, "block": i + 1} for i, p in enumerate(params)])
    method = AutoRGN()
    method._sum, method._steps = {}, 0  # what on_train_epoch_start sets
    method.on_before_optimizer_step(None, None, optimizer)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.01 * r / max(rgn) for r in rgn])


def test_lora_keeps_the_base_bit_identical_and_merges_into_the_same_network():
    torch.manual_seed(0)
    model = UNet(width=4)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    method = LoRA(rank=2, alpha=4.0, blocks=[1, 9])
    set_frozen_blocks(model, set())
    method.prepare(model, blocks_of(model).numbers)
    block_of = block_map(model).block_of_name(model)
    assert {block_of[n] for n, p in model.named_parameters() if p.requires_grad} == {1, 9}
    assert all(".lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    images, masks = torch.rand(2, 1, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float()
    model.eval()  # no dropout: the outputs below must be comparable
    for _ in range(5):
        optimizer.zero_grad()
        F.binary_cross_entropy_with_logits(model(images), masks).backward()
        optimizer.step()
    convolutions = sum(isinstance(m, torch.nn.Conv2d) for b in (1, 9) for m in UNet(width=4).block(b).modules())
    assert len(adapted(model)) == convolutions and all(isinstance(a, LoRAConv2d) for _, _, a in adapted(model))
    bases = {n.replace("base.", ""): p for n, p in model.state_dict().items() if ".lora_" not in n}
    assert all(torch.equal(base[k], bases[k]) for k in base)  # the frozen base never moved
    with torch.no_grad():
        adapted_output = model(images)
    method.merge(model)
    assert not adapted(model) and set(model.state_dict()) == set(base)  # an ordinary U-Net again
    with torch.no_grad():
        assert torch.allclose(model(images), adapted_output, atol=1e-5)


def test_gradual_unfreezing_gives_each_phase_its_own_learning_rate(make_cfg, tmp_path, pretrained):
    from unet_transfer.training.build import build

    cfg = make_cfg("freeze=gradual_shallow", "freeze.phases=[{epoch: 2, direction: contracting, lr: 0.5}]",
                   f"pretrained={pretrained}", "trainer.max_epochs=3", "augment=none")
    built = build(cfg)
    built.trainer.fit(built.module, built.datamodule)
    groups = built.trainer.optimizers[0].param_groups
    assert [g["lr"] for g in groups][:2] == [1e-4, 0.5]  # block 1 at the optimiser's lr, the contracting phase at 0.5
    block_of = block_map(built.model).block_of_name(built.model)
    assert {block_of[n] for n, p in built.model.named_parameters() if p.requires_grad} == {1, 2, 3, 4, 5}


def test_depth_shortest_sweeps_tiers_in_both_directions_and_the_report_says_so(make_cfg, tmp_path):
    for direction in ("shallow_to_deep", "deep_to_shallow"):
        for k in range(1, 6):
            metrics = run(make_cfg("depth=shortest", f"freeze={direction}", f"k={k}", "trainer.limit_train_batches=1",
                                   name=f"runs/{direction}{k}"))
            assert metrics["depth"] == "shortest"
            if (direction, k) == ("shallow_to_deep", 1):
                assert metrics["trainable_blocks"] == [1, 9]
            if (direction, k) == ("deep_to_shallow", 2):
                assert metrics["trainable_blocks"] == [4, 5, 6]
    text = write_report(tmp_path / "runs")["summary.md"].read_text()
    table = text.split("By number of fine-tuned depth tiers (shortest path) k")[1]
    assert "| 1 | 1, 9 |" in table and "| 5 | 1–9 |" in table and "1: blocks 1, 9" in table


def test_the_methods_section_compares_every_way_with_full_fine_tuning(make_cfg, tmp_path, pretrained):
    for method in ("freeze", "bitfit", "lora"):
        for fold in range(2):
            run(make_cfg(f"finetune={method}", f"fold={fold}", "folds=2", f"pretrained={pretrained}",
                         "trainer.limit_train_batches=1", name=f"runs/{method}{fold}"))
    for fold in range(2):
        run(make_cfg("freeze=contracting", f"fold={fold}", "folds=2", f"pretrained={pretrained}",
                     "trainer.limit_train_batches=1", name=f"runs/contracting{fold}"))
    paths = write_report(tmp_path / "runs")
    methods = paths["summary.md"].read_text().split("## Methods")[1]
    assert "All blocks fine-tuned · bitfit" in methods and "All blocks fine-tuned · lora" in methods
    assert "Δ Dice vs full fine-tuning (All blocks fine-tuned)" in methods
    assert "Δ Dice vs best freeze (Contracting path" in methods
    assert "pareto.png" in paths and Path(paths["pareto.png"]).stat().st_size > 0
    assert "| 0.3" in methods  # BitFit's share of trainable parameters, in % (~0.36%)


def test_the_lr_grid_is_one_command_and_each_fold_keeps_a_validation_split(make_cfg):
    from unet_transfer.study.runner import study_plan

    _, sweeps, _ = study_plan("methods_demo", ["lr_grid=true"])
    assert len(sweeps) == 5 and all("optimizer.lr=0.0003,0.001,0.003" in s and "validation_split=0.1" in s
                                    for s in sweeps)
    metrics = run(make_cfg("validation_split=0.25", "trainer.limit_train_batches=1"))
    assert metrics["validation"]["n_images"] == 4 and metrics["n_train"] == 12  # 16 training images, a quarter kept


def test_each_folds_lr_is_chosen_on_its_validation_split_never_on_the_held_out_fold(tmp_path):
    import json

    from unet_transfer.report.collect import find_runs

    # validation favours lr 1e-3 on folds 0 and 1, lr 1e-4 on fold 2; held-out Dice is the other way round
    for lr, validation, held_out in ((1e-4, [0.5, 0.5, 0.9], [0.9, 0.9, 0.2]), (1e-3, [0.8, 0.8, 0.4], [0.1, 0.2, 0.9])):
        for fold in range(3):
            folder = tmp_path / "runs" / f"lr{lr}_f{fold}"
            folder.mkdir(parents=True)
            (folder / "metrics.json").write_text(json.dumps({
                "dataset": "d", "direction": "none", "k": 9, "fold": fold, "folds": 3, "epochs": 5, "seed": 0,
                "trainable_blocks": list(range(1, 10)), "n_blocks": 9, "pretrained": "p.pt", "method": "bitfit",
                "dice": held_out[fold], "pixel_error": 1.0, "adjusted_rand": 0.5, "trainable_params": 10,
                "trainable_share": 0.01, "train_time_s": 1.0, "settings": {"optimizer.lr": lr},
                "validation": {"dice": validation[fold], "pixel_error": 1.0, "adjusted_rand": 0.5, "n_images": 2}}))
    assert len(find_runs(tmp_path / "runs").runs) == 6
    methods = write_report(tmp_path / "runs")["summary.md"].read_text().split("## Methods")[1]
    chosen = next(line for line in methods.splitlines() if "(lr chosen per fold)" in line)
    assert "| 0.17 ± 0.06 |" in chosen  # held-out Dice of the chosen runs: 0.1, 0.2, 0.2 (the best would be 0.9s)
    assert "fold 0: lr 0.001, fold 1: lr 0.001, fold 2: lr 0.0001" in methods


def test_gradient_flow_sees_the_adapters_lora_adds_when_a_later_phase_unfreezes_blocks(make_cfg, pretrained):
    from unet_transfer.analysis.measures.gradient_flow import GradientFlow
    from unet_transfer.training.build import build

    cfg = make_cfg("finetune=lora", "freeze=gradual_shallow", "freeze.phases=[{epoch: 1, direction: contracting}]",
                   f"pretrained={pretrained}", "trainer.max_epochs=2", "augment=none")
    built = build(cfg)
    built.trainer.fit(built.module, built.datamodule)
    flow = next(c for c in built.callbacks if isinstance(c, GradientFlow))
    first, second = flow.epoch_means
    assert first[1] > 0 and first[2] == 0  # block 1 trains first (its adapters)
    assert all(second[b] > 0 for b in (1, 2, 3, 4, 5))  # the contracting path's new adapters are seen
