"""The ADC of a read in code units, fused (numba): one row tile's tile reads in ADC code units
clipped to the ADC's range, rounded to integer codes and summed into the layer's output, each
output channel's codes times its weight units per code, in one pass over the block
(:meth:`~spicecross.nn.analog_base._AnalogLayer._read_codes_into`).

The torch form it replaces made three passes (``clamp_``, ``round_``, then ``mul``/``addcmul_``)
over blocks larger than the core's L2 cache. Bitwise the same results: the same clip, rounding
half to even (``rint``), product and, for every block after the first, the product added with
one rounding (a fused multiply-add, as torch's ``addcmul_`` on this CPU:
tests/test_adc_kernel.py). Without the GIL (the layers' read workers call it in threads).
"""
from __future__ import annotations

import numba as nb
import numpy as np
import torch

from .converters import adc_codes_, adc_steps

__all__ = ["codes_into", "compile_kernel"]


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _first(y, c, steps, out):
    """``out[n, k, i] = rint(clip(y[n, k, i], ±steps))·c[k]``; y, out (N, K, L), c (K,)."""
    N, K, L = y.shape
    lo = -steps
    for n in range(N):
        for k in range(K):
            s = c[k]
            yr, o = y[n, k], out[n, k]
            for i in range(L):
                o[i] = np.rint(min(max(yr[i], lo), steps)) * s


@nb.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _add(y, c, steps, out):
    """``out[n, k, i] += rint(clip(y[n, k, i], ±steps))·c[k]`` (one fused multiply-add)."""
    N, K, L = y.shape
    lo = -steps
    for n in range(N):
        for k in range(K):
            s = c[k]
            yr, o = y[n, k], out[n, k]
            for i in range(L):
                o[i] = o[i] + np.rint(min(max(yr[i], lo), steps)) * s


def codes_into(y: torch.Tensor, per_code: torch.Tensor, bits: int, out: torch.Tensor,
               first: bool) -> None:
    """Tile reads ``y`` (N, K, …) in ADC code units to the ``bits``-bit ADC's codes
    (:func:`~spicecross.surrogate.converters.adc_codes_`) times ``per_code`` (K,) per output
    channel, written into ``out`` (N, K, …) if ``first`` else added to it. Float32 or float64,
    all of one dtype; tensors numba cannot take (non-contiguous, needing grad) take the torch
    form, which overwrites ``y`` with its codes."""
    fast = (y.dtype == out.dtype == per_code.dtype and y.dtype in (torch.float32, torch.float64)
            and y.shape == out.shape and y.dim() >= 2 and per_code.shape == (y.shape[1],)
            and y.is_contiguous() and out.is_contiguous() and per_code.is_contiguous()
            and not (y.requires_grad or out.requires_grad or per_code.requires_grad))
    if not fast:
        codes, c = adc_codes_(y, bits), per_code.view((-1,) + (1,) * (y.dim() - 2))
        if first:
            torch.mul(codes, c, out=out)
        else:
            out.addcmul_(codes, c)
        return
    shape = (y.shape[0], y.shape[1], -1)
    steps = (np.float32 if y.dtype == torch.float32 else np.float64)(adc_steps(bits))
    (_first if first else _add)(y.view(shape).numpy(), per_code.numpy(), steps,
                                out.view(shape).numpy())


def compile_kernel() -> bool:
    """Compile (or load from numba's cache beside this module) the float32 kernels on a tiny
    case checked against torch's three passes; True if bitwise equal."""
    g = torch.Generator().manual_seed(0)
    c = torch.rand(4, generator=g)
    got, want = torch.empty(3, 4, 5), torch.empty(3, 4, 5)
    for k in range(2):
        y = torch.randn((3, 4, 5), generator=g) * 9
        codes_into(y.clone(), c, 4, got, k == 0)
        q = adc_codes_(y, 4)
        if k == 0:
            torch.mul(q, c.view(-1, 1), out=want)
        else:
            want.addcmul_(q, c.view(-1, 1))
    return bool(torch.equal(got, want))
