"""Wall-time estimates of the demo study and of the paper's study on this device, from the
measured rates."""

from __future__ import annotations

from unet_transfer.bench.common import PAPER, compose_cfg, trainable_of
from unet_transfer.bench.loops import count_flops
from unet_transfer.blocks import PAPER_BLOCKS, SWEPT_DIRECTIONS, Blocks
from unet_transfer.networks.protocol import blocks_of, meta_model


def interpolate(points: list[tuple[float, float]], x: float) -> float:
    """Piecewise-linear through `points` (sorted by x), held constant outside them."""
    points = sorted(points)
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y1
    return points[-1][1]


def study_settings(layout: Blocks = PAPER_BLOCKS) -> list[tuple[str, int | None]]:
    """Trainings of one fold: both directions k = 1..9 (deep_to_shallow k=9 = shallow_to_deep k=9,
    copied, not trained) and the from-scratch reference (all blocks)."""
    return ([("shallow_to_deep", k) for k in layout.numbers]
            + [("deep_to_shallow", k) for k in layout.numbers[:-1]] + [("none", None)])


def study_hours(*, layout: Blocks, seconds_per_image: float, flop_ratio: dict, time_of_flop_ratio, forward_fraction: float,
                folds: int, epochs: int, train_images: int, held_out: int, runs_per_fold: int,
                fixed_s: float, cold_s: float, sweeps: int, augment_s: float, parallel: float = 1.0) -> dict:
    """`parallel`: how much faster runs at once get through the sweep than one at a time."""
    trainings = study_settings(layout)
    train = folds * epochs * train_images * seconds_per_image * sum(
        time_of_flop_ratio(flop_ratio[s]) for s in trainings)
    # every run but the copied twin scores its held-out fold (the pretrained-only row too)
    evaluate = folds * (runs_per_fold - 1) * held_out * seconds_per_image * forward_fraction
    fixed = folds * runs_per_fold * fixed_s + sweeps * cold_s
    train, evaluate, fixed = train / parallel, evaluate / parallel, fixed / parallel
    total = train + evaluate + fixed + augment_s
    return {"hours": total / 3600, "parallel": parallel, "train_h": train / 3600, "evaluate_h": evaluate / 3600,
            "fixed_h": fixed / 3600, "runs": folds * runs_per_fold, "trainings": folds * len(trainings)}


def pretrain_hours(*, seconds_per_image: float, forward_fraction: float, epochs: int, images: int, folds: int,
                   cold_s: float) -> float:
    validation = images // folds
    return (epochs * ((images - validation) * seconds_per_image
                      + validation * seconds_per_image * forward_fraction) + cold_s) / 3600


PARALLEL_GAIN = 1.3  # sweeps' runs at once on a CPU (2 x 1 thread vs 1 x 2 threads), measured on the demo
REPORT_FIXED_S = 15.0  # tables, statistics and figures of a study report


def report_hours(seconds_per_image: float, cfg) -> float:
    """The report: its figures, plus Fig. 5's activation maximisation (4 nets x 2 layers x 128
    steps of 6 images, about a training step's cost per image)."""
    from unet_transfer.analysis.activation import Settings
    from unet_transfer.report.fig5 import LAYERS, UNITS

    maximisation = 4 * len(LAYERS) * Settings().steps * UNITS * seconds_per_image
    return (REPORT_FIXED_S + maximisation) / 3600


def estimates(results: dict) -> dict:
    """Wall time of the demo study and of the paper's study on this device, from measured rates.

    Training time per image = the real path's measured time (all blocks) x the freeze setting's
    time ratio, interpolated from the measured ratios over the settings' FLOP ratios; scaled by
    FLOPs from the measured size to the study's size (a factor 1 in the full bench)."""
    from omegaconf import OmegaConf

    costs = results["fixed_cost"]
    fixed, cold = max(costs["in_sweep_s"], costs["sweep_job_s"]), costs["cold_start_s"]
    out = {}
    for label, experiment, pretrain in (("demo", "demo", "demo_pretrain"), ("paper", "paper_busi", "pretrain_natural")):
        measured = results["throughput"][label]
        study_cfg = compose_cfg([f"experiment={experiment}", "output_dir=."])
        pretrain_cfg = compose_cfg([f"experiment={pretrain}", "output_dir=."])
        image_size, batch = int(study_cfg.dataset.image_size), measured["size"]["batch_size"]
        full = count_flops(study_cfg.model, image_size, batch)
        scale = full / measured["flops_per_step"]
        seconds_per_image = scale / measured["images_per_s"]["real"]
        forward_fraction = count_flops(study_cfg.model, image_size, batch, train=False) / full
        points = [(s["flop_ratio"], s["time_ratio"]) for s in results["freeze"][label]["settings"].values()]
        layout = blocks_of(meta_model(study_cfg.model))
        flop_ratio = {(d, k): count_flops(study_cfg.model, image_size, batch, trainable_of(d, k, layout)) / full
                      for d, k in study_settings(layout)}
        folds, epochs = int(study_cfg.folds), int(study_cfg.trainer.max_epochs)
        common = {"layout": layout, "seconds_per_image": seconds_per_image, "flop_ratio": flop_ratio, "forward_fraction": forward_fraction,
                  "time_of_flop_ratio": lambda r, points=points: interpolate(points, r), "folds": folds,
                  "epochs": epochs, "runs_per_fold": len(SWEPT_DIRECTIONS) * layout.n + len(study_cfg.study_sweeps), "fixed_s": fixed,
                  "cold_s": cold, "sweeps": 1 + len(study_cfg.study_sweeps)}
        data_rate = results["data"][label]["images_per_s"] * scale
        if label == "demo":
            n = int(study_cfg.dataset.n_images)
            cpu_sweeps = results["device"]["type"] == "cpu" and (results["device"]["cpu_count"] or 1) > 1
            study = study_hours(**common, train_images=n - n // folds, held_out=n // folds, augment_s=0.0,
                                parallel=PARALLEL_GAIN if cpu_sweeps else 1.0)
            pre = pretrain_hours(seconds_per_image=seconds_per_image, forward_fraction=forward_fraction,
                                 epochs=int(pretrain_cfg.trainer.max_epochs), images=int(pretrain_cfg.dataset.n_images),
                                 folds=int(pretrain_cfg.folds), cold_s=cold)
            report = report_hours(seconds_per_image, study_cfg)
            total = study["hours"] + pre + report
            out[label] = {"study_h": study["hours"], "pretraining_h": pre, "report_h": report, "total_h": total,
                          "detail": study}
            if "simulation" in results:  # made once per cache, before the first run
                out[label]["simulation_share"] = results["simulation"]["demo_seconds"] / (total * 3600)
        else:
            total_images = int(study_cfg.augment.total)
            gain = results.get("concurrency", {}).get("gain", 1.0)  # runs_per_gpu on a GPU, measured
            per_dataset = {name: study_hours(**common, train_images=total_images, held_out=n // folds,
                                             augment_s=folds * total_images / data_rate, parallel=gain)
                           for name, n in PAPER["datasets"].items()}
            pre = pretrain_hours(seconds_per_image=seconds_per_image, forward_fraction=forward_fraction,
                                 epochs=int(pretrain_cfg.trainer.max_epochs), images=PAPER["pretrain_images"],
                                 folds=int(pretrain_cfg.folds), cold_s=cold)
            out[label] = {"pretraining_h": pre, **{f"{name}_h": d["hours"] for name, d in per_dataset.items()},
                          "total_h": pre + sum(d["hours"] for d in per_dataset.values()), "detail": per_dataset}
        out[label].update({
            "flop_scale_from_measured": scale, "seconds_per_image_all_blocks": seconds_per_image,
            "settings_time_ratio": {f"{d}_k{k}" if k else "scratch": interpolate(points, r)
                                    for (d, k), r in flop_ratio.items()},
            "config": {"experiment": experiment, "pretrain": pretrain, "folds": folds, "epochs": epochs,
                       "model": OmegaConf.to_container(study_cfg.model, resolve=True), "image_size": image_size,
                       "batch_size_measured": batch, "batch_size_configured": int(study_cfg.batch_size)},
        })
    return out
