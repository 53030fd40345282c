"""What MemTorch 1.1.6 did, step by step, for ``AnalogConfig(compat="memtorch")``.

The seed paper (Souto et al.) ran its experiments with MemTorch 1.1.6. Its numbers depend on
algorithmic choices of that code which a physical chip would not make. This module emulates
those choices one function each, citing the MemTorch file it follows (github.com/coreylammie/
MemTorch, tag v1.1.6); the analog layers call them from their own read and calibration paths
(:mod:`spicecross.nn.analog`, :mod:`spicecross.nn.calibrator`,
:mod:`spicecross.surrogate.array`), so the tiles, wires and non-ideality models are the same in
both settings and only these steps differ.

=====================  ==========================================  ====================================
step                   ``compat="physical"`` (default)            ``compat="memtorch"``
=====================  ==========================================  ====================================
input encoding         DAC: ``V_read·q(x/x_fs)``, ``x_fs`` fixed    :func:`naive_scale` at MIV, no DAC
                       from calibration images, two phases          quantization, one signed read
output scaling         known inverse of the mapping                 :func:`linear_fit` on uniform random
                                                                    inputs (``tune_()``), per layer
ADC                    fixed range per column from calibration      :func:`adc_quantize`: a power-of-two
                                                                    range chosen per input vector
programming with σ     open loop to the nominal state (every        :func:`program_clip`: each target
                       level moves)                                 clipped to its device's window
stuck-at faults        at programming, before calibration           after ``tune_()`` (tutorial order)
endurance              convergence ``(R_on + R_off)/2``             :func:`endurance_convergence_ohm`:
                                                                    550 Ω whatever the device set
retention              no recalibration (or periodic ADC-gain       ``tune_()`` re-run after drift
                       re-calibration, ``recalibrate_after_s``)
finite states          quantized (both settings)                    MemTorch's own did nothing (#140)
=====================  ==========================================  ====================================
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

#: The MemTorch release the seed paper used.
MEMTORCH_VERSION = "1.1.6"
#: VTEAM's class defaults in memtorch/bh/memristor/VTEAM.py (``r_off=1000, r_on=50``).
VTEAM_CLASS_R_ON_OHM = 50.0
VTEAM_CLASS_R_OFF_OHM = 1000.0
#: ``tune()`` input shapes: memtorch/mn/Linear.py ``tune(input_shape=4098)`` → (4098, in);
#: memtorch/mn/Conv2d.py ``tune(input_batch_size=8, input_shape=32)`` → (8, C_in, 32, 32).
TUNE_LINEAR_VECTORS = 4098
TUNE_CONV_BATCH = 8
TUNE_CONV_SIZE = 32

__all__ = ["MEMTORCH_VERSION", "TUNE_CONV_BATCH", "TUNE_CONV_SIZE", "TUNE_LINEAR_VECTORS",
           "VTEAM_CLASS_R_OFF_OHM", "VTEAM_CLASS_R_ON_OHM", "adc_quantize",
           "endurance_convergence_ohm", "linear_fit", "naive_scale", "program_clip", "tune_inputs"]


def naive_scale(x: Tensor, max_input_voltage_v: float, per_sample: bool) -> Tensor:
    """Word-line voltages MemTorch applies for layer inputs ``x``
    (memtorch/map/Input.py ``naive_scale``): when the largest |x| exceeds MIV the input is
    rescaled linearly to ±MIV, otherwise it is applied unchanged; nothing scales the output back.

    ``per_sample``: memtorch/mn/Conv2d.py calls it once per image of the batch (inside its
    ``for batch in range(input.shape[0])`` loop), memtorch/mn/Linear.py once per forward call
    on the whole batch (``per_sample=False``)."""
    dims = tuple(range(1, x.dim())) if per_sample and x.dim() > 1 else tuple(range(x.dim()))
    r = x.detach().abs().amax(dim=dims, keepdim=True)
    scale = torch.where(r > max_input_voltage_v, max_input_voltage_v / r.clamp_min(1e-30),
                        torch.ones_like(r))
    return x * scale


def adc_quantize(i: Tensor, bits: int | None, overflow_rate: float = 0.0,
                 col_axis: int = -1, tile_cols: int | None = None) -> Tensor:
    """MemTorch's linear ADC (memtorch/cpp/quantize.h ``quantize``/``det_sf``/
    ``linear_quantize``), called on every tile result (memtorch/cpp/tile_matmul.cpp: one input
    vector × one tile, i.e. the ``tile_cols`` columns of one tile for one vector):

    * the range is chosen from the values themselves: the |value| at rank
      ``round(overflow_rate·n)`` of the descending sort (the largest for rate 0), rounded up to
      a power of two: ``integral = ceil(log2(v + 1e-12))``;
    * step ``δ = 2^(1 − bits + integral)``; codes ``clamp(floor(i/δ + 0.5), −2^(bits−1),
      2^(bits−1) − 1)``; output ``code·δ``;
    * a vector whose values are all equal is returned unchanged (``unique_consecutive`` check);
      1 bit sets every value to the mean (``set_average``).

    ``i`` holds currents in MemTorch's units (A for word-line voltages equal to the scaled
    inputs); ``col_axis`` is its column axis, cut into groups of ``tile_cols`` (None: one group).
    """
    if bits is None:
        return i
    ax = col_axis % i.dim()
    C = i.shape[ax]
    g = C if tile_cols is None else int(tile_cols)
    n_groups = -(-C // g)
    # a tile's unused columns carry zero current (zero conductance) and count in the tile
    # result; with one column tile they are accounted for below instead of materialized
    pad = n_groups * g - C
    if pad and n_groups > 1:
        widths = [0, 0] * (i.dim() - 1 - ax) + [0, pad]
        i_p, n_zero = torch.nn.functional.pad(i, widths), 0
    else:
        i_p, n_zero = i, pad
    xg = i_p.unflatten(ax, (n_groups, i_p.shape[ax] // n_groups))   # one tile result: axis red
    red = ax + 1
    hi, lo = xg.amax(red, keepdim=True), xg.amin(red, keepdim=True)
    if n_zero:
        hi, lo = hi.clamp(min=0), lo.clamp(max=0)
    if overflow_rate > 0:
        k = min(int(round(overflow_rate * g)), g - 1)
        ranked = xg.abs().sort(dim=red, descending=True).values
        top = (ranked.narrow(red, k, 1) if k < ranked.shape[red]
               else torch.zeros_like(hi))
    else:
        top = torch.maximum(hi, -lo)
    if bits == 1:
        q = (xg.sum(red, keepdim=True) / g).expand_as(xg)
    else:
        delta = torch.exp2(1 - bits + torch.ceil(torch.log2(top + 1e-12)))
        bound = 2.0 ** (bits - 1)
        q = xg.div(delta).add_(0.5).floor_().clamp_(-bound, bound - 1).mul_(delta)
    constant = hi == lo
    if bool(constant.any()):
        q = torch.where(constant, xg, q)
    return q.flatten(ax, red).narrow(ax, 0, C)


def linear_fit(out: Tensor, reference: Tensor) -> tuple[float, float]:
    """``tune_()``'s output map (memtorch/map/Module.py ``naive_tune``): ordinary least squares
    with intercept (sklearn ``LinearRegression(fit_intercept=True)``) of the digital layer's
    output (``forward_legacy``, bias removed) on the crossbar output, every element of the
    flattened outputs one sample. Returns ``(coef, intercept)``; the layer then outputs
    ``coef·y + intercept`` (+ bias)."""
    o = out.detach().reshape(-1).to(torch.float64)
    r = reference.detach().reshape(-1).to(torch.float64)
    om, rm = o.mean(), r.mean()
    var = ((o - om) ** 2).sum()
    coef = float(((o - om) * (r - rm)).sum() / var) if float(var) > 0 else 0.0
    return coef, float(rm - coef * om)


def tune_inputs(kind: str, n_inputs: int, generator: torch.Generator) -> Tensor:
    """The random batch ``tune()`` feeds a layer: uniform in [−1, 1)
    (memtorch/map/Module.py: ``torch.rand(input_shape).uniform_(-1, 1)``), of the shapes of
    :data:`TUNE_LINEAR_VECTORS` (``kind="linear"``, ``n_inputs`` features) or
    :data:`TUNE_CONV_BATCH` images of ``n_inputs`` channels and 32×32 (``kind="conv2d"``)."""
    shape = ((TUNE_LINEAR_VECTORS, n_inputs) if kind == "linear"
             else (TUNE_CONV_BATCH, n_inputs, TUNE_CONV_SIZE, TUNE_CONV_SIZE))
    return torch.rand(shape, generator=generator) * 2.0 - 1.0


def program_clip(g_target_s: np.ndarray, r_on_ohm: np.ndarray, r_off_ohm: np.ndarray
                 ) -> np.ndarray:
    """Device-to-device variability as MemTorch programs it (memtorch/bh/crossbar/Crossbar.py
    ``write_conductance_matrix`` with ``transistor=True``): the targets, mapped with the nominal
    (reference) R_on/R_off, are clipped to each device's own ``[1/R_off,i, 1/R_on,i]``;
    a target inside a device's window is reached exactly."""
    g = np.asarray(g_target_s, dtype=np.float64)
    return np.clip(g, 1.0 / np.asarray(r_off_ohm), 1.0 / np.asarray(r_on_ohm))


def endurance_convergence_ohm() -> float:
    """The resistance MemTorch's endurance model splits LRS from HRS at
    (memtorch/bh/nonideality/endurance_retention_models/empirical_metal_oxide_RRAM.py:
    ``r_on_mean + r_off_mean / 2``, so R_on + R_off/2 by operator precedence). The means come
    from memtorch/bh/crossbar/Crossbar.py, whose ``hasattr(memristor_model_params, "r_off")``
    on a dict is always False, so they are VTEAM's class defaults whatever device set was
    passed: 50 + 1000/2 = 550 Ω."""
    return VTEAM_CLASS_R_ON_OHM + VTEAM_CLASS_R_OFF_OHM / 2
