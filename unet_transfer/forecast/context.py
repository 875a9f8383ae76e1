"""What every estimator reads: the experiment's config (composed as the study composes it), its
pretrained network, the target dataset's training folds (one fold, as the study splits it), the
block map, the configurations to rank and the study's planned budget."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from unet_transfer.blocks import Blocks
from unet_transfer.errors import ConfigError
from unet_transfer.forecast.candidates import Candidate, grid


@dataclass
class Context:
    experiment: str
    study: str
    cfg: DictConfig
    layout: Blocks
    block_parameters: dict[int, int]
    candidates: list[Candidate]
    extra_dirs: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    study_runs: int = 0             # planned runs that train (epochs > 0)
    study_image_steps: int = 0      # planned image-steps of the whole study (every sweep)
    run_image_steps: int = 0        # one grid run's image-steps (epochs x training images)
    _datamodules: dict = field(default_factory=dict, repr=False)

    @property
    def folder(self) -> Path:
        return Path("multirun") / self.study

    @property
    def network(self) -> dict:
        """The network forecast, as runs record it: a study of several networks (backbones_demo)
        is forecast and scored for its main sweep's network only."""
        return network_settings(self.cfg)

    def study_command(self) -> str:
        """The line that runs this forecast's study, with the user's config folders and overrides."""
        from unet_transfer.training.commands import user_study_command

        return user_study_command(self.experiment, self.overrides, self.extra_dirs)

    def fresh_model(self):
        """The experiment's network with its pretrained weights, on the CPU, seeded as a run is."""
        import torch
        from hydra.utils import instantiate

        from unet_transfer.checkpoint import load_pretrained

        torch.manual_seed(int(self.cfg.seed))
        model = instantiate(self.cfg.model)
        if self.cfg.get("pretrained"):
            load_pretrained(model, self.cfg.pretrained)
        return model

    def datamodule(self, validation_split: float = 0.0):
        """The run's fold of the target data (fold `cfg.fold`), set up; with validation_split > 0
        that share of its training images is kept aside (never the held-out fold)."""
        if validation_split not in self._datamodules:
            from unet_transfer.training.build import build_datamodule

            cfg = OmegaConf.merge(self.cfg, {"validation_split": validation_split})
            datamodule = build_datamodule(cfg)
            datamodule.prepare_data()
            datamodule.setup("fit")
            self._datamodules[validation_split] = datamodule
        return self._datamodules[validation_split]

    def source_images(self, count: int):
        """`count` images of the data the network was pretrained on (the `pretrain=` experiment's
        dataset), as float (N, 1, H, W) in [0, 1]; ConfigError where the experiment names none."""
        import torch
        from hydra.utils import instantiate

        from unet_transfer.config import compose_config
        from unet_transfer.training.pretrain import pretraining_run_overrides

        if not (self.cfg.get("pretrained") and self.cfg.get("pretrain")):
            raise ConfigError("the experiment names no pretraining (pretrain=), so its source images are unknown")
        source_cfg = compose_config(pretraining_run_overrides(self.cfg, Path(self.cfg.pretrained)), self.extra_dirs)
        source = instantiate(source_cfg.dataset)
        source.prepare(self.cfg.paths.cache_dir)
        data, _ = source.load(self.cfg.paths.cache_dir)
        rows = sorted(range(len(data.ids)), key=lambda i: data.ids[i])[:count]
        return torch.from_numpy(data.images[rows]).unsqueeze(1).float().div_(255.0)


def target_images(datamodule, count: int):
    """The first `count` training images of the fold (no augmentation), as float (N, 1, H, W)."""
    import torch

    rows = datamodule.train_rows[:count]
    return torch.from_numpy(datamodule.data.images[rows]).unsqueeze(1).float().div_(255.0)


def make_context(experiment: str, overrides: list[str], extra_dirs=(), pretrain: bool = True) -> Context:
    """The experiment's context; its pretrained checkpoint is made first where it is missing
    (pretrain=True: the study needs it too, so its cost is neither side's)."""
    from unet_transfer.networks.protocol import block_map
    from unet_transfer.study.runner import needs_pretraining, study_plan
    from unet_transfer.training.commands import user_study_command
    from unet_transfer.training.pretrain import ensure_pretrained

    study, sweeps, cfg = study_plan(experiment, overrides, extra_dirs)
    if needs_pretraining(cfg, extra_dirs):
        if not pretrain:
            raise ConfigError(f"pretrained={cfg.pretrained} is missing or was made by another recipe: run the study "
                              f"({user_study_command(experiment, overrides, extra_dirs)}) or drop "
                              "--no-pretrain to make it first")
        print(f"== forecast {study}: pretraining {cfg.pretrained} first (experiment={cfg.pretrain}; "
              "the study needs it too)", flush=True)
        ensure_pretrained(cfg, list(extra_dirs))
    ctx = Context(experiment, study, cfg, Blocks.counted(9), {}, [], list(extra_dirs), list(overrides))
    model = ctx.fresh_model()
    blocks = block_map(model, cfg.get("depth"))
    ctx.layout = blocks.blocks
    ctx.block_parameters = {n: sum(p.numel() for p in blocks.parameters(n)) for n in ctx.layout.numbers}
    ctx.candidates = grid(ctx.layout)
    plan_budget(ctx, sweeps)
    return ctx


def plan_budget(ctx: Context, sweeps: list[list[str]]) -> None:
    """The study's planned image-steps: per sweep, its runs x its epochs x the training images of
    one fold (the folds differ by at most an image)."""
    from unet_transfer.config import compose_config
    from unet_transfer.study.runner import sweep_runs

    n_train = len(ctx.datamodule().train_rows)
    ctx.run_image_steps = int(ctx.cfg.trainer.max_epochs) * n_train
    for sweep in sweeps:
        runs = sweep_runs(sweep, ctx.extra_dirs)
        cfg = compose_config(runs[0], ctx.extra_dirs) if runs else None
        epochs = int(cfg.trainer.max_epochs) if cfg is not None else 0
        if epochs and same_network(network_settings(cfg), ctx.network):
            ctx.study_runs += len(runs)
            ctx.study_image_steps += len(runs) * epochs * n_train


def network_settings(cfg: DictConfig) -> dict:
    """The `model.*` settings of a run's config, exactly as its metrics.json records them."""
    from unet_transfer.training.identity import run_settings

    return {key: value for key, value in run_settings(cfg).items() if key.startswith("model.")}


def same_network(settings: dict, network: dict) -> bool:
    """Whether a run's recorded `model.*` settings are this network's (runs that record none: yes)."""
    mine = {key: value for key, value in settings.items() if key.startswith("model.")}
    return not mine or mine == network
