"""A user's own config folder (`--config-dir`): a folder that is not there, or a YAML file that
does not parse, is one line naming it (exit code 2), never ignored or a traceback."""

import pytest
from conftest import run_cli

from unet_transfer.config import compose_config
from unet_transfer.errors import ConfigError
from unet_transfer.study import runner

BROKEN = "name: mine\nroot: here\nimage_size: 64: 32\n"  # line 3: a second colon


def broken_folder(tmp_path, group="dataset"):
    folder = tmp_path / "myconf"
    (folder / group).mkdir(parents=True)
    (folder / group / "mine.yaml").write_text(BROKEN)
    return folder


def test_a_missing_config_folder_is_named_by_the_study(tmp_path):
    with pytest.raises(ConfigError, match="nowhere.*no such folder"):
        runner.study_plan("demo", [], [str(tmp_path / "nowhere")])


def test_a_yaml_error_is_one_line_with_file_and_line(tmp_path):
    folder = broken_folder(tmp_path)
    with pytest.raises(ConfigError, match=r"mine\.yaml line 3: mapping values are not allowed here; fix the YAML"):
        compose_config(["dataset=mine"], [str(folder)])


def test_the_study_says_a_yaml_error_of_its_experiment_in_one_line(tmp_path, capsys):
    folder = broken_folder(tmp_path, group="experiment")
    assert runner.main(["mine", "--config-dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mine.yaml line 3" in err


@pytest.mark.parametrize("form", [["--config-dir", "nowhere"], ["--config-dir=nowhere"], ["-cd", "nowhere"]])
def test_train_names_a_missing_config_folder(tmp_path, form):
    result = run_cli([*form, "--cfg", "job"], cwd=tmp_path)
    assert result.returncode == 2, result.stdout[-500:] + result.stderr[-2000:]
    assert "nowhere" in result.stderr and "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_train_says_a_yaml_error_in_one_line(tmp_path):
    broken_folder(tmp_path)
    result = run_cli(["--config-dir", "myconf", "dataset=mine", "--cfg", "job"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == ("Error: myconf/dataset/mine.yaml line 3: mapping values are not allowed here; "
                                     "fix the YAML")


def test_the_config_folders_of_a_train_command_line():
    from unet_transfer.cli import config_dirs_in

    assert config_dirs_in([]) == [] and config_dirs_in(["-m", "fold=0"]) == []
    assert config_dirs_in(["-cd", "a", "--config-dir=b", "x=1", "hydra.searchpath=[file:///c,pkg://d]"]) == ["a", "b", "/c"]
