"""Ways to fine-tune the blocks a freeze setting leaves trainable (`finetune=`), one module each:

- base.Method (`finetune=freeze`): the paper's way, every parameter of a trainable block at the
  optimiser's learning rate;
- layer_lr: per-block learning rates by depth (ULMFiT, either direction) or listed;
- l2sp: an L2-SP penalty toward the pretrained weights (Li et al., ICML 2018);
- bitfit: only biases (and optionally the output head) train;
- auto_rgn: per-tensor learning rates from relative gradient norms (Lee et al., ICLR 2023);
- lora: low-rank adapters on the convolutions, merged into plain weights at the end.

A method is a Lightning callback the LightningModule asks for its parameter groups and loss
penalty; adding one is one module here and one yaml in conf/finetune/.
"""
