"""How commands behave as processes: Ctrl-C stops them cleanly (one line, exit code 130, no
process left behind), single-process commands choose their threads from the free cores, and
long commands say what they are doing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, SYNTHETIC, TINY


def descendants(pid: int) -> set[int]:
    """Every process below `pid` now (from /proc: psutil may be missing)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to read its exit status has ended)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def in_the_foreground() -> None:
    """A child's Ctrl-C as in a terminal's foreground job (these tests may run as a background
    job, whose children start with Ctrl-C ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def foreground():
    """This process's Ctrl-C as in a terminal's foreground job, restored afterwards."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_stops_a_parallel_sweep_with_one_line_exit_130_and_no_process_left(tmp_path):
    command = [sys.executable, "-m", "unet_transfer", "train", "-m", *TINY, *SYNTHETIC, "trainer.max_epochs=5000",
               "study=interrupted", "freeze=shallow_to_deep", "k=1,9", "hydra/launcher=parallel",
               "hydra.launcher.n_jobs=2", f"paths.cache_dir={tmp_path / 'cache'}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("UNET_TRANSFER_RUN_TOKEN", None)
    process = subprocess.Popen(command, cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=in_the_foreground)
    sweep, seen = tmp_path / "multirun" / "interrupted", set()
    deadline = time.time() + 240
    try:
        while time.time() < deadline and process.poll() is None:  # until both runs train
            seen |= descendants(process.pid)
            logs = [p.read_text() for p in sweep.rglob("train.log")]
            if len(logs) == 2 and all("trains blocks" in text for text in logs):
                break
            time.sleep(0.2)
        assert process.poll() is None, "the sweep ended before it was interrupted"
        time.sleep(1.0)
        seen |= descendants(process.pid)
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, (out + err)[-3000:]
    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]
    assert "Interrupted: " in err and "run the same command again to resume" in err
    assert len(seen) >= 2  # the joblib workers (and loky's resource tracker)
    deadline = time.time() + 15
    while any(alive(pid) for pid in seen) and time.time() < deadline:
        time.sleep(0.2)
    left = [pid for pid in seen if alive(pid)]
    assert not left, [(Path("/proc") / str(pid) / "cmdline").read_bytes()[:200] for pid in left]
    assert not list(sweep.rglob("metrics.json"))  # no unfinished run looks finished


def test_ctrl_c_stops_a_single_run_inside_lightning_with_one_line_exit_130(tmp_path):
    """Lightning catches Ctrl-C in fit and exits with 1 after its own line: still 130, our line."""
    command = [sys.executable, "-m", "unet_transfer", "train", *TINY, *SYNTHETIC, "trainer.max_epochs=5000",
               f"hydra.run.dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=in_the_foreground)
    log = tmp_path / "run" / "train.log"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and process.poll() is None:
            if log.is_file() and "trains blocks" in log.read_text():
                break
            time.sleep(0.2)
        assert process.poll() is None, "the run ended before it was interrupted"
        time.sleep(1.0)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, (out + err)[-3000:]
    assert "Traceback" not in err + out and "Detected KeyboardInterrupt" not in err + out, err[-3000:]
    assert err.count("Interrupted: ") == 1
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_ctrl_c_in_a_command_is_one_line_and_exit_code_130(capsys, foreground):
    from unet_transfer.errors import INTERRUPTED, stop_cleanly

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit) as stopped, stop_cleanly():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the signal arrives first
    assert stopped.value.code == 130 and capsys.readouterr().err == INTERRUPTED + "\n"
    assert signal.getsignal(signal.SIGINT) is before  # the handler it found is back


def test_lightning_s_exit_after_ctrl_c_is_the_interrupt_and_other_exits_pass(capsys, foreground):
    from unet_transfer.errors import stop_cleanly

    with pytest.raises(SystemExit) as stopped, stop_cleanly():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            sys.exit(1)  # what Lightning's fit does on Ctrl-C
    assert stopped.value.code == 130 and "Interrupted: " in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped, stop_cleanly():
        sys.exit(2)  # a user error's exit code, no Ctrl-C
    assert stopped.value.code == 2 and capsys.readouterr().err == ""


def test_a_command_started_with_ctrl_c_ignored_keeps_ignoring_it(capsys):
    from unet_transfer.errors import stop_cleanly

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job of a script
    try:
        with stop_cleanly():
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)  # it would have arrived by now
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN and capsys.readouterr().err == ""
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_child_command_leaves_the_line_to_the_command_above_it(capsys):
    """A study's sweep runs as a child process: it stops quietly with 130, and the study says it once."""
    from unet_transfer.errors import run_child, stop_cleanly

    child = "from unet_transfer.errors import stop_cleanly\nwith stop_cleanly():\n    raise KeyboardInterrupt"
    with pytest.raises(SystemExit) as stopped, stop_cleanly():
        run_child([sys.executable, "-c", child], env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert stopped.value.code == 130
    assert capsys.readouterr().err.count("Interrupted: ") == 1  # the child (its stderr is ours) said nothing
    assert run_child([sys.executable, "-c", "raise SystemExit(3)"]) == 3


def test_sweep_workers_ignore_ctrl_c_and_are_killed_when_the_sweep_stops():
    from joblib import Parallel, delayed

    from hydra_plugins.unet_transfer.parallel import IGNORE_CTRL_C, stop_workers

    def handler_and_pid(_):
        return signal.getsignal(signal.SIGINT) == signal.SIG_IGN, os.getpid()

    found = Parallel(n_jobs=2, backend="loky", initializer=IGNORE_CTRL_C)(delayed(handler_and_pid)(i) for i in range(4))
    assert all(ignored for ignored, _ in found)
    workers = {pid for _, pid in found}
    assert workers and all(alive(pid) for pid in workers)
    stop_workers()
    deadline = time.time() + 10
    while any(alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)


def small_study(root: Path) -> Path:
    from test_recommend import fake_run

    for direction, k, dice in (("shallow_to_deep", 3, (0.8, 0.7)), ("deep_to_shallow", 3, (0.75, 0.7))):
        for fold, value in enumerate(dice):
            fake_run(root, direction, k, fold, value)
    return root


def test_a_report_stopped_midway_marks_its_folder_and_never_leaves_an_old_summary_beside_new_figures(
        tmp_path, monkeypatch, caplog):
    import logging

    from unet_transfer.report import INCOMPLETE, write_report
    from unet_transfer.report.registry import ENTRIES, Entry, discover

    study = small_study(tmp_path)
    first = write_report(study)
    assert first["summary.md"].is_file() and not (study / INCOMPLETE).exists()
    discover()

    def killed(report, out):
        raise KeyboardInterrupt  # the report killed (Ctrl-C) after the first entries wrote new files

    monkeypatch.setitem(ENTRIES, "killed", Entry("killed", 35, killed))
    with pytest.raises(KeyboardInterrupt):
        write_report(study)
    assert "being rewritten" in (study / INCOMPLETE).read_text()
    assert not (study / "summary.md").exists()  # the old one described the old figures
    monkeypatch.delitem(ENTRIES, "killed")
    with caplog.at_level(logging.INFO, logger="unet_transfer.report"):
        again = write_report(study)
    assert again["summary.md"].is_file() and not (study / INCOMPLETE).exists()
    said = [r.getMessage() for r in caplog.records]
    assert "report: summary.csv ..." in said and "report: stats.md ..." in said  # what runs now, as it runs


@pytest.fixture
def clean_threads(monkeypatch):
    """No thread setting from outside, and this process's threads as they were after the test."""
    import torch

    for name in ("UNET_TRANSFER_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(before)


def test_one_process_threads_are_the_cores_other_work_leaves_and_a_setting_wins(clean_threads):
    from unet_transfer import hardware
    from unet_transfer.errors import ConfigError

    clean_threads.setattr(hardware, "usable_cores", lambda: 2)
    clean_threads.setattr(hardware.os, "cpu_count", lambda: 2)
    assert hardware.threads_for_one_process(busy=0.5) == (
        1, "threads: 1 of 2 cores (1 busy with other work); set UNET_TRANSFER_THREADS to choose")
    assert hardware.threads_for_one_process(busy=0.1)[0] == 2
    assert hardware.threads_for_one_process(busy=1.0)[0] == 1  # never none
    clean_threads.setenv("OMP_NUM_THREADS", "1")  # a sweep's launcher gave this run its share
    assert hardware.threads_for_one_process(busy=0.0) == (1, "threads: 1 of 2 cores (as set: OMP_NUM_THREADS=1)")
    clean_threads.setenv("UNET_TRANSFER_THREADS", "2")
    assert hardware.threads_for_one_process(busy=1.0)[0] == 2
    assert hardware.threads_for_one_process(3, busy=1.0) == (3, "threads: 3 of 2 cores (as set: threads=3)")
    clean_threads.setenv("UNET_TRANSFER_THREADS", "many")
    with pytest.raises(ConfigError, match="UNET_TRANSFER_THREADS='many' is not a whole number"):
        hardware.threads_for_one_process()


def test_report_chooses_its_threads_from_the_free_cores_and_says_so(tmp_path, clean_threads, capsys):
    import torch

    from unet_transfer import hardware
    from unet_transfer.report.__main__ import main

    clean_threads.setattr(hardware, "usable_cores", lambda: 2)
    clean_threads.setattr(hardware.os, "cpu_count", lambda: 2)
    clean_threads.setattr(hardware, "cpu_busy_now", lambda window_s=1.0: 0.5)  # one core busy elsewhere
    assert main([str(small_study(tmp_path))]) == 0
    assert "threads: 1 of 2 cores (1 busy with other work)" in capsys.readouterr().err
    assert torch.get_num_threads() == 1
    assert main([str(tmp_path), "--threads", "0"]) == 2
    assert "threads=0 must be at least 1" in capsys.readouterr().err


def test_recommend_trains_with_the_precision_and_layout_its_runs_recorded_and_shows_each_epoch(
        tmp_path, make_cfg, caplog):
    """fast.auto's choice depends on the thread count (fp32 at 2 threads, bf16 at 1): the final
    network must not measure again, it takes what the study's runs trained with."""
    import logging

    from omegaconf import OmegaConf

    from unet_transfer.inference.final import recipe, train_final

    run = tmp_path / "study" / "fold=0"
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(make_cfg("fold=0", "trainer.max_epochs=2"), run / ".hydra" / "config.yaml", resolve=True)
    recorded = {"precision": "32-true", "channels_last": True, "compile": False, "chosen_by": "measured"}
    row = {"label": "Shallow to deep, k=3", "runs": [
        {"path": str(run), "relpath": "fold=0", "seed": 0, "fold": 0, "settings": {}, "fast": recorded}]}
    cfg = recipe(row, tmp_path / "recommended")
    assert (cfg.trainer.precision, cfg.fast.channels_last, cfg.fast.compile) == ("32-true", True, False)
    with caplog.at_level(logging.INFO, logger="unet_transfer"):
        final = train_final(cfg)
    assert final.precision == "32-true"
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "all given explicitly" in said and "fast.auto on" not in said  # not measured again
    assert "epoch 1/2, loss " in said and "epoch 2/2, loss " in said


def test_a_dataset_warning_is_said_in_full_once_then_as_one_short_line(make_cfg, caplog):
    """Every run of a study reads the same cache entry: the long warning once, not once per run."""
    import dataclasses
    import logging

    from unet_transfer.training.build import build_datamodule

    long = "busi: 3 mask(s) were resized to an image of another aspect ratio: " + "x" * 300
    said = []
    for fold in (0, 1, 0):  # three runs of a study on one dataset
        datamodule = build_datamodule(make_cfg(f"fold={fold}"))
        load = datamodule.source.load

        def with_warning(cache_dir, load=load):
            data, folder = load(cache_dir)
            return dataclasses.replace(data, warnings=(long,)), folder

        datamodule.source.load = with_warning
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="unet_transfer"):
            datamodule.setup("fit")
        said.append([(r.levelno, r.getMessage()) for r in caplog.records if r.getMessage().startswith("Data: ")])
    assert said[0] == [(logging.WARNING, f"Data: {long}")]
    for later in said[1:]:
        assert len(later) == 1 and later[0][0] == logging.INFO and len(later[0][1]) < 200, later
        assert "1 warning" in later[0][1] and "metrics.json" in later[0][1]
