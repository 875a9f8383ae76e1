"""unet-transfer: which layers of a pretrained U-Net should be fine-tuned for a new modality?"""

__version__ = "0.2.0"
