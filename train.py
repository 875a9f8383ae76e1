"""Fine-tune (or pretrain) a U-Net from a checkout: the same as `unet-transfer train`.

    python train.py                                    # quick run on the synthetic default
    python train.py -m dataset=busi freeze=shallow_to_deep k=1,2,3,4,5,6,7,8,9 fold=0,1,2,3,4
"""

from unet_transfer.cli import train_main
from unet_transfer.errors import stop_cleanly

if __name__ == "__main__":
    with stop_cleanly():  # Ctrl-C: one line, exit code 130
        train_main()
