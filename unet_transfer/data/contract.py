"""The preprocessing contract between training and prediction.

Training reads a file with `read_grey` (grey [0, 1]), resizes it to `image_size` x `image_size`
with `resize_image` (area average along a shrinking side, linear along a growing one), stores
it as uint8 and divides by 255 when it builds a batch (data/preprocess.py, data/datamodule.py).
A network only works on inputs made the same way, so prediction calls the same functions, and
every checkpoint records the rule and the size (`record`). Prediction refuses a checkpoint
whose rule it does not know rather than guess one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from unet_transfer.data.preprocess import PREPROCESS_VERSION, quantise, resize_image
from unet_transfer.errors import ConfigError
from unet_transfer.metrics import THRESHOLD

RULE = "grey-bt601/resize-area-linear/uint8-div-255"
MAX_IMAGE_SIZE = 2**14  # a recorded size beyond it is damage, not a network (one input alone: 1 GiB)


def record(image_size: int, threshold: float = THRESHOLD) -> dict:
    """What a checkpoint says about its inputs and outputs (stored in its `meta`)."""
    return {"image_size": int(image_size), "threshold": float(threshold),
            "preprocessing": {"rule": RULE, "version": PREPROCESS_VERSION}}


def read_record(meta: dict, path: Path | str, fits: Callable[[int], None]) -> tuple[int, float]:
    """(image_size, threshold) of a checkpoint, or a ConfigError saying why it cannot be used: the
    size a whole number the network takes (`fits`, from `size_rule` of the checkpoint's network),
    the threshold a probability strictly between 0 and 1."""
    rule = meta.get("preprocessing") or {}
    if "image_size" not in meta or not rule:
        raise ConfigError(
            f"checkpoint={str(path)!r} does not record the preprocessing it was trained with (image size, "
            "resizing), and predicting with another one gives wrong masks. Use a checkpoint written by this "
            "version: `unet-transfer recommend STUDY`, or a run with save_weights=PATH.")
    if not isinstance(rule, dict):
        raise damaged(path, f"its preprocessing record is {rule!r}, not the rule and version this project writes")
    if rule.get("rule") != RULE or rule.get("version") != PREPROCESS_VERSION:
        raise ConfigError(
            f"checkpoint={str(path)!r} was trained with preprocessing {rule.get('rule')!r} version "
            f"{rule.get('version')!r}; this version of unet-transfer applies {RULE!r} version "
            f"{PREPROCESS_VERSION}. Predict with the unet-transfer version that trained it, or train it again.")
    return check_size(meta["image_size"], path, fits), check_threshold(meta.get("threshold", THRESHOLD), path)


def damaged(path: Path | str, what: str) -> ConfigError:
    return ConfigError(f"checkpoint={str(path)!r}: {what}. This project never writes that: the file is damaged "
                       "or edited; write it again (save_weights=PATH, or `unet-transfer recommend STUDY`).")


def check_size(size, path: Path | str, fits: Callable[[int], None]) -> int:
    from unet_transfer.rules import whole

    try:
        whole(size, "dataset.image_size", 1, " (pixels; the paper uses 256)")
        if size > MAX_IMAGE_SIZE:
            raise ConfigError(f"dataset.image_size={size} is beyond any size a network here trains at (at most "
                              f"{MAX_IMAGE_SIZE}; the paper uses 256)")
        fits(size)
    except ConfigError as error:
        raise damaged(path, f"its recorded {str(error).rstrip('.')}") from None
    return size


# --- Which input sizes a network takes -------------------------------------------------------

MAX_STEP = 2**10  # no network here halves its input more than 10 times


def takes(meta_model, size: int) -> bool:
    """Whether the network gives a (1, 1, size, size) output for a (1, C, size, size) input: a
    forward pass on the meta device (shapes only: no memory, whatever the size)."""
    import torch

    if any(t.device.type != "meta" for t in meta_model.parameters()):
        raise ValueError("takes() runs a forward pass at any size: give it a network on the meta device")
    first = next(meta_model.parameters())
    channels = first.shape[1] if first.dim() == 4 else 1
    try:
        with torch.no_grad():
            out = meta_model(torch.empty(1, channels, size, size, device="meta"))
    except Exception:  # shapes that do not line up (a skip and an up-sampled map), sizes below the minimum
        return False
    return isinstance(out, torch.Tensor) and tuple(out.shape[-2:]) == (size, size)


def check_grey_to_one_map(meta_model, size: int, path: Path | str) -> None:
    """Predict and export feed one grey channel and read one foreground map: a checkpoint whose
    network takes or gives other channels is refused here (a forward pass on the meta device),
    not by a shape error in the middle of predicting."""
    import torch

    try:
        with torch.no_grad():
            out = meta_model(torch.empty(1, 1, size, size, device="meta"))
    except Exception:
        out = None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, 1, size, size):
        gives = "no map" if not isinstance(out, torch.Tensor) else f"output of shape {tuple(out.shape)}"
        raise damaged(path, f"its network does not map one grey channel to one foreground map (a (1, 1, {size}, "
                            f"{size}) input gives {gives}); predict and export need in_channels=1 and "
                            "out_channels=1, as training makes")


def size_step(meta_model) -> int | None:
    """The network's size step: the smallest power of two p whose multiples 2p and 3p it takes
    (16 for the paper's 4-level U-Net, 32 for FlexibleUNet on a ResNet)."""
    p = 1
    while p <= MAX_STEP:
        if takes(meta_model, 2 * p) and takes(meta_model, 3 * p):
            return p
        p *= 2
    return None


def size_rule(meta_model) -> Callable[[int], None]:
    """`fits(size)` for `read_record`: nothing when the network (on the meta device) takes
    size x size inputs, else a ConfigError naming the step and the nearest valid sizes."""

    def fits(size: int) -> None:
        if takes(meta_model, size):
            return
        step = size_step(meta_model)
        name = type(meta_model).__name__
        if step is None:
            raise ConfigError(f"dataset.image_size={size}: the {name} does not take {size}x{size} inputs")
        lower, upper = max(step, size - size % step), size - size % step + step
        raise ConfigError(f"dataset.image_size={size}: the {name} halves its input down to 1/{step}, so the size must "
                          f"be a multiple of {step}; the nearest valid sizes are {lower} and {upper}")

    return fits
def check_threshold(threshold, path: Path | str) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise damaged(path, f"its recorded threshold={threshold!r} is not a probability strictly between 0 and 1")
    return float(threshold)


def network_input(grey: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 (image_size, image_size): a grey [0, 1] image as training stored it (divide by 255 to feed it)."""
    return quantise(resize_image(grey, image_size))


def input_digest(network_input: np.ndarray) -> str:
    """A short digest of what the network sees of one image: equal for an image predict reads and
    the same image in a training cache, so a model card can say which images a network saw
    (names cannot: new images may reuse them)."""
    import hashlib

    array = np.ascontiguousarray(network_input, dtype=np.uint8)
    return hashlib.sha256(repr(array.shape).encode() + array.tobytes()).hexdigest()[:16]
