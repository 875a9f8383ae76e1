"""Every setting is checked before heavy work, in `train` and in `study`: a bad value stops in a
second with one line that names it (no preprocessing, no pretraining, no traceback); the study's
dry run prints its plan and runs nothing; every command a study prints works when pasted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from hydra.utils import instantiate

from unet_transfer.errors import ConfigError, user_error_in
from unet_transfer.study import runner
from unet_transfer.training import pretrain
from unet_transfer.training.validate import check_settings

BAD_SETTINGS = [
    (["finetune=lora", "finetune.rank=0"], "finetune.rank=0"),
    (["finetune=lora", "finetune.rank=-2"], "finetune.rank=-2"),
    (["finetune=lora", "finetune.rank=abc"], "finetune.rank='abc'"),
    (["finetune=lora", "finetune.alpha=-1"], "finetune.alpha=-1"),
    (["finetune=lora", "finetune.blocks=[99]"], "finetune.blocks=[99]"),
    (["finetune=lora", "finetune.blocks=[1]", "freeze=deep_to_shallow", "k=3"], "finetune.blocks=[1]"),
    (["finetune=l2sp", "finetune.alpha=-1"], "finetune.alpha=-1"),
    (["finetune=l2sp", "finetune.beta=abc"], "finetune.beta='abc'"),
    (["finetune=bitfit", "finetune.head=abc"], "finetune.head='abc'"),
    (["finetune=layer_lr", "finetune.decay=2"], "finetune.decay=2"),
    (["finetune=layer_lr", "finetune.factors=[1,1]"], "finetune.factors"),
    (["finetune=auto_rgn", "+finetune.rank=4"], "finetune.rank"),
    (["optimizer.lr=-1"], "optimizer.lr=-1"),
    (["optimizer.lr=0"], "optimizer.lr=0"),
    (["optimizer.lr=abc"], "optimizer.lr='abc'"),
    (["optimizer.lr=nan"], "optimizer.lr=nan"),
]


@pytest.mark.parametrize(("overrides", "named"), BAD_SETTINGS, ids=[" ".join(o)[:40] for o, _ in BAD_SETTINGS])
def test_a_bad_setting_is_named_before_anything_loads(make_cfg, overrides, named):
    cfg = make_cfg(*overrides)
    with pytest.raises(ConfigError) as error:
        check_settings(cfg)
    assert named in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("method", ["freeze", "layer_lr", "l2sp", "bitfit", "auto_rgn", "lora"])
def test_every_method_accepts_its_own_defaults(make_cfg, method):
    check_settings(make_cfg(f"finetune={method}", "freeze=deep_to_shallow", "k=3"))


def user_error_of(node) -> str:
    """The one line a command prints when instantiating `node` fails (Hydra wraps the error)."""
    with pytest.raises(Exception) as error:  # noqa: PT011 - the UserError inside is what counts
        instantiate(node)
    assert user_error_in(error.value) is not None, error.value
    return str(user_error_in(error.value))


def test_simulated_sets_name_a_bad_image_count(make_cfg):
    assert "dataset.n_images=0" in user_error_of(make_cfg("dataset.n_images=0").dataset)


@pytest.mark.parametrize("root", ["", "null"])
def test_a_folder_dataset_with_an_empty_root_is_named(make_cfg, root):
    line = user_error_of(make_cfg("dataset=folder", "dataset.image_size=32", f"dataset.root={root}").dataset)
    assert re.search(r"dataset.root=.* is not a folder.*dataset.root=path/to/data", line), line


def test_a_folder_dataset_whose_root_is_never_given_is_named(make_cfg):
    with pytest.raises(ConfigError, match=r"dataset.root is not set.*dataset.root=path/to/data"):
        check_settings(make_cfg("dataset=folder", "dataset.image_size=32"))


def test_train_stops_with_one_line_and_exit_code_2(tmp_path):
    result = run_cli(["finetune=lora", "finetune.rank=0", "model.width=4", "dataset.image_size=32",
                      f"paths.cache_dir={tmp_path / 'cache'}"], cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "Error" in line]
    assert len(errors) == 1 and "finetune.rank=0" in errors[0]
    assert "Traceback" not in result.stderr and "preprocessing" not in result.stdout + result.stderr


def test_a_study_name_too_long_for_a_folder_is_named():
    from unet_transfer.training.validate import check_study_name

    check_study_name("2024-01-01/12-00-00_abc123")
    with pytest.raises(ConfigError, match="study=.*300 bytes.*255"):
        check_study_name("s" * 300)


def test_a_sweep_whose_study_name_is_too_long_is_one_line(tmp_path):
    result = run_cli(["-m", "study=" + "s" * 300, "k=1,2", "model.width=4"], cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1 and "study=" in lines[0] and "255" in lines[0], lines


def test_a_read_only_working_folder_is_one_line_that_names_it(tmp_path, monkeypatch):
    from unet_transfer.training import validate

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(validate.tempfile, "TemporaryFile", read_only)
    with pytest.raises(ConfigError, match=f"{tmp_path}.*read-only file system.*cd "):
        validate.check_working_folder(tmp_path)


def test_train_in_a_read_only_working_folder_is_one_line_and_exit_code_2(tmp_path):
    code = f"""
import sys
from pathlib import Path
from unet_transfer.training import validate
real = validate.tempfile.TemporaryFile
def read_only(*args, dir=None, **kwargs):
    if Path(dir or ".").resolve() == Path({str(tmp_path)!r}).resolve():
        raise OSError(30, "Read-only file system")
    return real(*args, dir=dir, **kwargs)
validate.tempfile.TemporaryFile = read_only
from unet_transfer.cli import main
sys.exit(main(["train", "model.width=4", "dataset.image_size=32", "trainer.max_epochs=1"]))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2, (result.stdout + result.stderr)[-2000:]
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1 and str(tmp_path) in lines[0] and "cd " in lines[0], lines
    assert not (tmp_path / "outputs").exists()


# --- the study: checked before pretraining, a dry run, commands that work when pasted ----------


@pytest.fixture
def no_subprocess(monkeypatch, tmp_path):
    """The study in this folder, with every sub-run replaced by a record (a failed pretraining)."""
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        return 1

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pretrain, "run_child", fake_run)
    monkeypatch.setattr(runner, "run_child", fake_run)
    return calls


STUDY_TINY = ["model.width=4", "dataset.n_images=20"]


@pytest.mark.parametrize("bad", ["dataset.image_size=100", "batch_size=0", "finetune=lora", "optimizer.lr=-1",
                                 "study=" + "s" * 300])
def test_a_study_checks_every_setting_before_it_pretrains(no_subprocess, tmp_path, capsys, bad):
    extra = ["finetune.rank=0,4"] if bad == "finetune=lora" else []  # one swept value is bad
    code = runner.main(["demo", *STUDY_TINY, f"paths.checkpoint_dir={tmp_path / 'ckpt'}", bad, *extra])
    out = capsys.readouterr()
    assert code == 2 and no_subprocess == [], out.out + out.err
    named = "finetune.rank=0" if extra else bad.split("=", 1)[0] + "="
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], out.err
    assert "Pretraining" not in out.out + out.err


def test_a_study_in_a_read_only_folder_says_so_in_one_line(no_subprocess, tmp_path, capsys, monkeypatch):
    from unet_transfer.training import validate

    real = validate.tempfile.TemporaryFile

    def read_only(*args, dir=None, **kwargs):
        if Path(dir or ".").resolve() == tmp_path.resolve():
            raise OSError(30, "Read-only file system")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(validate.tempfile, "TemporaryFile", read_only)
    code = runner.main(["demo", *STUDY_TINY])
    err = capsys.readouterr().err
    assert code == 2 and no_subprocess == [] and len(err.strip().splitlines()) == 1
    assert str(tmp_path) in err and "cd " in err


def test_the_dry_run_prints_the_plan_and_runs_nothing(no_subprocess, tmp_path, capsys):
    code = runner.main(["demo", "--dry-run", *STUDY_TINY, f"paths.checkpoint_dir={tmp_path / 'ckpt'}"])
    out = capsys.readouterr().out
    assert code == 0 and no_subprocess == []
    assert "3 sweeps, 60 runs" in out  # 2 directions x k 1..9 x 3 folds, and 3 folds of each reference
    assert out.count("unet-transfer train -m experiment=demo") == 3
    assert "54 runs" in out and out.count("3 runs") == 2
    assert f"pretraining first: {tmp_path / 'ckpt'}" in out and "experiment=demo_pretrain" in out
    assert "multirun/demo" in out
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "ckpt").exists()


def test_the_dry_run_says_when_the_checkpoint_is_there(no_subprocess, tmp_path, capsys):
    code = runner.main(["demo", "--dry-run", *STUDY_TINY, "pretrained=null"])
    out = capsys.readouterr().out
    assert code == 0 and "pretraining: none" in out


def user_config_dir(tmp_path) -> Path:
    """A user's own experiment (the demo under another name) in their own config folder."""
    from unet_transfer.config import CONF_DIR

    folder = tmp_path / "my_conf"
    (folder / "experiment").mkdir(parents=True)
    text = (Path(CONF_DIR) / "experiment" / "demo.yaml").read_text().replace("study: demo", "study: mine")
    (folder / "experiment" / "mine.yaml").write_text(text)
    return folder


def test_every_command_a_study_prints_carries_the_users_config_folder(no_subprocess, tmp_path, capsys):
    folder = user_config_dir(tmp_path)
    code = runner.main(["mine", "--config-dir", str(folder), *STUDY_TINY, f"paths.checkpoint_dir={tmp_path / 'ck'}"])
    out = capsys.readouterr()
    assert code == 1 and len(no_subprocess) == 1  # the pretraining ran, and failed
    printed = [line for line in (out.out + out.err).splitlines() if "unet-transfer train" in line]
    assert printed and all(f"--config-dir {folder.resolve()}" in line for line in printed), printed


def test_the_dry_run_commands_carry_the_users_config_folder(no_subprocess, tmp_path, capsys):
    folder = user_config_dir(tmp_path)
    assert runner.main(["mine", "--dry-run", "--config-dir", str(folder), *STUDY_TINY]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if "unet-transfer train" in line]
    assert len(printed) == 4 and all(f"--config-dir {folder.resolve()}" in line for line in printed), printed


def test_the_pretraining_follows_the_experiments_progress_bar_and_logger(make_cfg, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(pretrain, "run_child", lambda command, **kwargs: calls.append(command) or 1)
    cfg = make_cfg(f"pretrained={tmp_path / 'p.pt'}", "pretrain=demo_pretrain", "trainer.enable_progress_bar=false",
                   "logger=none")
    with pytest.raises(ConfigError):
        pretrain.ensure_pretrained(cfg, [])
    assert "trainer.enable_progress_bar=false" in calls[0] and "logger=none" in calls[0]
    recipe = pretrain.recipe(cfg, [])
    assert not any("progress" in line or "logger" in line for line in recipe["overrides"])  # not part of the recipe


@pytest.mark.parametrize("dataset", ["synthetic", "synthetic_xray", "synthetic_natural", "busi", "udiat", "montgomery",
                                     "ecssd", "xpie", "folder"])
def test_every_shipped_dataset_config_passes_the_dataset_settings_check(dataset):
    from unet_transfer.config import compose_config
    from unet_transfer.sources import check_dataset_settings

    check_dataset_settings(compose_config([f"dataset={dataset}"]).dataset)


def test_a_leftover_dataset_setting_is_named_before_any_work(make_cfg):
    """An experiment that inherits the demo and switches to BUSI keeps the simulator's n_images:
    that is one line naming it, not a TypeError in every run."""
    from unet_transfer.training import validate

    cfg = make_cfg("dataset=busi", "+dataset.n_images=60", "dataset.image_size=64")
    with pytest.raises(ConfigError, match=r"dataset.n_images is not a setting of dataset=busi \(the busi reader\)"):
        validate.check_settings(cfg)
    with pytest.raises(ConfigError, match=r"dataset.lesion_count is not a setting .*ultrasound simulator"):
        validate.check_settings(make_cfg("+dataset.lesion_count=2"))


def test_each_network_s_checkpoint_is_made_first_with_the_whole_machine_before_its_own_sweep(tmp_path, monkeypatch,
                                                                                             capsys):
    """A study of several networks (backbones_demo) needs a checkpoint per network: each one is
    checked up front and made by the study before the first sweep that uses it, not by that
    sweep's first run with its share of the cores."""
    folder = user_config_dir(tmp_path)
    mine = folder / "experiment" / "mine.yaml"
    mine.write_text(mine.read_text().replace(
        "study_sweeps:\n", 'study_sweeps:\n  - [model.width=2, "k=1,9", fold=0]\n', 1))
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        made = [word.split("=", 1)[1] for word in command if word.startswith("save_weights=")]
        for path in made:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(b"weights")
        return 0

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pretrain, "run_child", fake_run)
    monkeypatch.setattr(runner, "run_child", fake_run)
    checkpoints = tmp_path / "ck"
    assert runner.main(["mine", "--config-dir", str(folder), "--no-report", *STUDY_TINY,
                        f"paths.checkpoint_dir={checkpoints}"]) == 0
    made = [next((w for w in c if w.startswith("save_weights=")), None) for c in calls]
    order = [Path(m.split("=", 1)[1]).name if m else "sweep" for m in made]
    # the main sweep's checkpoint, the main sweep, then the width-2 network's checkpoint before its sweep
    assert order == ["demo_synthetic_natural_w4_64.pt", "sweep", "demo_synthetic_natural_w2_64.pt", "sweep", "sweep",
                     "sweep"], order
    out = capsys.readouterr().out
    assert out.count("pretraining ") == 2


def test_a_study_of_another_network_says_when_its_k_sweep_stops_short_of_its_blocks(no_subprocess, capsys):
    pytest.importorskip("monai")
    assert runner.main(["demo", "--dry-run", "model=flexunet", "dataset.n_images=20"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if "note:" in line]
    assert len(notes) == 1 and "k = 1–9 of the 11 blocks of FlexibleUNet (resnet18)" in notes[0]
    assert "k=range(1,12)" in notes[0]
    assert runner.main(["demo", "--dry-run", "model=flexunet", "k=range(1,12)", "dataset.n_images=20"]) == 0
    assert "note:" not in capsys.readouterr().out
