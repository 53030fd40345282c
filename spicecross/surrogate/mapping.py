"""Weights → conductances: the seed paper's double-column mapping (its eq. 10–11), in one place.

A layer's weights as a crossbar matrix ``M`` (rows = layer inputs, cols = outputs) are split into
two non-negative parts, each programmed on its own physical array of a pair::

    u⁺ = max(M, 0)/w_max,   u⁻ = max(−M, 0)/w_max,   G± = g_lo + (g_hi − g_lo)·u±

with ``w_max = max |M|`` and ``[g_lo, g_hi]`` the cell conductance range (S). The sense currents
of the pair are subtracted after sensing, ``I = I⁺ − I⁻ ∝ M·v``. Every user of the mapping
(the analog layers, calibration's random tiles, the golden MNIST tile) calls these functions.

For 1T1R cells the *cell* is the device in series with the selector's conductance ``g_sel``:
:func:`cell_range_s` gives the range of that series combination and
:func:`device_conductance_for_cell` the device conductance that gives a cell target.
"""
from __future__ import annotations

import numpy as np

from ..circuit.tile import TileSpec


def series_conductance(g_a, g_b):
    """Conductance (S) of two conductances in series; 0 where either is 0 (numpy or torch)."""
    import torch

    den = g_a + g_b
    if isinstance(den, torch.Tensor):
        return torch.where(den > 0, g_a * g_b / torch.where(den > 0, den, torch.ones_like(den)),
                           torch.zeros_like(den))
    den = np.asarray(den, dtype=np.float64)
    return np.where(den > 0, g_a * g_b / np.where(den > 0, den, 1.0), 0.0)


def device_conductance_for_cell(g_cell_s: np.ndarray, g_sel_s: float) -> np.ndarray:
    """Device conductance (S) that in series with ``g_sel_s`` gives ``g_cell_s`` (needs
    g_cell < g_sel)."""
    return 1.0 / (1.0 / g_cell_s - 1.0 / g_sel_s)


def effective_cell_conductance(spec: TileSpec, g_dev_s, g_sel_s: float | None = None):
    """The cell conductance (S) of the linear modes: the device, in series with the selector's
    conductance for 1T1R (``g_sel_s``, default the level-1 on-conductance)."""
    if spec.cell == "0t1r":
        return g_dev_s
    return series_conductance(g_dev_s, spec.selector.g_on_s if g_sel_s is None else g_sel_s)


def device_range_s(r_on_ohm: float, r_off_ohm: float) -> tuple[float, float]:
    """The device's conductance range ``(1/R_off, 1/R_on)`` in S."""
    return 1.0 / r_off_ohm, 1.0 / r_on_ohm


def cell_range_s(spec: TileSpec, r_on_ohm: float, r_off_ohm: float, g_sel_s: float | None = None
                 ) -> tuple[float, float]:
    """The cell's conductance range (S): the device's, in series with ``g_sel`` for 1T1R."""
    lo, hi = device_range_s(r_on_ohm, r_off_ohm)
    return (float(effective_cell_conductance(spec, lo, g_sel_s)),
            float(effective_cell_conductance(spec, hi, g_sel_s)))


def double_column_units(m: np.ndarray, w_max: float | np.ndarray | None = None) -> np.ndarray:
    """``(u⁺, u⁻)`` stacked on a new first axis: the positive and negative parts of ``m``
    divided by ``w_max`` (default ``max |m|``; an array broadcasts, e.g. one per tile), each in
    [0, 1]. A zero ``w_max`` counts as 1."""
    m = np.asarray(m, dtype=np.float64)
    if w_max is None:
        w_max = float(np.max(np.abs(m))) if m.size else 0.0
    w = np.where(np.asarray(w_max) > 0, w_max, 1.0)
    u = m / w
    return np.stack([np.clip(u, 0, None), np.clip(-u, 0, None)])


def conductances_for_units(u: np.ndarray, g_lo_s: float, g_hi_s: float) -> np.ndarray:
    """``g_lo + (g_hi − g_lo)·u`` (S): the linear map of unit weights onto a conductance range."""
    return g_lo_s + (g_hi_s - g_lo_s) * np.asarray(u, dtype=np.float64)


def split_into_tiles(m_cross: np.ndarray, tile_rows: int, tile_cols: int) -> np.ndarray:
    """A (K, C_out) crossbar matrix zero-padded and cut into tiles: (row tiles, col tiles,
    tile_rows, tile_cols). Unused cells of the last tiles hold 0 (the baseline conductance)."""
    K, C_out = m_cross.shape
    nr, nc = -(-K // tile_rows), -(-C_out // tile_cols)
    padded = np.zeros((nr * tile_rows, nc * tile_cols))
    padded[:K, :C_out] = m_cross
    return padded.reshape(nr, tile_rows, nc, tile_cols).transpose(0, 2, 1, 3)


__all__ = ["cell_range_s", "conductances_for_units", "device_conductance_for_cell",
           "device_range_s", "double_column_units", "effective_cell_conductance",
           "series_conductance", "split_into_tiles"]
