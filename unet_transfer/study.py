"""A whole study in one command: the experiment's sweep, its reference sweeps, then the report.

    python -m unet_transfer.study demo [overrides...]      (make study EXP=demo)

Each sweep is the plain Hydra multirun a user could type (`python train.py -m experiment=...`),
so a study is resumable: finished runs are skipped, crashed or killed ones are redone. The
pretrained checkpoint is made on demand by the first run that needs it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from unet_transfer.config import CONF_DIR, register_resolvers
from unet_transfer.errors import UserError
from unet_transfer.pretrain import TRAIN_PY, ensure_pretrained, recipe, up_to_date


def study_plan(experiment: str, overrides: list[str]) -> tuple[str, list[list[str]], DictConfig]:
    """The study folder, the override lists of its sweeps (main grid first) and the config of
    one of its runs (for what the runs share, such as the pretrained checkpoint)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    register_resolvers()
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    single = [line for line, o in zip(overrides, parsed, strict=True) if not o.is_sweep_override()]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={experiment}", *single])
    base = [f"experiment={experiment}", *overrides]
    return (str(cfg.study), [base] + [merge_overrides(base, [str(line) for line in extra]) for extra in cfg.study_sweeps],
            cfg)


def merge_overrides(base: list[str], extra: list[str]) -> list[str]:
    """`base` with `extra` applied: a key set in both keeps the extra value (Hydra refuses duplicates)."""
    key = lambda line: line.split("=", 1)[0].lstrip("+~")  # noqa: E731
    replaced = {key(line) for line in extra}
    return [line for line in base if key(line) not in replaced] + extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet_transfer.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="a config in conf/experiment (demo, paper_busi, paper_udiat, paper_xray, ...)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. trainer.accelerator=gpu")
    parser.add_argument("--no-report", action="store_true", help="run the sweeps only")
    args = parser.parse_args(argv)
    study, sweeps, cfg = study_plan(args.experiment, args.overrides)
    start = time.perf_counter()
    if cfg.get("pretrained") and cfg.get("pretrain") and not up_to_date(Path(cfg.pretrained), recipe(cfg)):
        # Made here, before any sweep, with all of the machine: with runs in parallel the first
        # run would otherwise pretrain with its share of the cores while the others wait.
        print(f"== study {study}: pretraining {cfg.pretrained} first (experiment={cfg.pretrain})", flush=True)
        try:
            ensure_pretrained(cfg)
        except UserError as error:
            print(error, file=sys.stderr)
            return 1
    for number, sweep in enumerate(sweeps, 1):
        print(f"== study {study}: sweep {number}/{len(sweeps)}: python train.py -m {' '.join(sweep)}", flush=True)
        if subprocess.run([sys.executable, str(TRAIN_PY), "-m", *sweep]).returncode != 0:
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


if __name__ == "__main__":
    sys.exit(main())
