"""The `unet-transfer` command: one entry point, one subcommand per job.

    unet-transfer train [-m] [overrides...]      one run, or a sweep with -m (Hydra; = python train.py)
    unet-transfer study EXPERIMENT [overrides]   an experiment's sweeps and their report
    unet-transfer report DIR                     tables, figures and statistics of finished runs
    unet-transfer analyze DIR                    per-block analysis (analysis.md, Fig. 5) of a finished study
    unet-transfer forecast EXPERIMENT            the study's answer forecast cheaply, scored against the study
    unet-transfer bench [--quick]                speed and memory of this machine
    unet-transfer samples [--out samples.png]    simulated images beside the real samples
    unet-transfer recommend STUDY_DIR            train the study's best configuration on all its images
    unet-transfer predict CKPT INPUT OUT         masks (at the images' sizes), overlays, scores with --masks
    unet-transfer export CKPT [OUT_DIR]          ONNX and TorchScript files, checked against PyTorch

Outputs, caches and checkpoints go below the current folder (see conf/paths). Your own configs:
`--config-dir DIR` (train and study) adds DIR to the search path, so DIR/dataset/mine.yaml is
`dataset=mine` and DIR/experiment/mine.yaml is `unet-transfer study mine`.
"""

from __future__ import annotations

import importlib
import sys
import warnings

import hydra

from unet_transfer.config import CONF_DIR, check_config_dirs, check_yaml_files, register_resolvers
from unet_transfer.errors import UserError, one_line_exit, stop_cleanly

# name -> (module with main(argv), one line of help); `train` is Hydra's own command line.
COMMANDS = {
    "train": (None, "one run, or a sweep with -m: Hydra overrides as in `python train.py`"),
    "study": ("unet_transfer.study.runner", "an experiment's sweeps (pretraining on demand) and their report"),
    "report": ("unet_transfer.report.__main__", "tables, figures and statistics of the finished runs below DIR"),
    "analyze": ("unet_transfer.report.analyze_command", "per-block analysis of a finished study: analysis.md, Fig. 5"),
    "forecast": ("unet_transfer.forecast.command", "which blocks to tune, forecast cheaply; scored against the study if run"),
    "bench": ("unet_transfer.bench.__main__", "speed and memory benchmark of this machine"),
    "samples": ("unet_transfer.simulate.__main__", "a sheet of simulated images beside the real samples"),
    "recommend": ("unet_transfer.inference.recommend", "train a study's best configuration on all its images, with a model card"),
    "predict": ("unet_transfer.inference.predict", "segment images with a checkpoint: masks, overlays, scores with --masks"),
    "export": ("unet_transfer.inference.export", "ONNX and TorchScript files of a checkpoint, checked against PyTorch"),
}

register_resolvers()
# conf/hydra/launcher/submitit_local.yaml replaces the plugin's launcher of that name on purpose.
warnings.filterwarnings("ignore", message="(?s).*submitit_local' is validated against ConfigStore schema")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def hydra_train(cfg):
    from unet_transfer.training.run import run_or_exit

    return run_or_exit(cfg)


def config_dirs_in(args: list[str]) -> list[str]:
    """The user config folders a train command line names: `--config-dir DIR` (`-cd DIR`,
    `--config-dir=DIR`) and the file:// entries of `hydra.searchpath=[...]`."""
    dirs = []
    for index, arg in enumerate(args):
        if index and args[index - 1] in ("--config-dir", "-cd"):
            dirs.append(arg)
        elif arg.startswith("--config-dir="):
            dirs.append(arg.split("=", 1)[1])
        elif arg.startswith("hydra.searchpath="):
            entries = (entry.strip() for entry in arg.split("=", 1)[1].strip("[]").split(","))
            dirs += [entry.removeprefix("file://") for entry in entries if entry.startswith("file://")]
    return dirs


def train_main() -> None:
    """`unet-transfer train` / `python train.py`: the user's config folders and every config file's
    YAML are checked first (one line and exit code 2, not Hydra's traceback), then Hydra runs."""
    try:
        dirs = config_dirs_in(sys.argv[1:])
        check_config_dirs(dirs)
        check_yaml_files([CONF_DIR, *dirs])
    except UserError as error:
        raise SystemExit(one_line_exit(error)) from None
    hydra_train()


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "usage: unet-transfer COMMAND [arguments]\n\ncommands:\n" + "\n".join(lines) + \
        "\n\n`unet-transfer COMMAND --help` for one command's arguments."


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"unet-transfer: unknown command {command!r}.\n\n{usage()}", file=sys.stderr)
        return 2
    with stop_cleanly():  # Ctrl-C: one line, exit code 130
        if command == "train":
            sys.argv = ["unet-transfer train", *rest]
            train_main()
            return 0
        module = importlib.import_module(COMMANDS[command][0])
        return int(module.main(rest) or 0)
