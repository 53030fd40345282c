"""Cell I–V models of the surrogate: the memristor read as a linear conductance (VTEAM's I–V is
ohmic, I = V/R(x)), and the 1T1R selector with SPICE's level-1 NMOS equations, identical to the
``LEVEL=1`` model (gamma 0) the netlists use, so the ``nonlinear`` mode needs no fitted
parameters; the ``linear`` mode uses an effective selector conductance that calibration fits.
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


def cell_currents_1t1r(spec: TileSpec, g_dev_s: np.ndarray, v_wl: np.ndarray, v_bl: np.ndarray,
                       v_gate_v: float | None = None, iters: int = 40, tol_a: float = 1e-16
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Current (A, word line → bit line) through device G in series with the selector, and its
    derivatives with respect to v_wl and v_bl (S). Solves the series node by safeguarded Newton,
    elementwise over any broadcast shape."""
    sel = spec.selector
    vg = sel.v_gate_v if v_gate_v is None else v_gate_v
    g = np.broadcast_to(g_dev_s, np.broadcast(g_dev_s, v_wl, v_bl).shape)
    a = np.broadcast_to(v_wl, g.shape)
    b = np.broadcast_to(v_bl, g.shape)
    # series node m between device (a–m) and drain; bracket m between a and b
    lo = np.minimum(a, b)
    hi = np.maximum(a, b)
    g_sel = max(sel.g_on_s, 1e-30)
    m = (g * a + g_sel * b) / np.maximum(g + g_sel, 1e-300)
    for _ in range(iters):
        i_t, di_dm, _ = nmos_level1_id(sel, vg, m, b)
        f = g * (a - m) - i_t                 # current balance at m, decreasing in m
        df = -g - di_dm
        step = -f / np.where(df != 0, df, -1e-30)
        lo = np.where(f > 0, m, lo)
        hi = np.where(f < 0, m, hi)
        if np.max(np.abs(f)) < tol_a:
            break
        m_new = m + step
        # a step leaving the bracket falls back to bisection; a converged step (which lands on
        # the bracket end just set to m) is kept
        bad = (m_new < lo) | (m_new > hi)
        m = np.where(bad, 0.5 * (lo + hi), m_new)
    i_t, di_dm, di_db = nmos_level1_id(sel, vg, m, b)
    # implicit derivatives: g(a - m) = I(m, b)  →  dm/da = g/(g + I_m), dm/db = -I_b/(g + I_m)
    den = g + di_dm
    dm_da = g / den
    dm_db = -di_db / den
    j = g * (a - m)
    return j, g * (1 - dm_da), -g * dm_db
