"""Network adapters: each network family tells the framework its blocks (protocol.py); the
paper's U-Net (unet.py) is one case, MONAI's FlexibleUNet (flexunet.py) and BasicUNet
(basicunet.py) are others."""
