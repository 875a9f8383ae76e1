"""One run end to end through the real config and run(): contract, freezing, reproducibility."""

import csv
import json
from pathlib import Path

import pytest
import torch

from unet_transfer.checkpoint import load_pretrained, read_state_dict, save_weights
from unet_transfer.errors import ConfigError
from unet_transfer.model import UNet
from unet_transfer.networks.protocol import block_map, set_frozen_blocks
from unet_transfer.training.module import SegmentationModule
from unet_transfer.training.run import run

CONTRACT_KEYS = {"dataset", "direction", "k", "fold", "trainable_blocks", "dice", "pixel_error",
                 "adjusted_rand", "n_images", "epochs", "seed", "pretrained", "duration_s"}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    torch.manual_seed(123)
    return save_weights(UNet(width=4), tmp_path_factory.mktemp("ckpt") / "pretrained.pt", {"width": 4})


def test_a_run_writes_the_contract_files(make_cfg):
    cfg = make_cfg()
    metrics = run(cfg)
    on_disk = json.loads((Path(cfg.output_dir) / "metrics.json").read_text())
    assert on_disk == metrics
    assert CONTRACT_KEYS <= metrics.keys()
    assert metrics["n_images"] == 4 and metrics["epochs"] == 1 and metrics["trainable_blocks"] == list(range(1, 10))
    with open(Path(cfg.output_dir) / "per_image.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and set(rows[0]) == {"id", "dice", "pixel_error", "adjusted_rand"}
    assert metrics["dice"] == pytest.approx(sum(float(r["dice"]) for r in rows) / 4)


def train_and_check_frozen_blocks(make_cfg, tmp_path, pretrained, direction, k, *extra):
    trained_path = tmp_path / "trained.pt"
    cfg = make_cfg(f"freeze={direction}", f"k={k}", f"pretrained={pretrained}", f"save_weights={trained_path}",
                   "trainer.limit_train_batches=2", "dataset.image_size=16", "augment=none", *extra)
    metrics = run(cfg)
    before, _ = read_state_dict(pretrained)
    after, _ = read_state_dict(trained_path)
    model = UNet(width=4)
    block_of = block_map(model).block_of_name(model)
    trainable = set(metrics["trainable_blocks"])
    assert len(trainable) == k and metrics["direction"] == direction
    for key, tensor in before.items():
        block = block_of[key]
        if block in trainable:
            assert not torch.equal(tensor, after[key]), f"{key} (block {block}) should have trained"
        else:
            assert torch.equal(tensor, after[key]), f"{key} (block {block}) is frozen but changed"


@pytest.mark.parametrize("direction", ["shallow_to_deep", "deep_to_shallow"])
@pytest.mark.parametrize("k", range(1, 10))
def test_frozen_blocks_end_bit_identical_and_trainable_blocks_change(make_cfg, tmp_path, pretrained, direction, k):
    train_and_check_frozen_blocks(make_cfg, tmp_path, pretrained, direction, k)


@pytest.mark.slow
def test_the_compiled_fast_path_trains_and_keeps_frozen_blocks_bit_identical(make_cfg, tmp_path, pretrained):
    # torch.compile (inductor) builds C++ kernels on a CPU: ~40 s, hence slow.
    train_and_check_frozen_blocks(make_cfg, tmp_path, pretrained, "deep_to_shallow", 3, "fast.compile=true")


def test_frozen_parameters_are_not_given_to_the_optimiser():
    model = UNet(width=4)
    set_frozen_blocks(model, {1, 2, 3})
    module = SegmentationModule(model, lambda params: torch.optim.Adam(params, lr=1e-4))
    optimised = {id(p) for group in module.configure_optimizers().param_groups for p in group["params"]}
    for b in range(1, 10):
        assert all((id(p) in optimised) == (b > 3) for p in model.block(b).parameters())


def test_gradual_unfreezing_trains_early_blocks_only_after_their_phase(make_cfg, tmp_path, pretrained):
    trained = tmp_path / "trained.pt"
    cfg = make_cfg("freeze=deep_to_shallow", "k=1", "+freeze.phases=[{epoch: 1, direction: none}]",
                   f"pretrained={pretrained}", f"save_weights={trained}", "trainer.max_epochs=2",
                   "trainer.limit_train_batches=2", "augment=none")
    metrics = run(cfg)
    assert metrics["trainable_blocks"] == list(range(1, 10))
    before, after = read_state_dict(pretrained)[0], read_state_dict(trained)[0]
    assert not torch.equal(before["blocks.enc1.0.weight"], after["blocks.enc1.0.weight"])


def test_the_same_seed_gives_the_same_numbers(make_cfg):
    first = run(make_cfg("seed=3", name="a"))
    second = run(make_cfg("seed=3", name="b"))
    for key in ("dice", "pixel_error", "adjusted_rand"):
        assert first[key] == second[key]


def test_a_finished_run_is_skipped_and_a_crashed_run_leaves_no_metrics(make_cfg, monkeypatch):
    cfg = make_cfg()

    def crash(*args, **kwargs):
        raise RuntimeError("killed mid-test")

    monkeypatch.setattr(SegmentationModule, "test_step", crash)
    with pytest.raises(RuntimeError):
        run(cfg)
    out = Path(cfg.output_dir)
    assert not (out / "metrics.json").exists() and not (out / "per_image.csv").exists()
    monkeypatch.undo()
    first = run(cfg)
    assert run(cfg) == first  # read back, not re-run (duration_s would differ)


def test_pretrained_loading_is_strict_and_names_the_first_mismatch(tmp_path):
    wide = save_weights(UNet(width=8), tmp_path / "wide.pt", {"width": 8})
    with pytest.raises(ConfigError, match=r"blocks\.enc1\.0\.weight.*\(8, 1, 3, 3\).*\(4, 1, 3, 3\)"):
        load_pretrained(UNet(width=4), wide)
    with pytest.raises(ConfigError, match="no such file.*pretrained=null"):
        load_pretrained(UNet(width=4), tmp_path / "missing.pt")


class NotAWeight:
    pass


def test_checkpoints_with_pickled_code_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "payload": NotAWeight()}, path)
    with pytest.raises(ConfigError, match="weights only"):
        load_pretrained(UNet(width=4), path)


def test_lightning_style_checkpoints_load(tmp_path):
    source = UNet(width=4)
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, path)
    target = UNet(width=4)
    load_pretrained(target, path)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values(), strict=True))


def test_wandb_logger_writes_an_offline_run(make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = make_cfg("logger=wandb")
    assert cfg.logger.offline is True and cfg.logger.group == "none" and cfg.logger.job_type == "synthetic_ultrasound"
    run(cfg)
    runs = list((Path(cfg.output_dir) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_equivalent_settings_in_one_sweep_train_once(make_cfg):
    first = run(make_cfg("freeze=shallow_to_deep", "k=9", name="sweep/a"))
    twin = run(make_cfg("freeze=deep_to_shallow", "k=9", name="sweep/b"))
    assert twin["same_as"] == "a" and twin["direction"] == "deep_to_shallow"
    assert (twin["dice"], twin["trainable_blocks"]) == (first["dice"], first["trainable_blocks"])
    different = run(make_cfg("freeze=deep_to_shallow", "k=8", name="sweep/c"))
    assert "same_as" not in different


@pytest.mark.parametrize("every", [1, 3])
def test_the_loggers_get_each_epochs_mean_loss_and_the_step_loss_every_n_steps(make_cfg, every):
    # 20 images, 5 folds: 16 training images = 4 steps of 4 per epoch, 8 steps in 2 epochs.
    cfg = make_cfg("logger=csv", "trainer.max_epochs=2", f"trainer.log_every_n_steps={every}")
    run(cfg)
    with open(Path(cfg.output_dir) / "logs" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    steps = [(int(r["step"]), float(r["train/loss_step"])) for r in rows if r.get("train/loss_step")]
    epochs = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    assert [s for s, _ in steps] == [s for s in range(8) if (s + 1) % every == 0]
    assert len(epochs) == 2
    if every == 1:  # equal batches: the epoch value is the mean of its step losses
        for epoch, mean in enumerate(epochs):
            assert mean == pytest.approx(sum(v for _, v in steps[4 * epoch: 4 * epoch + 4]) / 4, rel=1e-5)


def test_configured_callbacks_run_beside_the_freeze_schedule(make_cfg, tmp_path, pretrained):
    trained = tmp_path / "trained.pt"
    cfg = make_cfg("callbacks=lr_monitor", "logger=csv", "freeze=deep_to_shallow", "k=2", f"pretrained={pretrained}",
                   f"save_weights={trained}", "augment=none", "trainer.limit_train_batches=1")
    run(cfg)
    with open(Path(cfg.output_dir) / "logs" / "metrics.csv") as handle:
        assert any(key.startswith("lr-") for key in csv.DictReader(handle).fieldnames)  # the LearningRateMonitor
    before, after = read_state_dict(pretrained)[0], read_state_dict(trained)[0]
    assert torch.equal(before["blocks.enc1.0.weight"], after["blocks.enc1.0.weight"])  # still frozen


def test_settings_nobody_listed_separate_runs_and_speed_settings_do_not(make_cfg):
    first = run(make_cfg("threads=1", name="sweep/a"))
    same = run(make_cfg("threads=2", name="sweep/b"))  # threads: speed only, the same training
    assert same["same_as"] == "a" and same["run_key"] == first["run_key"]
    other = run(make_cfg("optimizer.lr=1e-3", name="sweep/c"))  # no code knows optimizer.lr by name
    assert "same_as" not in other and other["run_key"] != first["run_key"]
    assert other["settings"]["optimizer.lr"] == 1e-3 and first["settings"]["optimizer.lr"] == 1e-4
    assert "threads" not in first["settings"] and "fold" not in first["settings"]
