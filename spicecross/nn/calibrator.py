"""Calibrating a patched network's converters: one explicit pass that returns, per analog layer,
the DAC full scale and the fixed ADC ranges a real chip would set once from calibration data.

Layers are calibrated in order on the outputs of the already-calibrated analog layers before
them (so each layer's ranges see the errors upstream), then the arrays are aged (endurance,
retention) without recalibrating: the ADC range is fixed hardware — unless
``AnalogConfig.recalibrate_after_s`` = S asks for the drift compensation a chip performs: every
S seconds each layer's ADC ranges and digital gain are re-fitted on the stored calibration
images (:meth:`~spicecross.nn.analog_base._AnalogLayer.recalibrate`); at time t the last such
re-calibration happened at ``floor(t/S)·S`` and the drift since then stays uncorrected.

``compat="memtorch"`` follows MemTorch 1.1.6 instead: every layer is tuned (``tune_()``, a
linear fit on uniform random inputs, memtorch/mn/Module.py), stuck-at faults, endurance and
retention are applied after it (the order of memtorch/examples/Tutorial.ipynb), and ``tune_()``
is run again after drift (memtorch/bh/nonideality/Retention.py's example).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..surrogate.converters import ADC, adc_steps


@dataclass
class LayerCalibration:
    """One layer's converter settings: ``x_fs`` the input of full scale (layer units, read at
    the DAC's full-scale voltage), ``signed`` whether the DAC uses a signed code range,
    ``adc_range_a`` (row tiles, C_out) the ADC ranges in A (None for ideal ADCs),
    ``read_disturb_fraction`` the share of calibration word-line reads above the device's
    switching threshold, ``gain`` the digital post-scale set by drift re-calibration (1 until
    then), ``output_map`` the ``(coef, intercept)`` of MemTorch's ``tune_()`` (compat only)."""

    x_fs: float
    signed: bool
    adc_range_a: Tensor | None = None
    read_disturb_fraction: float = 0.0
    gain: float = 1.0
    output_map: tuple[float, float] | None = None


def adc_max_ranges(phase_blocks, n_row_tiles: int, bits: int) -> Tensor:
    """Per (row tile, column) ADC ranges (A), float32, as the largest |differential current| of
    all read phases: ``phase_blocks`` holds per phase the blocks ``(first row tile, currents
    (k, N, C_out, …) in A)`` of a layer's read, reduced block by block without copying them
    (the ranges :meth:`ADC.calibrate` sets from the whole list of currents)."""
    peak: list = [None] * n_row_tiles
    for blocks in phase_blocks:
        for r0, block in blocks:
            dims = [1] + list(range(3, block.dim()))
            m = torch.maximum(block.amax(dims), block.amin(dims).neg_())      # (k, C_out)
            for k in range(m.shape[0]):
                old = peak[r0 + k]
                peak[r0 + k] = m[k] if old is None else torch.maximum(old, m[k])
    ranges = [ADC(bits).calibrate(p.unsqueeze(0).to(torch.float64)).range_a.to(p.dtype)
              for p in peak]
    return torch.stack(ranges).to(torch.float32)


def adc_percentile_ranges(per_phase: list[list[Tensor]], bits: int, overflow_pct: float
                          ) -> Tensor:
    """Per (row tile, column) ADC ranges (A), float32, from every read phase's currents per row
    tile (column axis 1): the ``overflow_pct`` percentile of |current| (:meth:`ADC.calibrate`,
    on at most 2^23 samples per row tile)."""
    ranges = []
    for r in range(len(per_phase[0])):
        cols = torch.cat([cur[r].detach().movedim(1, -1).reshape(-1, cur[r].shape[1])
                          for cur in per_phase]).to(torch.float64)
        if overflow_pct > 0 and cols.numel() > (1 << 23):
            cols = cols[::-(-cols.numel() // (1 << 23))]          # quantile size limit
        ranges.append(ADC(bits).calibrate(cols, overflow_pct).range_a.to(per_phase[0][r].dtype))
    return torch.stack(ranges).to(torch.float32)


#: ADC resolution used as the yardstick of current errors when the network's ADC is ideal.
YARDSTICK_BITS = 8


def adc_yardstick(cal: LayerCalibration | None, adc_bits: int | None, r: int, cols: slice,
                  reference_a: np.ndarray) -> tuple[np.ndarray, int]:
    """Per-column ADC full scale (A) of row tile ``r``, columns ``cols``, and its code steps,
    against which differential-current errors are measured: the layer's calibrated ADC ranges,
    or (no calibrated ADC) the largest magnitude of the reference currents ``reference_a``
    (reads, columns) with :data:`YARDSTICK_BITS`-bit steps. One ADC step is ``full scale /
    steps``."""
    steps = adc_steps(adc_bits or YARDSTICK_BITS)
    if cal is not None and cal.adc_range_a is not None:
        return cal.adc_range_a[r, cols].double().numpy(), steps
    return np.abs(reference_a).max(axis=0) + 1e-300, steps


def adc_codes(i_a: np.ndarray, full_scale_a: np.ndarray, steps: int) -> np.ndarray:
    """The codes (integers, as floats) the symmetric ADC gives currents ``i_a`` (A)."""
    return np.round(np.clip(i_a / full_scale_a, -1, 1) * steps)


def run_with_layer_inputs(model: nn.Module, images: Tensor,
                          on_input: Callable[[str, nn.Module, Tensor], None]) -> list[str]:
    """Run ``images`` through ``model`` once (no gradients), calling ``on_input(name, layer,
    x)`` with every analog layer's input just before the layer runs; returns the analog layer
    names in module order."""
    from .analog import analog_layers

    layers = analog_layers(model)
    if not layers:
        raise ValueError("model has no analog layers: patch it with patch_model first")
    model.eval()
    hooks = [m.register_forward_pre_hook(lambda mod, inp, name=n: on_input(name, mod, inp[0]))
             for n, m in layers]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for h in hooks:
            h.remove()
    return [n for n, _ in layers]


def fit_calibrations(model: nn.Module, images: Tensor) -> dict[str, LayerCalibration]:
    """Run ``images`` through ``model`` once, fitting every analog layer's
    :class:`LayerCalibration` on the inputs it receives and installing it before the layer
    runs; returns them by module name."""
    from .analog import analog_layers

    fitted: dict[str, LayerCalibration] = {}

    def fit(name: str, layer: nn.Module, x: Tensor) -> None:
        layer.calibration = layer.fit_calibration(x)
        fitted[name] = layer.calibration

    for _, m in analog_layers(model):
        m.calibration = None
    names = run_with_layer_inputs(model, images, fit)
    missing = [n for n in names if n not in fitted]
    if missing:
        raise RuntimeError(f"calibration pass did not reach layer(s) {', '.join(missing)}")
    return fitted


def recalibrate_gains(model: nn.Module, images: Tensor) -> dict[str, float]:
    """Re-fit every analog layer's ADC ranges and digital gain on ``images`` in one pass, each
    layer on the outputs of the already re-calibrated layers before it; returns the gains by
    module name."""
    gains: dict[str, float] = {}

    def refit(name: str, layer: nn.Module, x: Tensor) -> None:
        gains[name] = layer.recalibrate(x)

    run_with_layer_inputs(model, images, refit)
    return gains


def tune_model(model: nn.Module, seed: int = 0) -> dict[str, tuple[float, float]]:
    """MemTorch's ``tune_()`` (memtorch/mn/Module.py): every analog layer's output map fitted
    on its own uniform random batch (:meth:`~spicecross.nn.analog_base._AnalogLayer.tune_memtorch`;
    MemTorch draws unseeded, here the generator is seeded from ``seed`` and the layer index)."""
    from .analog import analog_layers

    return {name: m.tune_memtorch(torch.Generator().manual_seed(seed * 1000 + m.layer_index))
            for name, m in analog_layers(model)}


def last_recalibration_s(config) -> float | None:
    """When the last drift re-calibration happened before ``config``'s retention time:
    ``floor(t/S)·S`` for ``recalibrate_after_s`` = S, or None (no re-calibration yet)."""
    period, t_s = config.recalibrate_after_s, config.nonideal.retention_s
    if period is None or t_s < period or t_s <= config.nonideal.retention_t0_s:
        return None
    return float(math.floor(t_s / period) * period)


def calibrate_model(model: nn.Module, images: Tensor) -> nn.Module:
    """Fix every analog layer's DAC full scale and ADC ranges from one pass over ``images``
    (:func:`fit_calibrations`), then age the arrays (endurance, retention) without
    recalibrating, or with the periodic drift re-calibration of ``recalibrate_after_s``; with
    ``compat="memtorch"`` MemTorch's order instead (module doc). Returns ``model``."""
    from .analog import analog_layers

    fitted = fit_calibrations(model, images)
    layers = analog_layers(model)
    cfg = layers[0][1].config
    if cfg.compat == "memtorch":
        tune_model(model, cfg.seed)
        for _, m in layers:
            m.array.age()
        if cfg.nonideal.retention_s > cfg.nonideal.retention_t0_s:
            tune_model(model, cfg.seed + 1)
    else:
        t_last = last_recalibration_s(cfg)
        if t_last is not None:
            for _, m in layers:
                m.array.age(retention_s=t_last)
            recalibrate_gains(model, images)
        for _, m in layers:
            m.array.age()
    share = max(c.read_disturb_fraction for c in fitted.values())
    if share > 0 and cfg.compat == "memtorch":
        warnings.warn(f"MemTorch's word-line voltages (inputs naive-scaled to at most "
                      f"{cfg.max_input_voltage_v:g} V) exceed the {cfg.device_set} switching "
                      f"threshold ({cfg.switching_threshold_v:g} V) in up to {100 * share:.3g} % "
                      f"of cell reads; the emulation reads the tiles at "
                      f"{cfg.read_voltage_v:g} V", RuntimeWarning, stacklevel=2)
    elif share > 0:
        warnings.warn(f"reads at up to {cfg.read_voltage_v:g} V exceed the {cfg.device_set} "
                      f"switching threshold ({cfg.switching_threshold_v:g} V): up to "
                      f"{100 * share:.3g} % of cell reads would switch devices, which the "
                      f"{cfg.mode} model keeps fixed", RuntimeWarning, stacklevel=2)
    return model


__all__ = ["LayerCalibration", "calibrate_model", "fit_calibrations", "last_recalibration_s",
           "recalibrate_gains", "run_with_layer_inputs", "tune_model"]
