"""DAC and ADC of a tile, as in the seed paper (MemTorch's quantization of inputs and outputs),
with one difference a real circuit imposes: the ADC's range is fixed per column (set once from
calibration data), not re-chosen for every input vector.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def check_bits(bits: int | None, name: str) -> None:
    """ValueError naming ``name`` unless ``bits`` is None (ideal) or an integer in 1..32."""
    if bits is not None and (isinstance(bits, bool) or not isinstance(bits, (int, np.integer))
                             or not 1 <= bits <= 32):
        raise ValueError(f"{name} must be an integer number of bits in 1..32 (or None for ideal), got {bits!r}")


def adc_steps(bits: int) -> int:
    """Code steps on each side of zero of a symmetric ADC with ``bits`` (1 for one bit)."""
    return 2 ** (bits - 1) - 1 if bits > 1 else 1


@dataclass(frozen=True)
class DAC:
    """Input DAC: values scaled so that ``full_scale`` maps to ``max_input_voltage_v`` (V), then
    quantized to ``bits`` (None: unquantized). Signed inputs use a symmetric code range
    (±(2^(bits−1)−1) steps), unsigned ones all 2^bits−1 steps of [0, V_max]."""

    max_input_voltage_v: float = 1.0
    bits: int | None = None

    def __post_init__(self) -> None:
        if not self.max_input_voltage_v > 0:
            raise ValueError(f"max input voltage must be > 0 V, got {self.max_input_voltage_v!r}")
        check_bits(self.bits, "DAC bits")

    def __call__(self, x: torch.Tensor, full_scale: float | torch.Tensor, signed: bool) -> torch.Tensor:
        """Voltages (V) for inputs ``x`` whose magnitude bound is ``full_scale`` (clipped beyond)."""
        return self.voltages_(x / full_scale, signed)

    def voltages_(self, u: torch.Tensor, signed: bool) -> torch.Tensor:
        """In place: inputs already divided by their full scale, ``u`` (a tensor the caller
        owns), clipped, quantized and turned into voltages (V); returns ``u``. The same
        operations in the same order as :meth:`__call__`, without temporaries."""
        u = u.clamp_(-1.0, 1.0) if signed else u.clamp_(0.0, 1.0)
        if self.bits is not None:
            steps = self.steps(signed)
            u = u.mul_(steps).round_().div_(steps)
        return u.mul_(self.max_input_voltage_v)

    def steps(self, signed: bool) -> int:
        """Code steps from 0 to full scale: 2^bits − 1 unsigned, 2^(bits−1) − 1 signed (at
        least 1), 1 for an ideal DAC (whose "code" is the input over its full scale)."""
        if self.bits is None:
            return 1
        return max((2 ** (self.bits - 1) - 1) if signed else (2 ** self.bits - 1), 1)

    def volts_per_code(self, signed: bool) -> float:
        """Word-line voltage (V) of one code step (:meth:`codes`)."""
        return self.max_input_voltage_v / self.steps(signed)

    def codes(self, x: torch.Tensor, full_scale: float, signed: bool, negate: bool = False
              ) -> torch.Tensor:
        """The DAC's integer codes (a new tensor) for inputs ``x`` of magnitude bound
        ``full_scale``: ``round(clip(±x·steps/full_scale))`` on the symmetric range when
        ``signed``, else on [0, steps] (so ``negate`` gives the x⁻ phase of a two-phase read);
        the voltage is ``codes · volts_per_code`` (V). In three passes: the scaling is one
        multiplication by ``steps/full_scale`` (the value :meth:`__call__` reaches by a division
        and a multiplication, rounded once instead of twice: a code can differ where the input
        sits within a float ulp of a rounding boundary)."""
        steps = self.steps(signed)
        y = torch.mul(x, (-steps if negate else steps) / full_scale)
        y = y.clamp_(-steps if signed else 0, steps)
        return y.round_() if self.bits is not None else y


def quantize_currents_(i_a: torch.Tensor, range_a: torch.Tensor, bits: int) -> torch.Tensor:
    """In place: currents ``i_a`` (A) clipped to ±``range_a`` (A, broadcast) and rounded to the
    ``bits``-bit ADC's code steps; returns ``i_a``."""
    steps = adc_steps(bits)
    return i_a.div_(range_a).clamp_(-1.0, 1.0).mul_(steps).round_().div_(steps).mul_(range_a)


def adc_codes_(y: torch.Tensor, bits: int) -> torch.Tensor:
    """In place: ADC inputs already in code units (current × steps / range) clipped to the
    ``bits``-bit ADC's range and rounded to its integer codes; returns ``y``. The code of
    current ``i`` is ``round(clip(i·steps/range))``, the value :func:`quantize_currents_`
    reaches by a division then a multiplication."""
    steps = adc_steps(bits)
    return y.clamp_(-steps, steps).round_()


def adc_sum_(blocks, range_a: torch.Tensor | None, bits: int | None) -> torch.Tensor:
    """Row tiles' currents through their per-column ADCs, summed over the row tiles in tile
    order (the same sums whatever the batch size). ``blocks`` yields ``(first row tile, currents
    (k, N, C_out, …) in A)`` that may be overwritten: each block is converted in place
    (:func:`quantize_currents_` with the ranges ``range_a[r]`` (row tiles, C_out) in A, as
    :class:`ADC` converts) as soon as it arrives, while it is still in the cache. ``bits`` None:
    ideal ADCs (plain sums)."""
    out = None
    for r0, block in blocks:
        if bits is not None:
            shape = [block.shape[0], 1, block.shape[2]] + [1] * (block.dim() - 3)
            quantize_currents_(block, range_a[r0:r0 + block.shape[0]].to(block.dtype).view(shape),
                               bits)
        for q in block:
            out = q if out is None else out.add_(q)
    return out


@dataclass
class ADC:
    """Per-column ADC with ``bits`` (None: ideal) on a fixed symmetric range ±``range_a`` (A).

    Currents beyond the range saturate (overflow). :meth:`calibrate` sets the range from
    observed currents: the largest magnitude, or a percentile so that ``overflow_pct`` % of
    calibration samples overflow.
    """

    bits: int | None = 8
    range_a: torch.Tensor | None = None

    def __post_init__(self) -> None:
        check_bits(self.bits, "ADC bits")

    def calibrate(self, currents_a: torch.Tensor, overflow_pct: float = 0.0) -> "ADC":
        """Set the per-column range from currents (samples, cols) in A."""
        if not 0.0 <= overflow_pct < 100.0:
            raise ValueError(f"overflow percentage must be in [0, 100), got {overflow_pct!r}")
        mag = currents_a.abs().reshape(-1, currents_a.shape[-1])
        if overflow_pct == 0.0:
            r = mag.max(dim=0).values
        else:
            r = torch.quantile(mag.double(), 1.0 - overflow_pct / 100.0, dim=0).to(mag.dtype)
        # a column without current gets the smallest positive float32 (it survives a cast to
        # float32, where float64's would become 0 and a zero current 0/0)
        self.range_a = torch.where(r > 0, r, torch.full_like(r, torch.finfo(torch.float32).tiny))
        return self

    def __call__(self, i_a: torch.Tensor) -> torch.Tensor:
        if self.bits is None:
            return i_a
        if self.range_a is None:
            raise RuntimeError("ADC range not set: call calibrate() with calibration currents first")
        return quantize_currents_(i_a.clone(), self.range_a, self.bits)
