"""Pretraining on demand: made once, remade when its recipe changes, and runs that started from
an old checkpoint are redone on resume; checkpoints put there by hand are left alone."""

import json

import torch

from unet_transfer.checkpoint import save_weights, weights_digest
from unet_transfer.model import UNet
from unet_transfer.training import pretrain
from unet_transfer.training.run import run


def fake_pretraining(monkeypatch, calls):
    """Replaces the pretraining subprocess: writes fresh random weights where save_weights= says."""

    def fake_run(command, **kwargs):
        calls.append(command)
        target = next(arg.split("=", 1)[1] for arg in command if arg.startswith("save_weights="))
        save_weights(UNet(width=4), target, {"width": 4})
        return 0

    monkeypatch.setattr(pretrain, "run_child", fake_run)


def test_a_checkpoint_is_remade_when_its_recipe_changes_and_kept_otherwise(make_cfg, tmp_path, monkeypatch):
    calls = []
    fake_pretraining(monkeypatch, calls)
    checkpoint = tmp_path / "ckpt" / "made.pt"
    cfg = make_cfg(f"pretrained={checkpoint}", "pretrain=demo_pretrain", "pretrain_overrides=['trainer.max_epochs=1']")
    pretrain.ensure_pretrained(cfg)
    pretrain.ensure_pretrained(cfg)
    assert len(calls) == 1 and checkpoint.exists()
    assert json.loads(pretrain.recipe_path(checkpoint).read_text()) == pretrain.recipe(cfg)
    first = weights_digest(checkpoint)

    changed = make_cfg(f"pretrained={checkpoint}", "pretrain=demo_pretrain", "pretrain_overrides=['trainer.max_epochs=2']")
    pretrain.ensure_pretrained(changed)
    assert len(calls) == 2 and weights_digest(checkpoint) != first

    by_hand = tmp_path / "ckpt" / "by_hand.pt"
    save_weights(UNet(width=4), by_hand, {"width": 4})
    pretrain.ensure_pretrained(make_cfg(f"pretrained={by_hand}", "pretrain=demo_pretrain"))
    assert len(calls) == 2  # no recipe file: somebody's own checkpoint, used as it is


def test_a_finished_run_is_redone_on_resume_when_its_checkpoint_was_remade(make_cfg, tmp_path):
    checkpoint = tmp_path / "pretrained.pt"
    torch.manual_seed(0)
    save_weights(UNet(width=4), checkpoint, {"width": 4})
    cfg = make_cfg(f"pretrained={checkpoint}", "trainer.limit_train_batches=1")
    first = run(cfg)
    assert first["pretrained_sha256"] == weights_digest(checkpoint)
    assert run(cfg) == first  # same weights: skipped, results untouched

    torch.manual_seed(1)
    save_weights(UNet(width=4), checkpoint, {"width": 4})
    again = run(cfg)
    assert again["pretrained_sha256"] == weights_digest(checkpoint) != first["pretrained_sha256"]
    assert again["run_key"] != first["run_key"]
