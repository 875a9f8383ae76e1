"""Sweeps through other Hydra launchers: submitit (the SLURM path, run locally) and joblib
(runs at once on one machine), sharing the cache, the folds and the pretrained checkpoint."""

import json
import os
import subprocess
import sys

from conftest import ROOT, SYNTHETIC, TINY


def sweep(tmp_path, *overrides, timeout=300):
    """`python train.py -m ...` from tmp_path, with TINY settings and the cache inside tmp_path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("UNET_TRANSFER_RUN_TOKEN", None)
    command = [sys.executable, str(ROOT / "train.py"), "-m", *TINY, *SYNTHETIC,
               f"paths.cache_dir={tmp_path / 'cache'}", f"paths.checkpoint_dir={tmp_path / 'ckpt'}", *overrides]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result


def finished_runs(folder):
    return {p.parent: json.loads(p.read_text()) for p in folder.rglob("metrics.json")}


def the_sweep(study):
    """The sweep's folder (below the study, named by its fixed settings): it holds multirun.yaml."""
    (found,) = [p.parent for p in study.rglob("multirun.yaml")]
    return found


def test_a_sweep_runs_through_submitit_each_run_in_its_own_folder_of_the_sweep(tmp_path):
    result = sweep(tmp_path, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                   "study=through_submitit", "freeze=shallow_to_deep", "k=1,5,9", "trainer.limit_train_batches=2")
    folder = the_sweep(tmp_path / "multirun" / "through_submitit")
    runs = finished_runs(folder)
    assert len(runs) == 3 and len({path.name for path in runs}) == 3
    assert all(path.parent == folder for path in runs)
    assert sorted(m["k"] for m in runs.values()) == [1, 5, 9]
    assert len([p for p in (folder / ".submitit").iterdir() if p.name.isdigit()]) == 3  # one submitit job per run
    # cpus_per_task=1: one torch thread per run, as many runs at once as cores, in waves.
    assert all(m["threads"] == 1 for m in runs.values())
    waves = -(-3 // (os.cpu_count() or 1))
    assert (result.stdout + result.stderr).count("Submitit 'local' sweep output dir") == waves


def test_runs_at_once_share_the_missing_cache_folds_and_checkpoint_and_pretrain_once(tmp_path):
    checkpoint = tmp_path / "ckpt" / "shared.pt"
    pretraining = "pretrain_overrides=['dataset.n_images=20','trainer.max_epochs=1','trainer.limit_train_batches=2']"
    sweep(tmp_path, "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "study=at_once", "fold=0,1",
          f"pretrained={checkpoint}", "pretrain=demo_pretrain", pretraining, "trainer.limit_train_batches=2")
    runs = finished_runs(tmp_path / "multirun" / "at_once")
    assert sorted(m["fold"] for m in runs.values()) == [0, 1]
    assert checkpoint.exists() and all(m["pretrained"] == str(checkpoint) for m in runs.values())
    logs = "".join((path / "train.log").read_text() for path in runs)
    assert logs.count("pretraining it first") == 1  # one run pretrained, the other waited and loaded it
    # One cache entry, built by one run or by both (atomic rename), no staging folder left over.
    entries = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert [p.name.split("-")[0] for p in entries] == ["synthetic_ultrasound"], entries
    cache = entries[0]
    folds = json.loads((cache / "splits.json").read_text())
    assert list(folds) == ["5-fold seed 0"]
    held_out = folds["5-fold seed 0"]["held_out"]
    assert [m["n_images"] for m in sorted(runs.values(), key=lambda m: m["fold"])] == [len(held_out[0]), len(held_out[1])]
    assert len({m["cache"] for m in runs.values()}) == 1


def test_sweeps_run_two_at_once_by_default_and_a_single_run_gets_every_core(tmp_path):
    two = sweep(tmp_path, "study=two", "freeze=shallow_to_deep", "k=1,9", "trainer.limit_train_batches=1")
    one = sweep(tmp_path, "study=one", "freeze=shallow_to_deep", "k=1", "trainer.limit_train_batches=1")
    assert "Joblib.Parallel(n_jobs=2" in two.stdout + two.stderr
    assert "Joblib.Parallel(n_jobs=1" in one.stdout + one.stderr  # never more workers than runs
    threads_two = {m["threads"] for m in finished_runs(tmp_path / "multirun" / "two").values()}
    threads_one = {m["threads"] for m in finished_runs(tmp_path / "multirun" / "one").values()}
    assert threads_two == {max(1, (os.cpu_count() or 1) // 2)}  # runs x threads = cores
    assert min(threads_one) >= max(threads_two)


def test_workers_are_capped_at_the_number_of_runs():
    from hydra_plugins.unet_transfer.parallel import workers_for

    assert workers_for(2, runs=54, cores=2) == 2
    assert workers_for(2, runs=1, cores=2) == 1
    assert workers_for(-1, runs=54, cores=16) == 16 and workers_for(-2, runs=54, cores=16) == 15
    assert workers_for(-1, runs=3, cores=16) == 3
