"""`unet-transfer forecast EXPERIMENT [overrides]` (make forecast EXP=demo): forecast the study's
answer (which blocks to fine-tune) at a small share of its compute, and score the forecast
against the study when multirun/<study> holds its results.

Writes multirun/<study>/forecast/forecast.json, forecast.md and forecast.png. The pretrained
checkpoint is made first where it is missing (the study needs it too; its cost counts on
neither side). Estimators: gradient (relative gradient norm per block), shift (feature-statistics
distance per block, target vs source images), racing (successive halving of short fine-tunings);
plus the baselines paper and everything (unet_transfer/forecast/).
"""

from __future__ import annotations

import argparse
import sys
import traceback

from unet_transfer.errors import one_line_exit, user_error_in
from unet_transfer.forecast.estimator import ESTIMATORS, Estimate, estimator

BASELINES = {
    "paper": "baseline: always the paper's answer (more blocks, shallow-to-deep first)",
    "everything": "baseline: always tune everything (more trained parameters first)",
}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unet-transfer forecast", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="an experiment config (demo, demo_xray, paper_busi, ...)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for the study")
    parser.add_argument("--estimators", default=",".join(ESTIMATORS),
                        help=f"comma-separated, of {', '.join(ESTIMATORS)} (default: all)")
    parser.add_argument("--share", type=float, default=None,
                        help="racing's budget as a share of the study's planned image-steps (default 0.06)")
    parser.add_argument("--out", default=None, help="output folder (default multirun/<study>/forecast)")
    parser.add_argument("--no-pretrain", action="store_true",
                        help="stop with one line where the pretrained checkpoint is missing or was made by another "
                             "recipe, instead of pretraining it first")
    parser.add_argument("--config-dir", "-cd", action="append", default=[], metavar="DIR",
                        help="a folder of your own configs (DIR/experiment/*.yaml, ...)")
    return parser


def chosen(text: str) -> list[str]:
    from unet_transfer.errors import ConfigError

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ESTIMATORS]
    if unknown or not names:
        raise ConfigError(f"--estimators {text!r}: unknown {unknown or '(none given)'}; "
                          f"choose from {', '.join(ESTIMATORS)}")
    return names


def run_estimator(name: str, share: float | None):
    """The estimator called `name`; racing with the given budget share."""
    from unet_transfer.forecast.racing import Estimator as Racing

    return Racing(share) if name == "racing" and share is not None else estimator(name)


def estimate(name: str, ctx, share: float | None) -> Estimate:
    print(f"== forecast {ctx.study}: {name}", flush=True)
    try:
        return run_estimator(name, share).estimate(ctx)
    except Exception as error:
        if user_error_in(error) is None:
            traceback.print_exc()
        print(f"   {name} failed: {error}", file=sys.stderr)
        return Estimate(name, "failed", error=f"{type(error).__name__}: {error}".splitlines()[0])


def baselines(ctx) -> list[Estimate]:
    from unet_transfer.forecast.ranking import everything_baseline, paper_baseline

    return [Estimate("baseline: paper", BASELINES["paper"], scores=paper_baseline(ctx.candidates),
                     rule="k, shallow-to-deep first"),
            Estimate("baseline: everything", BASELINES["everything"],
                     scores=everything_baseline(ctx.candidates, ctx.block_parameters), rule="trained parameter share")]


def study_cost(ctx, table, estimates) -> dict:
    """The study's compute: measured from its runs, else planned (image-steps) and estimated
    (seconds: at the racing's measured seconds per image-step on this machine)."""
    if table is not None and table.seconds:
        return {"seconds": table.seconds, "image_steps": table.image_steps, "source": "the study's runs"}
    racing = next((e for e in estimates if e.name == "racing" and e.image_steps and not e.error), None)
    seconds = racing.seconds / racing.image_steps * ctx.study_image_steps if racing else None
    return {"seconds": seconds, "image_steps": ctx.study_image_steps,
            "source": "planned image-steps; seconds estimated at the racing's speed" if seconds else "planned image-steps"}


def not_scored(ctx) -> str:
    """The one line that says the study's results are missing, so nothing is scored, and how to get them."""
    return (f"   no study results in {ctx.folder}: the forecast is not scored against the study; run "
            f"`{ctx.study_command()}`, then this forecast again")


def main(argv: list[str] | None = None) -> int:
    from pathlib import Path

    args = parser().parse_intermixed_args(argv)
    try:
        from unet_transfer.forecast.context import make_context
        from unet_transfer.training.validate import check_working_folder

        names = chosen(args.estimators)
        if args.share is not None and not 0 < args.share <= 1:
            from unet_transfer.errors import ConfigError

            raise ConfigError(f"--share {args.share}: give a share of the study's image-steps in (0, 1], e.g. 0.06")
        check_working_folder()
        ctx = make_context(args.experiment, args.overrides, args.config_dir, pretrain=not args.no_pretrain)
    except Exception as error:
        return one_line_exit(error)
    from unet_transfer.forecast import scoring, write

    print(f"== forecast {ctx.study}: {len(ctx.candidates)} configurations; the study plans {ctx.study_runs} runs, "
          f"{ctx.study_image_steps} image-steps", flush=True)
    estimates = [estimate(name, ctx, args.share) for name in names] + baselines(ctx)
    table = scoring.study_table(ctx.folder, ctx.candidates, ctx.network)
    if table is None:
        print(not_scored(ctx), flush=True)
    cost = study_cost(ctx, table, estimates)
    results = [scoring.cost_shares(scoring.score(e.scores, ctx.candidates, ctx.layout, table), e.seconds,
                                   e.image_steps, cost["seconds"], cost["image_steps"]) for e in estimates]
    folder = Path(args.out) if args.out else ctx.folder / "forecast"
    written = write.write(ctx, estimates, results, table, cost, folder)
    for e, r in zip(estimates, results, strict=True):
        line = f"   {e.name:<22} pick {r.pick or '–':<10} direction {r.direction or '–':<11}"
        if table is not None:
            line += (f" tau {write.fmt(r.tau)}  direction right {write.fmt(r.direction_right)}  "
                     f"k right {r.k_right}/{r.k_compared}  regret {write.fmt(r.regret, 3)}")
        line += f"  cost share {write.fmt(r.cost_share, 3)}" + (f"  FAILED: {e.error}" if e.error else "")
        print(line)
    for name, path in written.items():
        print(f"   {name}: {path}")
    return 0
