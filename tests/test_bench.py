"""The benchmark end to end in its quick form: every figure is there, measured and consistent.
No speed is asserted: the numbers depend on the machine and on what else runs on it."""

import json
import math
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from unet_transfer.bench import bf16_peak, interpolate, study_settings


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "out" / "bench.json"
    command = [sys.executable, "-m", "unet_transfer.bench", "--quick", "--out", str(out),
               "--cache-dir", str(tmp / "cache"), "--checkpoint-dir", str(tmp / "ckpt")]
    result = subprocess.run(command, cwd=tmp, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return json.loads(out.read_text()), result.stdout


@pytest.mark.slow  # the bench end to end, ~35 s: CI runs it (.ci/run)
def test_the_bench_writes_every_figure_with_sane_values(bench):
    results, stdout = bench
    assert results["quick"] is True and results["device"]["type"] in ("cpu", "cuda")
    assert all(results["throughput"][s]["precision"] in ("32-true", "bf16-mixed") for s in ("demo", "paper"))
    assert results["verdict"]["demo"]["meets"] == (results["throughput"]["demo"]["speedup"] >= 1.0)
    for label in ("paper", "demo"):
        t = results["throughput"][label]
        rates = t["images_per_s"]
        assert set(rates) == {"real", "bare_fp32_nchw", "bare_same", "bare_same_loader"}
        assert all(positive(v) for v in rates.values())
        assert t["speedup"] == pytest.approx(rates["real"] / rates["bare_fp32_nchw"])
        assert t["overhead"] == pytest.approx(rates["bare_same_loader"] / rates["real"] - 1)
        assert t["overhead_vs_fixed_batch"] == pytest.approx(rates["bare_same"] / rates["real"] - 1)
        assert positive(t["flops_per_step"]) and t["forward_flops_per_step"] < t["flops_per_step"]
        assert t["achieved_flops_per_s"]["real"] == pytest.approx(t["flops_per_step"] / t["size"]["batch_size"] * rates["real"])
        if results["device"]["type"] == "cpu":
            assert t["fraction_of_bf16_peak"] is None

        settings = results["freeze"][label]["settings"]
        assert set(settings) == {"none", "deep_to_shallow_k1", "shallow_to_deep_k1"}
        assert settings["deep_to_shallow_k1"]["trainable_blocks"] == [9]
        assert settings["shallow_to_deep_k1"]["trainable_blocks"] == [1]
        for s in settings.values():
            assert positive(s["step_s"]) and positive(s["epoch_s"]) and positive(s["saved_tensor_bytes"])
            assert s["time_ratio"] == pytest.approx(s["step_s"] / settings["none"]["step_s"])
            assert s["flop_ratio"] == pytest.approx(s["flops_per_step"] / settings["none"]["flops_per_step"])
        # FLOPs and saved activations are deterministic: freezing the early blocks saves both.
        assert settings["deep_to_shallow_k1"]["flop_ratio"] < settings["shallow_to_deep_k1"]["flop_ratio"] < 1
        assert settings["deep_to_shallow_k1"]["saved_tensor_bytes"] < settings["none"]["saved_tensor_bytes"]

        data = results["data"][label]
        assert positive(data["images_per_s"])
        assert data["ratio"] == pytest.approx(data["images_per_s"] / rates["real"])

    fixed = results["fixed_cost"]
    assert positive(fixed["in_sweep_s"]) and positive(fixed["cold_start_s"])
    assert len(fixed["in_sweep_samples_s"]) >= 1 and len(fixed["cold_start_samples_s"]) >= 1
    assert positive(fixed["sweep_1_job_s"]) and positive(fixed["sweep_4_jobs_s"])
    assert fixed["sweep_job_s"] == pytest.approx((fixed["sweep_4_jobs_s"] - fixed["sweep_1_job_s"]) / 3)

    agreement = results["agreement"]
    assert 0 <= agreement["dice_fp32_nchw"] <= 1 and 0 <= agreement["dice_fast"] <= 1
    assert agreement["difference"] == pytest.approx(agreement["dice_fast"] - agreement["dice_fp32_nchw"])
    assert all(len(v) == agreement["folds"] for v in agreement["per_fold"].values())
    assert agreement["dice_fast"] == pytest.approx(sum(agreement["per_fold"]["fast"]) / agreement["folds"])
    assert agreement["within_tolerance"] == (abs(agreement["difference"]) <= agreement["tolerance"])

    estimate = results["estimate"]
    assert positive(estimate["demo"]["total_h"]) and positive(estimate["paper"]["total_h"])
    assert estimate["paper"]["total_h"] == pytest.approx(
        estimate["paper"]["pretraining_h"] + estimate["paper"]["ultrasound_h"] + estimate["paper"]["xray_h"])
    assert estimate["paper"]["detail"]["ultrasound"]["runs"] == 100  # 5 folds x (9 + 9 + 2 reference rows)
    assert estimate["paper"]["config"]["image_size"] == 256 and estimate["paper"]["config"]["model"]["width"] == 64
    simulation = results["simulation"]
    assert {s["dataset"] for s in simulation["sets"].values()} == {"synthetic_ultrasound", "synthetic_natural"}
    assert simulation["demo_seconds"] == pytest.approx(sum(s["seconds"] for s in simulation["sets"].values()))
    assert estimate["demo"]["simulation_share"] == pytest.approx(
        simulation["demo_seconds"] / (estimate["demo"]["total_h"] * 3600))
    assert positive(simulation["paper_size_images_per_s"])
    assert positive(results["wall_s"])
    for heading in ("Training throughput", "Freezing", "Data loading", "Simulated data", "Fixed cost",
                    "fp32 NCHW vs fast path", "Estimated wall time"):
        assert heading in stdout


def test_study_settings_and_the_helpers():
    settings = study_settings()
    assert len(settings) == 18 and ("deep_to_shallow", 9) not in settings  # the twin is copied, not trained
    assert interpolate([(0.5, 0.4), (1.0, 1.0)], 0.75) == pytest.approx(0.7)
    assert interpolate([(0.5, 0.4), (1.0, 1.0)], 0.1) == 0.4
    assert bf16_peak("NVIDIA H100 80GB HBM3") == 989e12 and bf16_peak("NVIDIA H100 PCIe") == 756e12
    assert bf16_peak("NVIDIA A100-SXM4-80GB") == 312e12 and bf16_peak("NVIDIA GeForce GTX 1080") is None


def test_other_work_is_what_keeps_the_cores_busy_now_not_the_load_average(tmp_path, monkeypatch):
    from unet_transfer import hardware

    stat = tmp_path / "stat"
    # user nice system idle iowait ...: 150 of 400 jiffies busy between the two readings
    stat.write_text("cpu  1000 0 200 5000 100 0 0 0 0 0\n")
    with monkeypatch.context() as patched:
        patched.setattr("time.sleep", lambda s: stat.write_text("cpu  1100 0 250 5240 110 0 0 0 0 0\n"))
        assert hardware.cpu_busy_now(0.0, str(stat)) == pytest.approx(150 / 400)
        assert hardware.cpu_busy_now(0.0, str(tmp_path / "missing")) is None  # no /proc/stat: unknown
    now = hardware.cpu_busy_now(0.2)  # this machine, measured while this test sleeps
    assert now is None or 0.0 <= now <= 1.0


def test_the_runs_at_once_worker_trains_the_bare_loop_and_reports_its_rate():
    from unet_transfer.bench.concurrency import worker

    result = worker(width=4, size=32, batch=2, seconds=0.3, precision="32-true", channels_last=True)
    assert positive(result["images_per_s"])
