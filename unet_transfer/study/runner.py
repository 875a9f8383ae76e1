"""A whole study in one command: the experiment's sweep, its reference sweeps, then the report.

    unet-transfer study demo [overrides...]      (make study EXP=demo; python -m unet_transfer.study demo)

Each sweep is the plain Hydra multirun a user could type (`unet-transfer train -m
experiment=...`), so a study is resumable: finished runs are skipped, crashed or killed ones
are redone. A missing pretrained checkpoint is made before the first sweep that uses it, with
every core (a study of several networks has one per network).

Before anything runs, every setting of the study is checked on a few composed runs of each
sweep (one per value of every swept setting) and of each pretraining: a bad one stops the study
in seconds with one line that names it. `--dry-run` prints the plan (sweeps, runs, pretraining,
output folder) and runs nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from unet_transfer.blocks import SWEPT_DIRECTIONS, span
from unet_transfer.config import (
    CONF_DIR,
    compose_config,
    experiments,
    process_token,
    register_resolvers,
    searchpath_override,
)
from unet_transfer.errors import ConfigError, UserError, one_line_exit, run_child
from unet_transfer.training.commands import child_environment, train_command, user_command
from unet_transfer.training.pretrain import (
    ensure_pretrained,
    pretraining_run_overrides,
    recipe,
    up_to_date,
)


def study_plan(experiment: str, overrides: list[str], extra_dirs=()) -> tuple[str, list[list[str]], DictConfig]:
    """The study folder, the override lists of its sweeps (main grid first) and the config of
    one of its runs (for what the runs share, such as the pretrained checkpoint)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    known = experiments(extra_dirs)
    if experiment not in known:
        raise ConfigError(f"No experiment {experiment!r}; the experiments are: {', '.join(known)} "
                          "(your own: put NAME.yaml in DIR/experiment/ and pass --config-dir DIR).")
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    single = [line for line, o in zip(overrides, parsed, strict=True) if not o.is_sweep_override()]
    cfg = compose_config([f"experiment={experiment}", *single], extra_dirs)
    base = [f"experiment={experiment}", *overrides]
    sweeps = [base] + [merge_overrides(base, [str(line) for line in extra]) for extra in cfg.study_sweeps]
    if cfg.get("lr_grid"):  # each sweep over the grid, the lr chosen per fold on a validation split (report/methods.py)
        grid = [f"optimizer.lr={','.join(str(v) for v in cfg.lr_grid_values)}",
                f"validation_split={cfg.lr_grid_validation}"]
        sweeps = [merge_overrides(sweep, grid) for sweep in sweeps]
    return str(cfg.study), sweeps, cfg


def merge_overrides(base: list[str], extra: list[str]) -> list[str]:
    """`base` with `extra` applied: a key set in both keeps the extra value (Hydra refuses duplicates)."""
    key = lambda line: line.split("=", 1)[0].lstrip("+~")  # noqa: E731
    replaced = {key(line) for line in extra}
    return [line for line in base if key(line) not in replaced] + extra


def sweeper_params(overrides: list[str], extra_dirs=()) -> list[str]:
    """The sweep the experiment itself defines (hydra.sweeper.params), as overrides."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    single = [line for line, o in zip(overrides, parsed, strict=True) if not o.is_sweep_override()]
    register_resolvers()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*searchpath_override(extra_dirs), *single],
                      return_hydra_config=True)
    return [f"{key}={value}" for key, value in (cfg.hydra.sweeper.get("params") or {}).items()]


def sweep_runs(sweep: list[str], extra_dirs=()) -> list[list[str]]:
    """The override list of every run of a sweep, as Hydra's sweeper makes them (the experiment's
    sweep params, the command line winning)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([*sweeper_params(sweep, extra_dirs), *sweep])
    return BasicSweeper.split_arguments(parsed, None)[0]


@dataclass
class Checked:
    """What checking a study found: per sweep, the run configs whose pretrained checkpoint it
    must make first (each checkpoint once, before the first sweep that uses it: a study of
    several networks has one each), and notes for the user (a k sweep that stops short of the
    network's own blocks)."""

    pretrainings: list[list[DictConfig]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def swept_ks(sweep: list[list[str]]) -> set[int]:
    """The k of a sweep's runs that train k blocks from one end (freeze=shallow_to_deep/deep_to_shallow)."""
    found = set()
    for job in sweep:
        settings = dict(line.split("=", 1) for line in job if "=" in line)
        if settings.get("freeze") in SWEPT_DIRECTIONS and settings.get("k", "").isdigit():
            found.add(int(settings["k"]))
    return found


def check_study(study: str, runs: list[list[list[str]]], extra_dirs=()) -> Checked:
    """Every setting of the study, checked before anything runs: the study name, a few runs of
    each sweep that hold every swept value between them, and each pretraining's own run."""
    from hydra_plugins.unet_transfer.sweeper import covering_jobs
    from unet_transfer.training.validate import check_settings, check_study_name

    check_study_name(study)
    seen: set[str] = set()  # checkpoints looked at (each once: its recipe is composed to compare)
    checked = Checked()
    for number, sweep in enumerate(runs, 1):
        first, layout = [], None
        for job in covering_jobs(sweep):
            cfg = compose_config(job, extra_dirs)
            layout, _ = check_settings(cfg)
            if not cfg.get("pretrained") or str(cfg.pretrained) in seen:
                continue
            seen.add(str(cfg.pretrained))
            if needs_pretraining(cfg, extra_dirs):
                check_settings(compose_config(pretraining_run_overrides(cfg, Path(cfg.pretrained)), extra_dirs))
                first.append(cfg)
        checked.pretrainings.append(first)
        swept = swept_ks(sweep)
        if layout is not None and swept and max(swept) < layout.n:
            checked.notes.append(f"sweep {number} runs k = {span(sorted(swept))} of the {layout.n} blocks of "
                                 f"{layout.described}, so never all of them; add k=range(1,{layout.n + 1}) to sweep "
                                 "every k of this network")
    return checked


def needs_pretraining(cfg: DictConfig, extra_dirs=()) -> bool:
    """The study makes its pretrained checkpoint first (missing, or made by another recipe)."""
    return bool(cfg.get("pretrained") and cfg.get("pretrain")
                and not up_to_date(Path(cfg.pretrained), recipe(cfg, extra_dirs)))


def print_plan(study: str, sweeps: list[list[str]], runs: list[list[list[str]]], cfg: DictConfig, extra_dirs=(),
               checked: Checked | None = None) -> None:
    """What the study would do (`--dry-run`): the folder, the pretrainings, each sweep and its runs."""
    folder = Path.cwd() / "multirun" / study
    finished = sum(1 for _ in folder.rglob("metrics.json")) if folder.is_dir() else 0
    print(f"Study {study} (dry run: nothing runs)")
    print(f"  output folder: {folder}" + (f" (holds {finished} finished runs: skipped)" if finished else ""))
    checked = checked or Checked()
    pretrainings = checked.pretrainings
    if not any(pretrainings):
        there = f"the runs start from {cfg.pretrained} (there)" if cfg.get("pretrained") else "the runs train from scratch"
        print(f"  pretraining: none, {there}")
    for number, (sweep, jobs) in enumerate(zip(sweeps, runs, strict=True), 1):
        for made in pretrainings[number - 1] if pretrainings else ():
            overrides = pretraining_run_overrides(made, Path(made.pretrained))
            print(f"  pretraining first: {made.pretrained} (experiment={made.pretrain}): "
                  f"{user_command(overrides, extra_dirs=extra_dirs)}")
        print(f"  sweep {number}/{len(sweeps)}, {len(jobs)} runs: {user_command(sweep, True, extra_dirs)}")
    print(f"  in all: {len(sweeps)} sweeps, {sum(map(len, runs))} runs")
    for note in checked.notes:
        print(f"  note: {note}")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unet-transfer study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="an experiment config (demo, paper_busi, paper_udiat, paper_xray, ...)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. trainer.accelerator=gpu")
    parser.add_argument("--no-report", action="store_true", help="run the sweeps only")
    parser.add_argument("--dry-run", action="store_true",
                        help="check every setting and print the plan (sweeps, runs, pretraining, folder); run nothing")
    parser.add_argument("--config-dir", "-cd", action="append", default=[], metavar="DIR",
                        help="a folder of your own configs (DIR/experiment/*.yaml, DIR/dataset/*.yaml, ...)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_intermixed_args(argv)  # options anywhere among the overrides
    try:
        from unet_transfer.training.validate import check_working_folder

        check_working_folder()
        study, sweeps, cfg = study_plan(args.experiment, args.overrides, args.config_dir)
        runs = [sweep_runs(sweep, args.config_dir) for sweep in sweeps]
        checked = check_study(study, runs, args.config_dir)
    except Exception as error:  # a UserError, also when Hydra wrapped it: one line, exit code 2
        return one_line_exit(error)
    if args.dry_run:
        print_plan(study, sweeps, runs, cfg, args.config_dir, checked)
        return 0
    for note in checked.notes:
        print(f"== study {study}: note: {note}", flush=True)
    start = time.perf_counter()
    process_token()  # one invocation: its sweeps (child processes) share the token, so twins may copy
    for number, sweep in enumerate(sweeps, 1):
        for made in checked.pretrainings[number - 1]:
            # Made here, before its sweep, with all of the machine: with runs in parallel the first
            # run would otherwise pretrain with its share of the cores while the others wait.
            print(f"== study {study}: pretraining {made.pretrained} first (experiment={made.pretrain})", flush=True)
            try:
                ensure_pretrained(made, args.config_dir)
            except UserError as error:
                print(error, file=sys.stderr)
                return 1
        print(f"== study {study}: sweep {number}/{len(sweeps)} ({len(runs[number - 1])} runs): "
              f"{user_command(sweep, True, args.config_dir)}", flush=True)
        command = train_command(sweep, multirun=True, extra_dirs=args.config_dir)
        if run_child(command, env=child_environment()) != 0:
            print(f"Sweep {number} failed; fix the error above and run the same command again: "
                  "finished runs are kept and skipped.", file=sys.stderr)
            return 1
    print(f"== study {study}: all sweeps finished in {time.perf_counter() - start:.0f} s", flush=True)
    if not args.no_report:
        from unet_transfer.report import write_report

        written = write_report(Path("multirun") / study)
        for name, path in written.items():
            print(f"   {name}: {path}")
        if "logger=wandb" in args.overrides:
            log_report_to_wandb(study, written, offline="logger.offline=false" not in args.overrides)
    return 0


def log_report_to_wandb(study: str, written: dict[str, Path], offline: bool = True) -> None:
    """The report's figures and tables as one summary run beside the study's runs."""
    import wandb

    run = wandb.init(project="unet-transfer", name=f"{study}-report", job_type="report", group="report",
                     dir=str(Path("multirun") / study), mode="offline" if offline else "online")
    for name, path in written.items():
        if path.suffix == ".png":
            run.log({name.removesuffix(".png"): wandb.Image(str(path))})
        elif path.suffix == ".md":
            run.log({name.removesuffix(".md"): wandb.Html(f"<pre>{path.read_text()}</pre>")})
    run.finish()
    wandb.teardown()  # leave no W&B service state behind for later runs in this process
    print(f"   W&B summary run: {run.dir}")
