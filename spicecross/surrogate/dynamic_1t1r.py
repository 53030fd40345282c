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
is the exact one. So it is factored again only when some cell's linear conductance has moved
by more than :data:`REFACTOR_REL` from the one factored (the steps move the states a little;
gate ramps move it more). Tiles of at most :data:`DENSE_LINEAR_MAX_CELLS` cells factor it as
one dense Cholesky (:class:`DenseNetwork`: one triangular solve per iteration instead of the
block solver's Python loop over the rows), larger ones by row blocks
(:func:`~spicecross.surrogate.nonlinear_block.block_network`).
"""
from __future__ import annotations

import torch

from ..circuit.tile import TileSpec
from .dynamic import dense_cholesky, nodal_blocks
from .nonlinear import BlockSolver
from .nonlinear_block import block_network

__all__ = ["SelectorTileSolve", "DenseNetwork", "REFACTOR_REL", "DENSE_LINEAR_MAX_CELLS"]

#: ``A_lin`` is factored again once a cell's linear conductance differs from the factored one
#: by more than this fraction of the larger (a stale ``A_lin`` costs iterations, not accuracy).
REFACTOR_REL = 0.1
#: Tiles of at most this many cells factor ``A_lin`` as one dense Cholesky (2·cells unknowns).
DENSE_LINEAR_MAX_CELLS = 256


class DenseNetwork:
    """``A_lin⁻¹`` of T tiles as one dense Cholesky factor of the row-ordered nodal matrix
    (:func:`~spicecross.surrogate.dynamic.nodal_blocks`, linear cell conductances ``g_lin_s``
    (T, R, C) in S); the interface of :class:`~spicecross.surrogate.nonlinear.BlockNetwork`."""

    def __init__(self, spec: TileSpec, g_lin_s: torch.Tensor) -> None:
        spec = spec.for_solvers()
        g = torch.as_tensor(g_lin_s, dtype=torch.float64)
        self.chol = dense_cholesky(nodal_blocks(spec, g), 1.0 / spec.r_wire_bl_ohm)
        self.g_lin_s = g[:, :, None, :]                  # (T, R, 1, C) in S

    def solve(self, r_wl: torch.Tensor, r_bl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Node voltages (V) ``A_lin⁻¹·r`` for currents (A) into word- and bit-line nodes, each
        (T, R, B, C)."""
        T, R, B, C = r_wl.shape
        rhs = torch.cat([r_wl, r_bl], dim=-1).transpose(2, 3).reshape(T, R * 2 * C, B)
        x = torch.cholesky_solve(rhs, self.chol).reshape(T, R, 2 * C, B).transpose(2, 3)
        return x[..., :C], x[..., C:]


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
        self.factorizations = 0
        self.reset()

    def reset(self) -> None:
        """Forget the warm start (the next solve starts from the linear solve) and ``A_lin``."""
        self._state = None
        self._net = None

    def _network(self, g_lin: torch.Tensor):
        """``A_lin⁻¹`` for linear cell conductances ``g_lin`` (B, rows, cols) in S: the one
        factored before while no cell has moved by more than :data:`REFACTOR_REL`."""
        net = self._net
        if net is not None and net.g_lin_s.shape[0] == g_lin.shape[0]:
            old = net.g_lin_s[:, :, 0, :]
            if bool(((g_lin - old).abs() <= REFACTOR_REL * torch.maximum(g_lin, old)).all()):
                return net
        self.factorizations += 1
        if self.spec.rows * self.spec.cols <= DENSE_LINEAR_MAX_CELLS:
            self._net = DenseNetwork(self.spec, g_lin)
        else:
            self._net = block_network(self.spec, g_lin, torch.float64)
        return self._net

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
        solver = BlockSolver(self.spec, g.numpy(), None, tol_v=self.tol_v,
                             net=self._network(g_lin))
        i_sense = solver.read(v_in_v[:, None, :], v_gate_v[:, None, :], v_bl_v[:, None, :],
                              start=self._state)
        self.iterations += solver.stats.iterations
        a, b, m = solver.last_state                      # each (B, rows, 1, cols)
        self._state = (a, b, m)
        v_mem = torch.where(g > 0, (a - m)[:, :, 0, :], torch.zeros_like(g))
        return v_mem, i_sense[:, 0]
