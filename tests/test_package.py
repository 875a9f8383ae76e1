"""The package as a newcomer installs and extends it: a wheel that works from any folder with
the user's own configs, one block vocabulary, every package folder shipped."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "unet_transfer"
# Block arithmetic that must only appear in unet_transfer/blocks.py: block counts from levels,
# the paper's 10 - k, the contracting/expanding split, literal ranges of the 9 blocks.
BLOCK_ARITHMETIC = [r"10\s*-\s*k\b", r"2\s*\*\s*(int\()?\s*(self\.)?levels", r"\blevels\s*\+\s*[12]\b",
                    r"n_blocks\s*[+-]\s*1", r"\(n_blocks\s*[+-]\s*1\)\s*//\s*2", r"range\(1,\s*10\)",
                    r"range\(1,\s*n_blocks", r"\[1,\s*2,\s*3,\s*4,\s*5\]", r"\[6,\s*7,\s*8,\s*9\]"]


def test_block_arithmetic_lives_in_one_module():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "blocks.py" and path.parent == PACKAGE:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if any(re.search(pattern, line) for pattern in BLOCK_ARITHMETIC):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "block arithmetic outside unet_transfer/blocks.py:\n" + "\n".join(offenders)


# A network's blocks come from the network (unet_transfer/networks/), never from its settings:
# reading `levels` or building the paper's block list from it belongs to blocks.py, the U-Net
# (model.py) and the network adapters.
LEVELS_READING = [r"(?<!\bmodel)\.levels\b", r"\w\.model\.levels\b", r"get\(\s*[\"']levels[\"']", r"\[[\"']levels[\"']\]", r"\bBlocks\([^)]*levels",
                  r"\bBlocks\.of\("]
LEVELS_ALLOWED = {"unet_transfer/blocks.py", "unet_transfer/model.py"}


def test_no_module_outside_the_networks_reads_levels():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative in LEVELS_ALLOWED or relative.startswith("unet_transfer/networks/"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if any(re.search(pattern, line) for pattern in LEVELS_READING):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "levels read outside the network adapters:\n" + "\n".join(offenders)


def test_the_wheel_lists_every_package_folder():
    listing = (ROOT / "pyproject.toml").read_text().split("packages = [", 1)[1].split("]", 1)[0]
    declared = set(re.findall(r'"([\w.]+)"', listing))
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in [*PACKAGE.rglob("__init__.py"),
                                                                  *(ROOT / "hydra_plugins").rglob("__init__.py")]}
    assert found <= declared and "unet_transfer.conf" in declared


@pytest.mark.slow  # builds and installs a wheel, ~15 s: CI runs it (.ci/run)
def test_the_installed_command_works_from_an_empty_folder_with_the_users_own_configs(tmp_path):
    wheels, venv, work = tmp_path / "wheels", tmp_path / "venv", tmp_path / "work"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(ROOT)], check=True, capture_output=True)
    # A fresh environment whose dependencies come from this one (CI's `make smoke-installed`
    # installs them from pyproject.toml). Not `--system-site-packages`: a venv made from inside a
    # venv inherits the *base* interpreter's packages, not the venv's, so this environment's
    # site-packages are put on the new one's path instead (after its own, so the wheel wins).
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    inherit_packages(venv)
    subprocess.run([venv / "bin" / "pip", "install", "--no-deps", "-q", *wheels.glob("*.whl")], check=True,
                   capture_output=True)
    (work / "myconf" / "dataset").mkdir(parents=True)
    (work / "myconf" / "dataset" / "mine.yaml").write_text(
        "_target_: unet_transfer.sources.SimulatedSource\nname: mine\nkind: natural\nn_images: 10\nimage_size: 32\n")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    command = venv / "bin" / "unet-transfer"
    train = subprocess.run([command, "train", "--config-dir", "myconf", "dataset=mine", "model.width=4", "folds=2",
                            "trainer.max_epochs=1", "logger=none", "trainer.enable_progress_bar=false",
                            "hydra.run.dir=outputs/one"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-3000:]
    metrics = json.loads((work / "outputs" / "one" / "metrics.json").read_text())
    assert metrics["dataset"] == "mine" and metrics["n_images"] == 5
    installed = Path(subprocess.run([venv / "bin" / "python", "-c", "import unet_transfer; print(unet_transfer.__file__)"],
                                    cwd=work, env=env, capture_output=True, text=True, check=True).stdout.strip()).parent
    assert installed.is_relative_to(venv) and (installed / "conf" / "config.yaml").is_file()
    assert (work / ".cache" / "unet-transfer").is_dir() and not (installed / ".cache").exists()  # outputs stay here
    report = subprocess.run([command, "report", "outputs"], cwd=work, env=env, capture_output=True, text=True,
                            timeout=300)
    assert report.returncode == 0 and (work / "outputs" / "summary.md").is_file(), report.stderr[-2000:]
    listing = subprocess.run([command, "study", "nosuch"], cwd=work, env=env, capture_output=True, text=True)
    assert listing.returncode == 2 and "demo" in listing.stderr and "paper_busi" in listing.stderr


def inherit_packages(venv: Path) -> None:
    """Put this interpreter's package folders on `venv`'s path through a .pth file: the new
    environment sees torch, Hydra and the rest without reinstalling them, and sees its own
    packages first. The folders' own .pth files (an editable install of this checkout) are not
    read, so `import unet_transfer` can only find the wheel."""
    here = [path for path in sys.path if Path(path).name in ("site-packages", "dist-packages") and Path(path).is_dir()]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (venv / "lib" / version / "site-packages" / "_inherited_packages.pth").write_text("\n".join(here) + "\n")


# Layers, lowest first: a module imports only from its own layer or those below it, so training
# never depends on the study, the report or inference, and the report reads run files, never
# training internals.
LAYERS = [
    {"errors", "files", "blocks", "metrics", "hardware", "rules"},
    {"config", "model", "networks", "checkpoint", "run_files", "data", "simulate", "sources"},
    {"analysis", "finetune"},
    {"training"},
    {"report"},
    {"study", "inference", "forecast"},
    {"bench", "cli", "__main__", "__init__"},
]


def test_no_module_imports_from_a_layer_above_it():
    layer = {name: number for number, names in enumerate(LAYERS) for name in names}
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "conf":
            continue
        own = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        assert own in layer, f"{relative}: put {own!r} in a layer of tests/test_package.py::LAYERS"
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = re.match(r"\s*(?:from|import)\s+unet_transfer\.(\w+)", line)
            if match and match.group(1) in layer and layer[match.group(1)] > layer[own]:
                offenders.append(f"unet_transfer/{relative}:{number}: {line.strip()}")
    assert not offenders, "imports from a higher layer:\n" + "\n".join(offenders)


def test_simulator_and_reader_defaults_are_written_once_in_python():
    """The dataset configs take every simulator's and reader's defaults from the functions'
    signatures (sources.dataset_defaults) and repeat none of them; each can still be overridden
    like any setting."""
    import yaml

    from unet_transfer.config import compose_config
    from unet_transfer.sources import dataset_defaults

    defaults = dataset_defaults()
    for path in sorted((ROOT / "conf" / "dataset").glob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        group, name = next(entry.split("@")[0].strip("/").split("/") for entry in config["defaults"] if "@" in entry)
        repeated = sorted(set(config) & set(defaults[group][name]))
        assert not repeated, f"{path.name} repeats the defaults of {group}/{name}: {repeated}"
    composed = compose_config(["dataset.speckle=0.25", "dataset.compounding=1"]).dataset
    assert composed.speckle == 0.25 and composed.compounding == 1 and composed.pulse_cycles == 3.0
    assert compose_config(["dataset=busi"]).dataset.on_missing_mask == "error"
