"""Memristor voltages of 1T1R tiles for the dynamic surrogate: the exact nonlinear solve.

At every time step of :class:`~spicecross.surrogate.dynamic.DynamicTileSurrogate` on a 1T1R
tile, the voltage across each memristor is ``V(word-line node) − V(series node)`` of the
exact DC solve of the tile: every wire segment, driver and sense resistance, each memristor
at its present conductance in series with its level-1 selector (square law, bulk junctions;
:class:`~spicecross.surrogate.nonlinear.BlockSolver`, the solver checked against ngspice and
VACASK in tests/test_nonlinear*.py), the gates at the pulse train's present voltages and the
bit lines' sense ends at their drive voltages. Each solve starts Newton from the previous
one's node voltages (the steps are small, so a few iterations suffice).

``A_lin``, the solver's linear part, is the tile with each cell replaced by its memristor in
series with the selector's on-conductance at the present gate voltage, ``β·max(V_G − V_T, 0)``
(0 S for a gate at or below threshold): it only preconditions the iteration, whose fixed point
is the exact one.
"""
from __future__ import annotations

import torch

from ..circuit.tile import TileSpec
from .nonlinear import BlockSolver

__all__ = ["SelectorTileSolve"]


class SelectorTileSolve:
    """Memristor voltages and sense currents of B 1T1R tiles of one ``spec``, one input
    vector each, warm-started from the previous call (call :meth:`reset` between unrelated
    solves). ``tol_v``: the solver's node-voltage tolerance relative to the largest drive (V/V)."""

    def __init__(self, spec: TileSpec, tol_v: float = 1e-11) -> None:
        if spec.cell != "1t1r":
            raise ValueError(f"SelectorTileSolve solves 1t1r tiles, got {spec.cell!r}")
        self.spec = spec.for_solvers()
        self.tol_v = float(tol_v)
        self.iterations = 0
        self.reset()

    def reset(self) -> None:
        """Forget the warm start (the next solve starts from the linear solve)."""
        self._state = None

    def __call__(self, g_dev_s: torch.Tensor, v_in_v: torch.Tensor, v_bl_v: torch.Tensor,
                 v_gate_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Memristor voltages V(wl) − V(mid) (B, rows, cols) in V and sense currents (B, cols)
        in A (into the sense sources) of tiles with memristor conductances ``g_dev_s``
        (B, rows, cols) in S (0: an open cell, no selector either; its voltage is 0 V), inputs ``v_in_v``
        (B, rows), bit-line sense ends ``v_bl_v`` (B, cols) and gates ``v_gate_v`` (B, rows)
        in V."""
        sel = self.spec.selector
        g = g_dev_s.to(torch.float64)
        g_sel = (sel.beta_a_per_v2 * (v_gate_v.to(torch.float64) - sel.vto_v).clamp_min(0.0))
        g_sel = g_sel[:, :, None]
        g_lin = torch.where((g > 0) & (g_sel > 0), g * g_sel / (g + g_sel).clamp_min(1e-300),
                            torch.zeros_like(g))
        solver = BlockSolver(self.spec, g.numpy(), g_lin.numpy(), dtype=torch.float64,
                             tol_v=self.tol_v, linear="block")
        i_sense = solver.read(v_in_v[:, None, :], v_gate_v[:, None, :], v_bl_v[:, None, :],
                              start=self._state)
        self.iterations += solver.stats.iterations
        a, b, m = solver.last_state                      # each (B, rows, 1, cols)
        self._state = (a, b, m)
        v_mem = torch.where(g > 0, (a - m)[:, :, 0, :], torch.zeros_like(g))
        return v_mem, i_sense[:, 0]
