"""Calibrating a patched network's converters: one explicit pass that returns, per analog layer,
the DAC full scale and the fixed ADC ranges a real chip would set once from calibration data.

Layers are calibrated in order on the outputs of the already-calibrated analog layers before
them (so each layer's ranges see the errors upstream), then the arrays are aged (endurance,
retention) without recalibrating: the ADC range is fixed hardware.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn


@dataclass
class LayerCalibration:
    """One layer's converter settings: ``x_fs`` the input of full scale (layer units, read at
    the DAC's full-scale voltage), ``signed`` whether the DAC uses a signed code range,
    ``adc_range_a`` (row tiles, C_out) the ADC ranges in A (None for ideal ADCs) and
    ``read_disturb_fraction`` the share of calibration word-line reads above the device's
    switching threshold."""

    x_fs: float
    signed: bool
    adc_range_a: Tensor | None = None
    read_disturb_fraction: float = 0.0


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


def calibrate_model(model: nn.Module, images: Tensor) -> nn.Module:
    """Fix every analog layer's DAC full scale and ADC ranges from one pass over ``images``
    (:func:`fit_calibrations`), then age the arrays (endurance, retention) without
    recalibrating. Returns ``model``."""
    from .analog import analog_layers

    fitted = fit_calibrations(model, images)
    layers = analog_layers(model)
    for _, m in layers:
        m.array.age()
    share = max(c.read_disturb_fraction for c in fitted.values())
    if share > 0:
        cfg = layers[0][1].config
        warnings.warn(f"reads at up to {cfg.read_voltage_v:g} V exceed the {cfg.device_set} "
                      f"switching threshold ({cfg.switching_threshold_v:g} V): up to "
                      f"{100 * share:.3g} % of cell reads would switch devices, which the "
                      f"{cfg.mode} model keeps fixed", RuntimeWarning, stacklevel=2)
    return model


__all__ = ["LayerCalibration", "calibrate_model", "fit_calibrations", "run_with_layer_inputs"]
