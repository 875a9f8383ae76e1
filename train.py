"""Fine-tune (or pretrain) a U-Net: `python train.py [overrides]`, or `-m` to sweep.

    python train.py                                    # quick run on the synthetic default
    python train.py -m dataset=busi freeze=shallow_to_deep k=1,2,3,4,5,6,7,8,9 fold=0,1,2,3,4
"""

import warnings

import hydra

from unet_transfer.config import register_resolvers

register_resolvers()
# conf/hydra/launcher/submitit_local.yaml replaces the plugin's launcher of that name on purpose.
warnings.filterwarnings("ignore", message="(?s).*submitit_local' is validated against ConfigStore schema")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    from unet_transfer.run import run_or_exit

    return run_or_exit(cfg)


if __name__ == "__main__":
    main()
