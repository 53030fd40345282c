"""Cell I–V models of the surrogate: the memristor read as a linear conductance (VTEAM's I–V is
ohmic, I = V/R(x)), and the 1T1R selector with SPICE's level-1 NMOS equations, identical to the
``LEVEL=1`` model (gamma 0) the netlists use, so the ``nonlinear`` mode needs no fitted
parameters; the ``linear`` mode uses an effective selector conductance that calibration fits.
The selector's drain–bulk and source–bulk junctions follow the same model's diode law.
"""
from __future__ import annotations

import numpy as np

from ..circuit.tile import SelectorSpec, TileSpec


def nmos_level1_id(sel: SelectorSpec, v_g: np.ndarray, v_d: np.ndarray, v_s: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drain current (A, from terminal d to s) of the level-1 NMOS and its partial derivatives
    dI/dv_d and dI/dv_s (S). Symmetric device: for v_d < v_s the terminals swap roles."""
    beta = sel.beta_a_per_v2
    lam = sel.lambda_per_v
    swap = v_d < v_s
    d = np.where(swap, v_s, v_d)
    s = np.where(swap, v_d, v_s)
    vgs = v_g - s
    vds = d - s
    vov = vgs - sel.vto_v
    on = vov > 0
    tri = on & (vds < vov)
    sat = on & ~tri
    clm = 1.0 + lam * vds
    i = np.zeros(np.broadcast(v_g, v_d, v_s).shape)
    gd = np.zeros_like(i)   # d I / d vds at fixed vgs
    gm = np.zeros_like(i)   # d I / d vgs at fixed vds
    it = beta * (vov * vds - 0.5 * vds * vds)
    i = np.where(tri, it * clm, i)
    gd = np.where(tri, beta * (vov - vds) * clm + it * lam, gd)
    gm = np.where(tri, beta * vds * clm, gm)
    isat = 0.5 * beta * vov * vov
    i = np.where(sat, isat * clm, i)
    gd = np.where(sat, isat * lam, gd)
    gm = np.where(sat, beta * vov * clm, gm)
    # dI/d(d) = gd ; dI/d(s) = -gd - gm  (for the unswapped orientation)
    di_dd = np.where(swap, -(-gd - gm), gd)      # swapped: I_ds = -I(d'=s, s'=d)
    di_ds = np.where(swap, -gd, -gd - gm)
    i = np.where(swap, -i, i)
    return i, di_dd, di_ds


#: The conductance (S) ngspice and VACASK put across every bulk junction (their default gmin).
SPICE_GMIN_S = 1e-12
#: SPICE's cap on the junction exponent (exp(709) is the largest finite double's neighbour).
_EXP_ARG_MAX = 709.0


def junction_current(sel: SelectorSpec, v_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bulk-junction current (A, from bulk into the drain or source) at bulk-to-terminal voltage
    ``v_v`` and its derivative (S): ngspice's mos1 law, which VACASK's sp_mos1 is generated from,
    ``is·(exp(v/V_T) − 1) + gmin·v`` above ``−3·V_T`` and ``gmin·v − is`` below."""
    v = np.asarray(v_v, dtype=np.float64)
    vt = sel.vt_v
    ev = np.exp(np.minimum(v / vt, _EXP_ARG_MAX))
    rev = v <= -3.0 * vt
    i = np.where(rev, SPICE_GMIN_S * v - sel.is_a, sel.is_a * (ev - 1.0) + SPICE_GMIN_S * v)
    g = np.where(rev, SPICE_GMIN_S, sel.is_a * ev / vt + SPICE_GMIN_S)
    return i, g


def series_node_1t1r(spec: TileSpec, g_dev_s: np.ndarray, v_wl: np.ndarray, v_bl: np.ndarray,
                     v_gate_v: float | None = None, iters: int = 200, tol_a: float = 1e-18,
                     m_start_v: np.ndarray | None = None) -> np.ndarray:
    """Voltage (V) of the node between device and selector of 1T1R cells at word-line and
    bit-line voltages ``v_wl``/``v_bl`` (V), elementwise over any broadcast shape: safeguarded
    Newton (bisection fallback) on the node's current balance, started from ``m_start_v`` or
    from the divider of the device and the selector's on-conductance."""
    sel = spec.selector
    vg = sel.v_gate_v if v_gate_v is None else v_gate_v
    vbk = sel.v_bulk_v
    g = np.broadcast_to(g_dev_s, np.broadcast(g_dev_s, v_wl, v_bl).shape)
    a = np.broadcast_to(v_wl, g.shape)
    b = np.broadcast_to(v_bl, g.shape)
    # current balance at the series node m, f(m) = g(a − m) + I_bd(vbk − m) − I_ch(m, b), falls
    # monotonically in m and changes sign on [min(a, b, vbk), max(a, b, vbk)]
    lo = np.minimum(np.minimum(a, b), vbk)
    hi = np.maximum(np.maximum(a, b), vbk)
    g_sel = max(sel.g_on_s, 1e-30)
    if m_start_v is None:
        m = (g * a + g_sel * b) / np.maximum(g + g_sel, 1e-300)
    else:
        m = np.clip(np.broadcast_to(m_start_v, g.shape), lo, hi)
    width = np.maximum(hi - lo, 1e-300)
    for _ in range(iters):
        i_t, di_dm, _ = nmos_level1_id(sel, vg, m, b)
        i_j, g_j = junction_current(sel, vbk - m)
        f = g * (a - m) + i_j - i_t
        df = -g - g_j - di_dm
        lo = np.where(f > 0, m, lo)
        hi = np.where(f < 0, m, hi)
        if np.max(np.abs(f), initial=0.0) < tol_a or np.max((hi - lo) / width, initial=0.0) < 1e-15:
            break
        m_new = m - f / np.where(df != 0, df, -1e-30)
        # a step leaving the bracket falls back to bisection; a converged step (which lands on
        # the bracket end just set to m) is kept
        bad = (m_new < lo) | (m_new > hi) | ~np.isfinite(m_new)
        m = np.where(bad, 0.5 * (lo + hi), m_new)
    return m


def cell_currents_1t1r(spec: TileSpec, g_dev_s: np.ndarray, v_wl: np.ndarray, v_bl: np.ndarray,
                       v_gate_v: float | None = None, iters: int = 200, tol_a: float = 1e-18
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Currents of 1T1R cells: ``(j_wl, j_bl)`` in A, the current leaving the word-line node
    into the device and the current entering the bit-line node (channel plus source–bulk
    junction). They differ by the junction currents to the bulk: the drain–bulk junction at the
    series node and the source–bulk junction at the bit-line node. Cells with G = 0 are not in
    the netlist (no selector either) and carry nothing. The series node is solved by
    :func:`series_node_1t1r`, elementwise over any broadcast shape."""
    sel = spec.selector
    vg = sel.v_gate_v if v_gate_v is None else v_gate_v
    g = np.broadcast_to(g_dev_s, np.broadcast(g_dev_s, v_wl, v_bl).shape)
    a = np.broadcast_to(v_wl, g.shape)
    b = np.broadcast_to(v_bl, g.shape)
    m = series_node_1t1r(spec, g, a, b, vg, iters, tol_a)
    i_t, _, _ = nmos_level1_id(sel, vg, m, b)
    i_s, _ = junction_current(sel, sel.v_bulk_v - b)
    on = g > 0
    return np.where(on, g * (a - m), 0.0), np.where(on, i_t + i_s, 0.0)
