"""Using a study's answer: predict with a checkpoint, train the study's recommended network, export it.

- preprocessing: the contract between training and prediction (recorded in every checkpoint)
- network: a checkpoint loaded for inference (strict, no pickled code, no imported targets)
- inputs / outputs / scoring: the files predict reads, the files it writes, its scores
- predict: `unet-transfer predict CKPT INPUT OUT`
- choose / final / card / recommend: `unet-transfer recommend STUDY`
- export: `unet-transfer export CKPT` (ONNX, TorchScript)
"""
