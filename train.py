"""Fine-tune (or pretrain) a U-Net from a checkout: the same as `unet-transfer train`.

    python train.py                                    # quick run on the synthetic default
    python train.py -m dataset=busi freeze=shallow_to_deep k=1,2,3,4,5,6,7,8,9 fold=0,1,2,3,4
"""

from unet_transfer.cli import train_main

if __name__ == "__main__":
    train_main()
