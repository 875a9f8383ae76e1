"""The study as users run it: resumable sweeps and the one-command study with its report."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, SYNTHETIC, TINY


def sweep_command(tmp_path, *extra):
    return [sys.executable, str(ROOT / "train.py"), "-m", "study=resumable", "k=1,2,3", "fold=0,1",
            "freeze=shallow_to_deep", *TINY, *SYNTHETIC, f"paths.cache_dir={tmp_path / 'cache'}", *extra]


def test_a_killed_sweep_restarted_finishes_without_losing_or_repeating_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(sweep_command(tmp_path), cwd=tmp_path, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sweep = tmp_path / "multirun" / "resumable"
    deadline = time.time() + 240
    while len(list(sweep.rglob("metrics.json"))) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # like Ctrl-C twice, or a lost node
    process.wait()
    finished = {p.parent.relative_to(sweep): p.stat().st_mtime_ns for p in sweep.rglob("metrics.json")}
    assert 2 <= len(finished) < 6
    result = subprocess.run(sweep_command(tmp_path), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    after = {p.parent.relative_to(sweep): p.stat().st_mtime_ns for p in sweep.rglob("metrics.json")}
    assert len(after) == 6
    assert all(after[name] == mtime for name, mtime in finished.items())  # not run again
    assert result.stderr.count("Skipping") + result.stdout.count("Skipping") == len(finished)
    runs = [json.loads((sweep / name / "metrics.json").read_text()) for name in after]
    assert sorted((m["k"], m["fold"]) for m in runs) == [(k, f) for k in (1, 2, 3) for f in (0, 1)]


@pytest.mark.slow  # a whole study in subprocesses, ~40 s: CI runs it (.ci/run)
def test_one_command_runs_a_whole_study_with_pretraining_references_and_report(tmp_path):
    overrides = [*TINY, *SYNTHETIC, "folds=2", "fold=0", "k=4,5,9", f"paths.cache_dir={tmp_path / 'cache'}",
                 f"paths.checkpoint_dir={tmp_path / 'ckpt'}", "trainer.limit_train_batches=2",
                 "study=tiny_demo", "pretrain_overrides=['dataset=synthetic_natural','dataset.n_images=20',"
                 "'trainer.max_epochs=1','trainer.limit_train_batches=2']"]
    result = subprocess.run([sys.executable, "-m", "unet_transfer.study", "demo", *overrides], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    study = tmp_path / "multirun" / "tiny_demo"
    assert (tmp_path / "ckpt" / "demo_synthetic_natural_w4_32.pt").exists()  # pretrained on demand
    runs = [json.loads(p.read_text()) for p in study.rglob("metrics.json")]
    # 2 directions x k in {4, 5, 9} on fold 0, plus the from-scratch and pretrained-only references
    assert len(runs) == 8
    assert sum(r["pretrained"] is None for r in runs) == 1 and sum(r["epochs"] == 0 for r in runs) == 1
    assert sum("same_as" in r for r in runs) == 1  # deep_to_shallow k=9 is shallow_to_deep k=9
    for name in ("summary.md", "summary.csv", "dice_vs_blocks.png", "stats.md", "examples.png",
                 "analysis.md", "activation_maximisation.png", "block_analysis.png"):
        assert (study / name).stat().st_size > 0, name
    # keep_weights: fold 0 of contracting (k=5), expanding (k=4) and all blocks (k=9, trained once)
    kept = sorted(p.parent.name for p in study.rglob("weights.pt"))
    assert kept == ["freeze=deep_to_shallow,k=4", "freeze=shallow_to_deep,k=5", "freeze=shallow_to_deep,k=9"]


def test_the_report_is_logged_to_a_wandb_summary_run(tmp_path, monkeypatch):
    from unet_transfer.study.runner import log_report_to_wandb

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_SILENT", "true")
    study = tmp_path / "multirun" / "s"
    study.mkdir(parents=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.plot([1, 2], [0.7, 0.8])
    plt.savefig(study / "dice_vs_blocks.png")
    (study / "summary.md").write_text("| k | dice |\n")
    log_report_to_wandb("s", {"dice_vs_blocks.png": study / "dice_vs_blocks.png", "summary.md": study / "summary.md"})
    runs = list((study / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert list(runs[0].rglob("*.png"))  # the figure travels with the run
