"""The ``polynomial`` read mode's cell model: each 1T1R cell's own I–V as a polynomial in its
word-line voltage, on top of the exact wire network of its chord conductance.

A 1T1R cell (device in series with the level-1 selector, gate on, bit line at the sense amp's
virtual ground) conducts ``I(v) = Σ_k c_k v^k`` over the read range, fitted per cell by least
squares on ``POINTS`` voltages to the exact series solution of :mod:`.cells` (the same
equations as the ``nonlinear`` mode and the netlists). The read of a tile is then

    ``I_out = T(g_chord)·v + Σ_k P_k·v^k``,   ``P_k = c_k − g_chord·[k = 1]``  (per cell),

the exact wire network for the cells' chord conductance ``g_chord`` (one transfer matrix) plus
the cells' own nonlinearity, summed on the bit lines without its (second-order) wire
correction: ``DEGREE + 1`` matmuls per read instead of a Newton solve. The chord is the cell's
incremental conductance at ``CHORD_AT`` of the full-scale read voltage; on MNIST 1T1R 64×64
(0.1 Ω wires, 0.2 V, 64 sampled reads per layer against the exact ``nonlinear`` mode) that
choice left ≤ 0.25 ADC steps of 8 bits in every layer, against 0.47 for a least-squares secant,
0.44 for the small-signal conductance and 3.1 for the ``linear`` mode's fixed ``g_sel``
(``benchmarks/cell_poly.py`` measures the chosen one against ``linear``).

What it leaves out is second order: the wire drop δ of a cell times the change of the cell's
incremental conductance over the read range, ≈ (δ/v)·(Δg/g). On tiles whose devices span the
whole range with full-scale inputs (harsher than a network's) that reached 0.2 % of full scale
at 32×32 and 0.7 % at 64×64 with 0.1 Ω wires (against 2 % for ``linear``); without wires only
the fit remains (≈ 2e-5). The network's SPICE check measures it on every answer. For 0T1R
cells the model is exactly linear.
"""
from __future__ import annotations

import functools

import numpy as np

from ..circuit.tile import TileSpec
from .cells import cell_currents_1t1r

#: Polynomial degree of the cell I–V (degrees 2–6 gave the same errors on MNIST; 3 for margin).
DEGREE = 3
#: Voltages of the least-squares fit, evenly over the read range (0 excluded).
POINTS = 16
#: The chord: incremental conductance at this share of the full-scale read voltage.
CHORD_AT = 0.25


def fit_voltages_v(v_lo_v: float, v_hi_v: float, points: int = POINTS) -> np.ndarray:
    """Fit voltages (V): ``points`` evenly spread over [v_lo, v_hi] without 0 V."""
    if not (np.isfinite(v_lo_v) and np.isfinite(v_hi_v)) or not v_lo_v <= 0.0 < v_hi_v:
        raise ValueError(f"read range must satisfy v_lo ≤ 0 < v_hi, got [{v_lo_v!r}, {v_hi_v!r}] V")
    v = np.linspace(v_lo_v, v_hi_v, points + 1)
    v = v[np.abs(v) > 1e-12 * v_hi_v]
    return v[:points] if len(v) > points else v


#: Above this many cells the fit is made on a log-spaced grid of this many device
#: conductances and interpolated (the curve depends on the device conductance alone; the
#: interpolation adds ≤ 1e-7 of the cell current, tested).
GRID_POINTS = 4096


#: Grid fits kept (:func:`_grid_fit`): a network's layers refit after read disturb whose
#: extreme conductances did not move find theirs here.
GRID_FITS_KEPT = 16


def _grid_fit(spec: TileSpec, g_min_s: float, g_max_s: float, vq: np.ndarray, degree: int
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """The log-spaced grid of :data:`GRID_POINTS` conductances (S) from ``g_min_s`` to
    ``g_max_s`` and its :func:`_fit` at voltages ``vq`` (V), the last :data:`GRID_FITS_KEPT`
    ones remembered (a fit is a function of exactly these arguments; arrays read-only)."""
    vq = np.ascontiguousarray(vq, dtype=np.float64)
    return _grid_fit_kept(spec, g_min_s, g_max_s, vq.tobytes(), degree)


@functools.lru_cache(maxsize=GRID_FITS_KEPT)
def _grid_fit_kept(spec: TileSpec, g_min_s: float, g_max_s: float, vq_bytes: bytes, degree: int
                   ) -> tuple[np.ndarray, np.ndarray, float]:
    grid = np.geomspace(g_min_s, g_max_s, GRID_POINTS)
    coef, residual = _fit(spec, grid, np.frombuffer(vq_bytes, dtype=np.float64), degree)
    for a in (grid, coef):
        a.flags.writeable = False
    return grid, coef, residual


def _fit(spec: TileSpec, g: np.ndarray, vq: np.ndarray, degree: int
         ) -> tuple[np.ndarray, float]:
    """Least-squares coefficients (degree, cells) of I(v) = Σ_k c_k v^k for cells with device
    conductances ``g`` (cells,) in S, and the largest residual relative to the largest current."""
    _, i_bl = cell_currents_1t1r(spec, g[None], vq[:, None], 0.0)          # (Q, cells)
    powers = np.stack([vq ** k for k in range(1, degree + 1)], axis=1)        # (Q, degree)
    coef, *_ = np.linalg.lstsq(powers, i_bl, rcond=None)
    scale = max(float(np.abs(i_bl).max(initial=0.0)), 1e-300)
    return coef, float(np.abs(powers @ coef - i_bl).max(initial=0.0)) / scale


def cell_polynomials(spec: TileSpec, g_dev_s: np.ndarray, v_lo_v: float, v_hi_v: float,
                     degree: int = DEGREE, chord_at: float = CHORD_AT
                     ) -> tuple[np.ndarray, np.ndarray, float]:
    """Chord conductances (S, shape of ``g_dev_s``), remainder coefficients ``P`` (degree,
    *shape; ``P[k-1]`` in A/V^k) and the fit's largest residual relative to the largest cell
    current, for cells read between ``v_lo_v`` and ``v_hi_v`` (V) with the bit line at 0 V.

    The cell's bit-line current is ``g_chord·v + Σ_k P[k-1]·v^k`` within the fit. 0T1R cells:
    ``g_chord = g_dev``, ``P = 0``.
    """
    g = np.asarray(g_dev_s, dtype=np.float64)
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 1:
        raise ValueError(f"polynomial degree must be an integer ≥ 1, got {degree!r}")
    if spec.cell != "1t1r":
        return g.copy(), np.zeros((degree,) + g.shape), 0.0
    vq = fit_voltages_v(v_lo_v, v_hi_v, max(POINTS, 2 * degree))
    flat = g.reshape(-1)
    on = flat > 0
    if flat.size <= GRID_POINTS or not on.any():
        coef, residual = _fit(spec, flat, vq, degree)
    else:
        grid, coef_grid, residual = _grid_fit(spec, float(flat[on].min()),
                                              float(flat[on].max()), vq, degree)
        lg, lgrid = np.log(np.where(on, flat, grid[0])), np.log(grid)
        coef = np.stack([np.where(on, np.interp(lg, lgrid, c), 0.0) for c in coef_grid])
    v0 = chord_at * v_hi_v
    chord = sum((k + 1) * coef[k] * v0 ** k for k in range(degree))
    coef[0] -= chord
    return chord.reshape(g.shape), coef.reshape((degree,) + g.shape), residual


def polynomial_read(transfer_s: np.ndarray, poly: np.ndarray, v_in_v: np.ndarray) -> np.ndarray:
    """Sense currents (A), (batch, cols), of one array: transfer matrix of the chord
    conductances (cols, rows) in S, remainder coefficients (degree, rows, cols), word-line
    voltages (batch, rows) in V."""
    v = np.atleast_2d(np.asarray(v_in_v, dtype=np.float64))
    out = v @ np.asarray(transfer_s).T
    vk = v
    for k in range(poly.shape[0]):
        out = out + vk @ poly[k]
        vk = vk * v
    return out


__all__ = ["CHORD_AT", "DEGREE", "GRID_POINTS", "POINTS", "cell_polynomials", "fit_voltages_v", "polynomial_read"]
