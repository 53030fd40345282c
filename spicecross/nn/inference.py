"""Whole-network inference on crossbars: load a model and its data, patch it per an
``AnalogConfig``, calibrate the converters, and measure accuracy and time against the digital
network on the same images.

Data: with a data root (argument, else ``$SPICECROSS_DATA``) the real test split is used and the
first ``config.calibration_images`` images of the *training* split calibrate the DAC/ADC ranges
(no test image is used for calibration). Without any data root, MNIST falls back to the bundled
1000-image sample: its last ``calibration_images`` images calibrate, the images before them are
evaluated (so the sample gives at most ``1000 − calibration_images`` test images).
"""
from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from ..calibration.network_check import check_beside
from ..spice.simulators import DEFAULT_CHECK_BACKEND
from ..surrogate.config import AnalogConfig
from .analog import analog_layers, patch_model
from .datasets import DATA_ENV_VAR, default_data_root, load_dataset, load_mnist_sample
from .models import INPUT_SHAPES, MODEL_NAMES, NUM_CLASSES, build_model

__all__ = ["EvalData", "infer", "load_eval_data", "load_network", "peak_rss_mib", "run_analog",
           "synthetic_data"]


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (``getrusage``; child processes
    such as simulators are not included). Linux keeps the peak across ``exec``: a process forked
    from a large parent (a test runner) reports at least the parent's size at the fork."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10   # bytes on macOS, else KiB


@dataclass
class EvalData:
    """Test images/labels, calibration images, and where they came from."""

    test: TensorDataset
    calibration: Tensor
    source: str


def load_network(name: str, weights: str | Path | None = None) -> nn.Module:
    """The trained network ``name`` in eval mode: from ``weights`` (a checkpoint written by
    ``spicecross train``) or, for MNIST only, the shipped weights. CIFAR models without weights
    are refused (random weights would make every accuracy meaningless)."""
    from .train import load_checkpoint, load_pretrained

    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODEL_NAMES)}")
    if weights is not None:
        model, meta = load_checkpoint(weights)
        if meta.get("model") != name:
            raise ValueError(f"{weights} holds weights for {meta.get('model')!r}, not {name!r}")
        return model
    if name != "mnist":
        raise FileNotFoundError(f"no weights for {name}: train them with `spicecross train {name} "
                                f"--data DIR --out FILE` and pass --weights FILE")
    return load_pretrained("mnist")


def load_eval_data(name: str, data_root: str | Path | None, limit: int | None,
                   calibration_images: int = 256) -> EvalData:
    """Test set (first ``limit`` images) and calibration images; see module doc."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of images, got {limit!r}")
    root = Path(data_root) if data_root is not None else default_data_root()
    if root is not None:
        test = load_dataset(name, root, train=False, limit=limit)
        cal = load_dataset(name, root, train=True, limit=calibration_images).tensors[0]
        return EvalData(test, cal, f"{name} test split from {root}")
    if name != "mnist":
        raise FileNotFoundError(f"no data for {name}: pass --data DIR or set ${DATA_ENV_VAR}")
    sample = load_mnist_sample()
    x, y = sample.tensors
    n_cal = min(calibration_images, len(y) // 2)
    n_test = len(y) - n_cal
    if limit is not None:
        n_test = min(n_test, limit)
    return EvalData(TensorDataset(x[:n_test], y[:n_test]), x[len(y) - n_cal:],
                    f"bundled MNIST sample ({n_test} test images; no data root given)")


def synthetic_data(name: str, n: int, seed: int = 0, calibration_images: int = 64) -> EvalData:
    """Random normalised images of the model's input shape with random labels (for timing the
    CIFAR models where no CIFAR data exists; accuracies on it mean nothing)."""
    gen = torch.Generator().manual_seed(seed)
    shape = INPUT_SHAPES[name]
    x = torch.randn(n, *shape, generator=gen)
    y = torch.randint(0, NUM_CLASSES[name], (n,), generator=gen)
    cal = torch.randn(calibration_images, *shape, generator=gen)
    return EvalData(TensorDataset(x, y), cal, f"synthetic {name}-shaped data ({n} images)")


def _accuracy(model: nn.Module, data: TensorDataset, batch_size: int) -> tuple[float, float]:
    """Top-1 accuracy in percent and wall time (s), batch by batch without gradients."""
    x, y = data.tensors
    correct = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for lo in range(0, len(y), batch_size):
            correct += int((model(x[lo:lo + batch_size]).argmax(1) == y[lo:lo + batch_size]).sum())
    return 100.0 * correct / len(y), time.perf_counter() - t0


#: Test images whose layer inputs the SPICE check samples its reads from.
SPICE_CHECK_IMAGES = 64


def run_analog(model: nn.Module, config: AnalogConfig, data: EvalData, batch_size: int = 500,
               spice_check_reads: int = 0, spice_backend: str = DEFAULT_CHECK_BACKEND,
               n_jobs: int | None = None, programming=None,
               digital_too: bool = False) -> dict[str, Any]:
    """Patch ``model`` (a copy), calibrate on ``data.calibration``, evaluate on ``data.test``.
    ``digital_too``: also evaluate the unpatched ``model`` on the same images
    (``"digital_accuracy"``, ``"digital_seconds"``), after programming, so that a SPICE check
    solves beside the digital inference as well as the analog one.
    With ``programming`` (keyword arguments of
    :func:`~spicecross.surrogate.program_model.program_network`: ``method`` and its options)
    the arrays are programmed through the calibrated programming model before the converters
    are calibrated, and ``"programming"`` reports the conductance error it left.

    Returns accuracy (%), seconds (inference only), program_seconds (programming incl. transfer
    matrices, IR-drop compensation and calibration), ``peak_rss_mib`` (the process's peak
    resident memory so far, :func:`peak_rss_mib`), the read voltage, the compensation
    headroom/residuals and, with ``spice_check_reads`` > 0, ``"spice_check"``: that many tile
    reads per analog layer, sampled from the first test images, solved in SPICE and compared
    with the surrogate (:func:`~spicecross.calibration.network_check.spice_check`), solved
    beside the inference (:func:`~spicecross.calibration.network_check.check_beside`).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch size must be ≥ 1, got {batch_size!r}")
    if isinstance(spice_check_reads, bool) or not isinstance(spice_check_reads, int) \
            or spice_check_reads < 0:
        raise ValueError(f"SPICE check reads must be an integer ≥ 0, got {spice_check_reads!r}")
    t0 = time.perf_counter()
    programmed = None
    if programming is None:
        analog = patch_model(model, config, data.calibration)
    else:
        from ..surrogate.program_model import program_network
        from .calibrator import calibrate_model

        analog = patch_model(model, config)
        programmed = program_network(analog_layers(analog), seed=config.seed, **programming)
        calibrate_model(analog, data.calibration)
    program_s = time.perf_counter() - t0
    check = None

    def evaluate() -> tuple[float, float, tuple[float, float] | None]:
        digital = _accuracy(model, data.test, batch_size) if digital_too else None
        return (*_accuracy(analog, data.test, batch_size), digital)

    if spice_check_reads:      # SPICE solves beside the inference (network_check.check_beside)
        (acc, secs, digital), check = check_beside(
            analog, data.test.tensors[0][:SPICE_CHECK_IMAGES], evaluate, spice_check_reads,
            backend=spice_backend, n_jobs=n_jobs, seed=config.seed)
    else:
        acc, secs, digital = evaluate()
    layers = analog_layers(analog)
    return {
        "accuracy": acc,
        "seconds": secs,
        "program_seconds": program_s,
        "images": len(data.test.tensors[1]),
        "tiles": sum(2 * m.n_row_tiles * m.n_col_tiles for _, m in layers),
        "headroom": [m.array.headroom for _, m in layers],
        "compensation_residual": [m.array.compensation_residual for _, m in layers],
        "read_disturb_fraction": max(m.calibration.read_disturb_fraction for _, m in layers),
        "read_voltage_v": config.read_voltage_v,
        "read_scheme": config.read_scheme,
        "peak_rss_mib": peak_rss_mib(),
        **({"spice_check": check} if check is not None else {}),
        **({"programming": programmed} if programmed is not None else {}),
        **({"digital_accuracy": digital[0], "digital_seconds": digital[1]} if digital else {}),
    }


def infer(model_name: str, data_root: str | Path | None, config: AnalogConfig,
          limit: int | None = None, batch_size: int = 500, weights: str | Path | None = None,
          spice_check_reads: int = 0, spice_backend: str = DEFAULT_CHECK_BACKEND,
          n_jobs: int | None = None, programming=None) -> dict[str, Any]:
    """Accuracy of ``model_name`` on crossbars per ``config`` and of the digital network on the
    same images. Returns ``accuracy``, ``digital_accuracy`` (percent), ``seconds`` (analog
    inference time), ``images``, plus ``program_seconds``, ``digital_seconds``, ``data`` and,
    with ``spice_check_reads`` > 0, the ``spice_check`` report (see :func:`run_analog`). The
    digital network runs after programming, so a SPICE check also solves beside it (its
    ``digital_seconds`` then share the cores with the simulators)."""
    if not isinstance(config, AnalogConfig):
        raise ValueError("config must be an AnalogConfig")
    model = load_network(model_name, weights)
    data = load_eval_data(model_name, data_root, limit, config.calibration_images)
    res = run_analog(model, config, data, batch_size, spice_check_reads, spice_backend, n_jobs,
                     programming, digital_too=True)
    res.update(data=data.source, model=model_name, config=config.to_dict())
    return res
