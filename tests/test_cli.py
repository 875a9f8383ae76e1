"""train.py as users call it: single runs, sweeps, errors. Each test is one or two processes."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, SYNTHETIC, TINY, run_cli


def tiny(tmp_path: Path) -> list[str]:
    return [*TINY, *SYNTHETIC, f"paths.cache_dir={tmp_path / 'cache'}", "trainer.limit_train_batches=1"]


def test_a_single_run_writes_metrics_in_its_own_folder(tmp_path):
    result = run_cli(tiny(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    written = list(tmp_path.glob("outputs/*/*/metrics.json"))
    assert len(written) == 1
    metrics = json.loads(written[0].read_text())
    assert metrics["dataset"] == "synthetic_ultrasound" and metrics["direction"] == "none"
    assert "Result" in result.stderr + result.stdout


def test_the_twelve_run_sweep_writes_twelve_results_with_the_right_settings(tmp_path):
    result = run_cli(["-m", "freeze=shallow_to_deep,deep_to_shallow", "k=1,5,9", "fold=0,1", *tiny(tmp_path)], cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    found = [json.loads(p.read_text()) for p in (tmp_path / "multirun").rglob("metrics.json")]
    assert len(found) == 12
    assert len({p.parent for p in (tmp_path / "multirun").rglob("metrics.json")}) == 12
    assert not list((tmp_path / "multirun").rglob(".sweep_progress_*"))  # cleaned up when the sweep ended
    combos = {(m["direction"], m["k"], m["fold"]) for m in found}
    assert combos == {(d, k, f) for d in ("shallow_to_deep", "deep_to_shallow") for k in (1, 5, 9) for f in (0, 1)}
    for m in found:
        expected = list(range(1, m["k"] + 1)) if m["direction"] == "shallow_to_deep" else list(range(10 - m["k"], 10))
        assert m["trainable_blocks"] == expected


def test_two_sweeps_started_in_the_same_second_do_not_collide(tmp_path):
    args = [sys.executable, str(ROOT / "train.py"), "-m", "fold=0", *tiny(tmp_path), "trainer.max_epochs=1"]
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    env.pop("UNET_TRANSFER_RUN_TOKEN", None)
    processes = [subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    for p in processes:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-2000:]
    assert len(list((tmp_path / "multirun").rglob("metrics.json"))) == 2


def test_bad_settings_fail_fast_with_one_clear_line(tmp_path):
    result = run_cli(["freeze=shallow_to_deep", "k=12", *tiny(tmp_path)], cwd=tmp_path)
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "k=12" in output and "1..9" in output and "Traceback" not in output
    assert not list(tmp_path.rglob("metrics.json"))
    assert not [f for f in (tmp_path / "cache").rglob("*") if f.is_file()]  # stopped before any data was made
