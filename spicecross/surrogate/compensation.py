"""IR-drop compensation: programming each array against the known wire network so that its
transfer matrix equals the ideal one, ``T(G)ᵀ = G_target``, by the fixed-point iteration
``G ← clip(G·G_target/T(G)ᵀ)``. Nothing is fitted to data: it uses the same circuit model the
read does (wire resistance, driver/sense resistance, ``g_sel``). Targets the range cannot reach
stay clipped and are reported as the residual.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch

from ..circuit.tile import TileSpec
from .transfer import transfer_matrices
from .transfer_cache import content_key, load_arrays, store_arrays


def compensate_ir_drop(spec: TileSpec, g_target_cell: np.ndarray, g_lo: float, g_hi: float,
                       iters: int = 40, tol: float = 1e-4) -> tuple[np.ndarray, float]:
    """Cell conductances (…, rows, cols) whose transfer matrices equal the ideal ones
    ``G_targetᵀ`` as closely as the range ``[g_lo, g_hi]`` allows.

    Fixed point ``G ← clip(G·(G_target/T(G)ᵀ)^β)``: with ``β = 1`` one step is exact for a fixed
    attenuation; since raising G also raises the attenuation, the error only shrinks by a
    factor ρ per step, and ``β = 1/(1 − ρ)`` (ρ from the last two residuals, β in [1, 3])
    extrapolates that geometric tail. Stops when the max relative residual
    ``max |T(G)ᵀ − G_target|/G_target`` is ≤ ``tol`` or has not improved for 4 steps (targets
    out of reach). Arrays whose own residual is ≤ ``tol`` are no longer updated, and only arrays
    whose conductances changed are solved again (the nested-dissection factorizations depend on
    every cell of an array, so an array's T is reused whole or rebuilt whole). Returns the best
    conductances and their residual."""
    target = torch.as_tensor(g_target_cell, dtype=torch.float64)
    g = target.clone()
    best, best_g, since_best = float("inf"), g, 0
    hist: list[float] = []
    apparent, built = None, None
    for _ in range(iters):
        apparent = _apparent(spec, g, built, apparent)
        built = g
        rel = ((apparent - target) / target).abs()
        resid = float(rel.max())
        hist.append(resid)
        if resid < best:
            best, best_g, since_best = resid, g, 0
        else:
            since_best += 1
        if resid <= tol or not math.isfinite(resid) or since_best >= 4:
            break
        beta = 1.0
        if len(hist) >= 2 and hist[-1] < hist[-2]:
            beta = min(max(1.0 / (1.0 - hist[-1] / hist[-2]), 1.0), 3.0)
        step = (g * (target / apparent) ** beta).clamp(g_lo, g_hi)
        done = rel.flatten(-2).amax(-1) <= tol            # converged arrays keep their G and T
        g = torch.where(done[..., None, None], g, step)
    return best_g.numpy(), best


def _apparent(spec: TileSpec, g: torch.Tensor, built: torch.Tensor | None,
              apparent: torch.Tensor | None) -> torch.Tensor:
    """``T(G)ᵀ`` (…, rows, cols) in S, rebuilding only the arrays whose conductances differ from
    ``built`` (whose ``T(built)ᵀ`` is ``apparent``): arrays that converged or sit at the range
    limits reuse their transfer matrices. Never through the on-disk cache (intermediate G)."""
    if built is None or apparent is None:
        return transfer_matrices(spec, g, cache=False).transpose(-1, -2)
    R, C = g.shape[-2:]
    gf, out = g.reshape(-1, R, C), apparent.reshape(-1, R, C).clone()
    changed = (gf != built.reshape(-1, R, C)).flatten(1).any(1)
    if bool(changed.any()):
        out[changed] = transfer_matrices(spec, gf[changed], cache=False).transpose(-1, -2)
    return out.reshape(g.shape)


#: Results of :func:`compensated_cells`, most recent last, at most
#: :data:`COMPENSATION_CACHE_ENTRIES` (sweeps that only change converters or non-idealities
#: program the same weights again).
COMPENSATION_CACHE_ENTRIES = 16
_COMPENSATION_CACHE: OrderedDict[tuple, tuple[np.ndarray, float, float]] = OrderedDict()


def compensated_cells(spec: TileSpec, u: np.ndarray, g_lo: float, g_span: float, c_lo: float,
                       c_hi: float, iters: int) -> tuple[np.ndarray, float, float]:
    """IR-drop compensation with headroom: map ``u`` (|W|/w_max per array, in [0, 1]) onto
    ``g_lo + h·g_span`` with ``h = 2^−k`` and solve every array for an exact transfer within
    the reachable range ``[c_lo, c_hi]``. ``h`` is picked from the circuit model alone: the
    attenuation ``a = T(G)ᵀ/G`` of the uncompensated array bounds the headroom that keeps
    ``G/a ≤ c_hi`` (with 25 % margin for the fixed point's growth); if that fails, ``h`` halves
    (at most 4 tries). When no headroom can work (the baseline ``g_lo`` alone needs more than
    ``c_hi``), the array is programmed uncompensated (``h = 1``). Returns the cell
    conductances, ``h`` and the max relative residual of the transfer. Results are cached per
    (weights, tile, range), in memory (sweeps that only change converters or non-idealities
    reuse them) and on disk (:mod:`.transfer_cache`: a second run skips the compensation).
    """
    key = (hash(u.tobytes()), u.shape, spec.to_json(), g_lo, g_span, c_lo, c_hi, iters)
    if key in _COMPENSATION_CACHE:
        _COMPENSATION_CACHE.move_to_end(key)
        g, h, resid = _COMPENSATION_CACHE[key]
        return g.copy(), h, resid
    disk_key = content_key("compensated", {"spec": spec.to_json(), "g_lo": g_lo, "g_span": g_span,
                                           "c_lo": c_lo, "c_hi": c_hi, "iters": iters},
                           np.asarray(u, dtype=np.float64))
    hit = load_arrays(disk_key, {"g_cell_s": u.shape, "headroom": (), "residual": ()})
    if hit is not None:
        result = (hit["g_cell_s"], float(hit["headroom"]), float(hit["residual"]))
        _remember(key, result)
        return result[0].copy(), result[1], result[2]
    result = _compensate_with_headroom(spec, u, g_lo, g_span, c_lo, c_hi, iters)
    store_arrays(disk_key, {"g_cell_s": result[0], "headroom": np.float64(result[1]),
                            "residual": np.float64(result[2])})
    _remember(key, result)
    return result[0].copy(), result[1], result[2]


def _remember(key: tuple, result: tuple[np.ndarray, float, float]) -> None:
    _COMPENSATION_CACHE[key] = result
    while len(_COMPENSATION_CACHE) > COMPENSATION_CACHE_ENTRIES:
        _COMPENSATION_CACHE.popitem(last=False)


def _compensate_with_headroom(spec: TileSpec, u: np.ndarray, g_lo: float, g_span: float,
                              c_lo: float, c_hi: float, iters: int
                              ) -> tuple[np.ndarray, float, float]:
    """:func:`compensated_cells` without its caches."""
    h = 1.0
    result = None
    for _ in range(4):
        tgt = torch.as_tensor(g_lo + h * g_span * u, dtype=torch.float64)
        a = transfer_matrices(spec, tgt, cache=False).transpose(-1, -2) / tgt   # attenuation
        ok = (0.8 * c_hi * a - g_lo) > 0
        if not bool(ok.all()):
            break                                                     # not even the baseline fits
        used = torch.as_tensor(u) > 0
        if bool(used.any()):
            h_max = float(((0.8 * c_hi * a - g_lo) / (g_span * torch.as_tensor(u)))[used].min())
            if h_max < h:
                h = 2.0 ** -math.ceil(math.log2(1.0 / max(h_max, 1e-6)))
                if h < 2.0 ** -6:
                    break
                tgt = torch.as_tensor(g_lo + h * g_span * u, dtype=torch.float64)
        g, resid = compensate_ir_drop(spec, tgt.numpy(), c_lo, c_hi, iters)
        result = (g, h, resid)
        if resid <= 2e-4:
            break
        h *= 0.5
    if result is None or result[2] > 2e-4:
        tgt = g_lo + g_span * u
        apparent = transfer_matrices(spec, torch.as_tensor(tgt)).transpose(-1, -2).numpy()
        resid = float(np.abs((apparent - tgt) / tgt).max())
        result = (tgt, 1.0, resid)
    return result


__all__ = ["compensate_ir_drop", "compensated_cells"]
