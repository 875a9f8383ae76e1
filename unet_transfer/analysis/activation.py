"""Activation maximisation (the paper's Fig. 5): the input image that excites one unit most.

For each chosen unit (a channel of a convolution), gradient ascent on an input image maximises
the unit's mean pre-activation, from a fixed seed. Unregularised ascent gives high-frequency
noise; what makes the images readable (Olah et al., "Feature Visualization", Distill 2017):

- a Fourier parameterisation: the image is a spectrum whose frequencies are scaled by 1/f, so
  ascent changes coarse structure as easily as fine (`decay`), squashed to [0, 1] by a sigmoid;
- random jitter (a shift of a few pixels each step): a pattern must work wherever it lies;
- a total-variation penalty (`tv`).

Units of one layer are optimised together as one batch, each image for its own channel.

Why not a library: torch-lucent needs torchvision (no CPU build exists where this project
runs) and assumes RGB images; captum's optimisation module is not in its releases. This is
about 60 lines and tested on a planted feature detector (tests/test_analysis.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Settings:
    size: int = 64  # image side in pixels
    steps: int = 128
    lr: float = 0.005
    jitter: int = 4  # pixels
    tv: float = 0.05  # weight of the total-variation penalty
    decay: float = 1.0  # spectrum scaling 1/f**decay
    seed: int = 0


def _frequencies(size: int, decay: float) -> torch.Tensor:
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    return 1.0 / torch.clamp(torch.sqrt(fx**2 + fy**2), min=1.0 / size) ** decay


class _Captured(Exception):
    """Ends a forward pass once the layer's output is kept: later layers cannot change it."""


def _capture(into: dict):
    """A forward hook keeping the layer's output as it leaves the layer (a copy, since the
    U-Net's ReLUs work in place: the objective is the unit's pre-activation), then stopping."""
    def hook(module, inputs, output):
        into["out"] = output.clone()
        raise _Captured
    return hook


def _forward(model, x) -> None:
    try:
        model(x)
    except _Captured:
        pass


def total_variation(images: torch.Tensor) -> torch.Tensor:
    return (images[..., 1:, :] - images[..., :-1, :]).abs().mean() + (images[..., 1:] - images[..., :-1]).abs().mean()


def maximise(model: torch.nn.Module, layer: torch.nn.Module, units: list[int], settings: Settings | None = None,
             in_channels: int = 1) -> torch.Tensor:
    """(len(units), in_channels, size, size) images in [0, 1], image i maximising channel units[i]
    of `layer`'s output. The model is used as it is (eval mode, its device); nothing is trained."""
    settings = settings or Settings()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(settings.seed)
    size, n = settings.size, len(units)
    scale = _frequencies(size, settings.decay).to(device)
    spectrum_shape = (n, in_channels, size, size // 2 + 1, 2)
    spectrum = (0.01 * torch.randn(spectrum_shape, generator=generator)).to(device).requires_grad_()
    optimizer = torch.optim.Adam([spectrum], lr=settings.lr)
    captured = {}
    hook = layer.register_forward_hook(_capture(captured))
    index = torch.arange(n, device=device)
    channels = torch.as_tensor(units, device=device)

    def image() -> torch.Tensor:
        complex_spectrum = torch.view_as_complex(spectrum) * scale
        return torch.sigmoid(torch.fft.irfft2(complex_spectrum, s=(size, size), norm="ortho") * math.sqrt(size))

    was_training = model.training
    model.eval()
    try:
        for _ in range(settings.steps):
            optimizer.zero_grad(set_to_none=True)
            shift = torch.randint(-settings.jitter, settings.jitter + 1, (2,), generator=generator).tolist()
            x = torch.roll(image(), shifts=shift, dims=(2, 3))
            _forward(model, x)
            activation = captured["out"][index, channels].mean(dim=(1, 2))  # each image's own unit
            loss = -activation.sum() + settings.tv * n * total_variation(x)
            loss.backward()
            optimizer.step()
    finally:
        hook.remove()
        model.train(was_training)
    return image().detach()


def unit_activation(model: torch.nn.Module, layer: torch.nn.Module, images: torch.Tensor, units: list[int]) -> torch.Tensor:
    """Mean activation of channel units[i] for image i (or of every unit for each image, when
    `images` holds one image per unit): what `maximise` raises."""
    captured = {}
    hook = layer.register_forward_hook(_capture(captured))
    try:
        with torch.no_grad():
            _forward(model, images)
    finally:
        hook.remove()
    index = torch.arange(len(units))
    return captured["out"][index, torch.as_tensor(units)].mean(dim=(1, 2))
