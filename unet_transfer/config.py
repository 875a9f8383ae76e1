"""Hydra glue: where the configs are, the resolvers they use, and composing a config in code.

The configs live in the repository's top-level `conf/`; a wheel ships the same files inside
the package (`unet_transfer/conf`, mapped in pyproject.toml), so the commands work from any
folder. A user's own config folder joins the search path with `--config-dir DIR` (or
`hydra.searchpath=[file://DIR]`): its `dataset/mine.yaml` is then `dataset=mine`. A folder that
is not there, or a YAML file that does not parse, is one ConfigError line naming it (the commands
exit with code 2), not ignored and not a traceback from inside Hydra.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path

from omegaconf import OmegaConf

from unet_transfer.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
TOKEN_VARIABLE = "UNET_TRANSFER_RUN_TOKEN"


def config_dir() -> Path:
    """The installed package's configs, or the checkout's top-level conf/."""
    for candidate in (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"No configs found beside {PACKAGE_DIR}: reinstall unet-transfer (pip install .).")


CONF_DIR = str(config_dir())


def searchpath_override(extra_dirs) -> list[str]:
    """The override that adds users' config folders to Hydra's search path (none: no override)."""
    dirs = [f"file://{Path(d).resolve()}" for d in extra_dirs or ()]
    return [f"hydra.searchpath=[{','.join(dirs)}]"] if dirs else []


def check_config_dirs(dirs) -> None:
    """A user's config folder that is not there is an error: Hydra would skip it (or say so in a
    traceback), and the run would then use other configs than the user meant."""
    for folder in dirs or ():
        if not Path(folder).is_dir():
            raise ConfigError(f"--config-dir {folder}: no such folder ({Path(folder).resolve()}); give the folder "
                              "that holds your dataset/, experiment/, ... configs")


def shown(path: str) -> str:
    """`path` relative to the current folder where it lies below it (as the user typed it, mostly)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def yaml_problem(error: BaseException | None) -> ConfigError | None:
    """The YAML syntax error behind `error` (raised by Hydra while composing) as one line: the
    file, the line, what is wrong; None if `error` is not one."""
    import yaml

    while error is not None:
        if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
            mark = error.problem_mark
            return ConfigError(f"{shown(mark.name)} line {mark.line + 1}: {error.problem or error.context}; "
                               "fix the YAML")
        error = error.__cause__ or error.__context__
    return None


def check_yaml_files(dirs) -> None:
    """Every config file in `dirs` (and its group folders) parses as YAML: checked before Hydra
    composes, whose own report of a syntax error is a long traceback."""
    import yaml

    for folder in map(Path, dirs or ()):
        for path in sorted(p for pattern in ("*.yaml", "*/*.yaml", "*/*/*.yaml") for p in folder.glob(pattern)):
            try:
                with open(path) as handle:
                    for _ in yaml.parse(handle, Loader=yaml.SafeLoader):
                        pass
            except yaml.YAMLError as error:
                raise (yaml_problem(error) or ConfigError(f"{shown(str(path))}: {error}; fix the YAML")) from None


def compose_config(overrides: list[str], extra_dirs=()):
    """The config a run with these overrides gets, composed in this process (no Hydra run)."""
    from hydra import compose, initialize_config_dir

    check_config_dirs(extra_dirs)
    register_resolvers()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        try:
            return compose(config_name="config", overrides=[*searchpath_override(extra_dirs), *overrides])
        except Exception as error:
            problem = yaml_problem(error)
            if problem is None:
                raise
            raise problem from None


def experiments(extra_dirs=()) -> list[str]:
    """Names of the experiment configs (the package's and the user's)."""
    check_config_dirs(extra_dirs)
    folders = [Path(CONF_DIR), *map(Path, extra_dirs or ())]
    return sorted({p.stem for folder in folders for p in (folder / "experiment").glob("*.yaml")})


def process_token() -> str:
    """A short token, fixed for this process and inherited by the workers it launches.

    Two sweeps started in the same second get different folders; the jobs of one sweep,
    even in other processes (joblib, submitit), agree on theirs.
    """
    if TOKEN_VARIABLE not in os.environ:
        os.environ[TOKEN_VARIABLE] = secrets.token_hex(3)
    return os.environ[TOKEN_VARIABLE]


def path_safe(text: str, limit: int = 120) -> str:
    """Override strings as folder names: no slashes, bounded length, never empty."""
    text = re.sub(r"[^A-Za-z0-9=,._+-]", "_", str(text)) or "default"
    if len(text) > limit:
        text = text[: limit - 13] + "_" + hashlib.sha256(text.encode()).hexdigest()[:12]
    return text


def register_resolvers() -> None:
    from unet_transfer import hardware

    register_defaults()
    OmegaConf.register_new_resolver("token", process_token, replace=True)
    OmegaConf.register_new_resolver("path_safe", path_safe, replace=True)
    OmegaConf.register_new_resolver("gpu_present", hardware.gpu_present, replace=True)
    OmegaConf.register_new_resolver("loader_workers", hardware.loader_workers, replace=True)


def register_defaults() -> None:
    """The simulators' and readers' defaults as config groups `simulator/<kind>` and
    `reader/<name>`, taken from their functions' signatures (sources.dataset_defaults): written
    once, in Python, and pulled into `conf/dataset/*.yaml` by their defaults lists."""
    from hydra.core.config_store import ConfigStore

    from unet_transfer.sources import dataset_defaults

    store = ConfigStore.instance()
    for group, nodes in dataset_defaults().items():
        for name, node in nodes.items():
            store.store(group=group, name=name, node=node)


def user_config_dirs() -> list[str]:
    """Config folders the running Hydra job was given besides the package's (`--config-dir`,
    `hydra.searchpath`), so the sub-runs it starts (pretraining) see the user's configs too."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [source.path for source in HydraConfig.get().runtime.config_sources
            if source.schema == "file" and Path(source.path).resolve() != Path(CONF_DIR).resolve()
            and source.provider in ("command-line", "hydra.searchpath in command-line", "hydra.searchpath in main")]


def experiment_file(name: str, extra_dirs=()) -> Path | None:
    """The yaml of experiment `name`, the user's folders first (they may shadow ours)."""
    for folder in [*map(Path, extra_dirs or ()), Path(CONF_DIR)]:
        if (folder / "experiment" / f"{name}.yaml").is_file():
            return folder / "experiment" / f"{name}.yaml"
    return None
