"""unet-transfer export CKPT [OUT_DIR] [--format onnx torchscript] [--check-images DIR]

The network of a checkpoint as files that run outside this project's Python stack:
`<stem>.onnx` (ONNX, any runtime) and `<stem>.torchscript.pt` (TorchScript, C++ libtorch).
Both take `image`, float32 (N, 1, S, S): grey images in [0, 1] prepared as training prepared
them (data/contract.py; S and the rule are in the files' metadata), for any batch
size N, and return `probability` (N, 1, S, S); foreground is probability > threshold.

Each file is checked after writing against the PyTorch network, on random inputs at batch
sizes 1 and 3 and on real images (`--check-images DIR`): the largest difference is printed
and must stay within `--tolerance` (1e-4), else (also when it is NaN) the exit code is 1.
ONNX is checked with onnxruntime when it is installed (`pip install 'unet-transfer[export]'`).

Any registered network exports (the paper's U-Net, MONAI's FlexibleUNet and BasicUNet). ONNX
is written by torch.onnx's TorchScript-based exporter (`dynamo=False`, opset 17): it needs only
the `onnx` package, while the newer torch.export-based one needs `onnxscript` too. TorchScript
is made by tracing (`torch.jit.trace`), not scripting: MONAI's networks do not script (their
forward passes use Python the TorchScript compiler refuses), and a trace of these convolutional
networks is their whole computation. Both record one pass; where a network computes a shape from
the batch size in Python (MONAI's ResNet pads its shortcuts with `torch.zeros(batch, ...)`), the
trace would fix the batch size, so that step is exported as the equal zero padding `F.pad`
(`batch_free`), and the self-check at batch sizes 1 and 3 proves the files take any batch.
PyTorch has deprecated TorchScript in favour of torch.export; it is still the format libtorch
(C++) loads, hence offered here.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unet_transfer.errors import ConfigError, one_line_exit
from unet_transfer.files import atomic_path
from unet_transfer.inference.network import Network, load_network

INPUT, OUTPUT = "image", "probability"
FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4
OPSET = 17
META_FILE = "unet_transfer.json"  # the TorchScript file's extra file with the checkpoint's records


class Probabilities(nn.Module):
    """The network with its sigmoid: what a deployment wants out of it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(image))


def records(network: Network) -> dict[str, str]:
    """What a runtime needs besides the graph: model settings, input size, preprocessing, threshold."""
    size = network.image_size
    return {"unet_transfer.model": json.dumps(network.checkpoint.model, sort_keys=True),
            "unet_transfer.meta": json.dumps(network.checkpoint.meta, sort_keys=True, default=str),
            "unet_transfer.input": f"{INPUT}: float32 (N, 1, {size}, {size}), grey in [0, 1], preprocessed as the meta says",
            "unet_transfer.output": f"{OUTPUT}: float32 (N, 1, {size}, {size}); foreground where > {network.threshold:g}"}


def _padded_shortcut(x: torch.Tensor, planes: int, stride: int, spatial_dims: int = 3) -> torch.Tensor:
    """MONAI ResNet's type-A shortcut (average-pool by `stride`, zero channels up to `planes`)
    with F.pad in place of torch.zeros(batch, ...): the same numbers, no batch size in the trace."""
    out = torch.nn.functional.avg_pool2d(x, 1, stride) if spatial_dims == 2 else \
        torch.nn.functional.avg_pool3d(x, 1, stride)
    return torch.nn.functional.pad(out, (0, 0) * spatial_dims + (0, planes - out.size(1)))


@contextlib.contextmanager
def batch_free(model: nn.Module) -> Iterator[nn.Module]:
    """`model` with its batch-size-dependent Python steps replaced by traceable equals while
    exporting (see the module docstring); restored afterwards."""
    swapped = []
    for module in model.modules():
        shortcut = getattr(module, "downsample", None)
        if isinstance(shortcut, functools.partial) and getattr(shortcut.func, "__name__", "") == "_downsample_basic_block":
            swapped.append((module, shortcut))
            module.downsample = functools.partial(_padded_shortcut, **shortcut.keywords)
    try:
        yield model
    finally:
        for module, shortcut in swapped:
            module.downsample = shortcut


def wrapped(network: Network) -> tuple[Probabilities, torch.Tensor]:
    return Probabilities(network.model.cpu().eval()).eval(), torch.zeros(1, 1, network.image_size, network.image_size)


def export_onnx(network: Network, path: Path, opset: int = OPSET) -> Path:
    try:
        import onnx
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install 'unet-transfer[export]' "
                          "(onnx, and onnxruntime to check the file).") from None
    model, example = wrapped(network)
    with atomic_path(path) as tmp, warnings.catch_warnings(), batch_free(model):
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and constant-folding notes
        torch.onnx.export(model, (example,), str(tmp), input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset_version=opset, dynamo=False)
        graph = onnx.load(str(tmp))
        for key, value in records(network).items():
            graph.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp))
    return path


def export_torchscript(network: Network, path: Path) -> Path:
    model, example = wrapped(network)
    with atomic_path(path) as tmp, warnings.catch_warnings(), batch_free(model):
        warnings.simplefilter("ignore")  # DeprecationWarning, and TracerWarnings of MONAI's shape checks
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, str(tmp), _extra_files={META_FILE: json.dumps(records(network))})
    return path


def reference(network: Network, inputs: torch.Tensor) -> np.ndarray:
    model, _ = wrapped(network)
    with torch.no_grad():
        return model(inputs).numpy()


def onnx_difference(path: Path, network: Network, batches: list[torch.Tensor]) -> float | None:
    """Largest |onnxruntime - PyTorch| over the batches; None without onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return max(float(np.abs(session.run([OUTPUT], {INPUT: batch.numpy()})[0] - reference(network, batch)).max())
               for batch in batches)


def torchscript_difference(path: Path, network: Network, batches: list[torch.Tensor]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return max(float(np.abs(loaded(batch).numpy() - reference(network, batch)).max()) for batch in batches)


def check_batches(network: Network, image_dir: Path | None, seed: int = 0) -> list[torch.Tensor]:
    """Random inputs at batch sizes 1 and 3, and the images of `image_dir` prepared as training did."""
    from unet_transfer.data.contract import network_input
    from unet_transfer.data.imageio import read_grey
    from unet_transfer.inference.inputs import image_files

    size, generator = network.image_size, torch.Generator().manual_seed(seed)
    batches = [torch.rand(n, 1, size, size, generator=generator) for n in (1, 3)]
    if image_dir is not None:
        images = [network_input(read_grey(path), size) for path in image_files(image_dir)[:8]]
        batches.append(torch.from_numpy(np.stack(images))[:, None].float().div_(255.0))
    return batches


def export(checkpoint: Path, out_dir: Path, formats=FORMATS, check_images: Path | None = None
           ) -> list[tuple[Path, float | None]]:
    """Write each format and check it; returns (file, largest difference or None if unchecked)."""
    network = load_network(checkpoint, "cpu")
    batches = check_batches(network, check_images)
    results = []
    if "onnx" in formats:
        path = export_onnx(network, out_dir / f"{checkpoint.stem}.onnx")
        results.append((path, onnx_difference(path, network, batches)))
    if "torchscript" in formats:
        path = export_torchscript(network, out_dir / f"{checkpoint.stem}.torchscript.pt")
        results.append((path, torchscript_difference(path, network, batches)))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unet-transfer export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="model.pt or model.safetensors")
    parser.add_argument("out_dir", type=Path, nargs="?", help="where to write (default: beside the checkpoint)")
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS), dest="formats")
    parser.add_argument("--check-images", type=Path, metavar="DIR", help="also compare on these images (up to 8)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    args = parser.parse_args(argv)
    try:
        results = export(args.checkpoint, args.out_dir or args.checkpoint.parent, args.formats, args.check_images)
    except Exception as error:  # a UserError, also when Hydra wrapped it: one line, exit code 2
        return one_line_exit(error)
    failed = False
    for path, difference in results:
        if difference is None:
            print(f"Wrote {path} (not checked: install onnxruntime to compare it with PyTorch)")
            continue
        within = difference <= args.tolerance  # False for NaN too: a NaN output is a failed check
        failed |= not within
        verdict = "within" if within else "NOT within"
        print(f"Wrote {path}: largest difference from PyTorch {difference:.2e}, {verdict} {args.tolerance:g}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
