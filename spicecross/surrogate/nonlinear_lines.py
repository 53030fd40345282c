"""Fast exact nonlinear reads of 1T1R tiles: block Gauss–Seidel over the word and bit lines with
a small coarse correction, compiled (:mod:`~spicecross.surrogate.nonlinear_kernel`), as the
linear part of the same modified Newton iteration as the torch block solver
(:mod:`~spicecross.surrogate.nonlinear`).

The iteration is ``x ← x + B·r(x)``: ``r`` the exact KCL residual (A) of the word- and
bit-line nodes with the level-1 cells (closed form, selector in triode, lambda 0, the junction
currents lagged one iteration and frozen as in the block solver), ``B`` a fixed approximation
of ``A_lin⁻¹`` (``A_lin`` the nodal matrix with the ``linear`` mode's cells): one block
Gauss–Seidel sweep (each word line, then each bit line, a tridiagonal solve with its cells'
linear conductances) followed by a Galerkin correction on a coarse space of 2·9 smooth
vectors (products of Legendre polynomials of degree ≤ 2 in row and column position, on the
word-line and on the bit-line nodes). The sweep alone leaves one slow error mode on a 64×64
tile with 0.1 Ω wires (contraction 0.08: every line's lowest mode together); the coarse step
takes it out (0.007). Once per vector the line solves switch to the cells' Jacobian where the
vector's second iteration starts (the kernel's docstring), so ``B`` changes once; it never
enters the residual, so the fixed point is the exact one, as in the block solver.

:class:`LineSystem` holds what is factored once per tile (the tridiagonal pivots, the coarse
operator ``(Zᵀ·A_lin·Z)⁻¹``; 10–20 ms for a 64×64 tile here) and reads vectors
(:meth:`LineSystem.read`); each vector reports whether the closed form held at its solution,
and :class:`~spicecross.surrogate.nonlinear.BlockSolver` re-solves those that do not
(saturation, forward-biased junctions) with its general iteration. Tiles whose selectors have
lambda ≠ 0 never come here (:func:`lines_supported`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..circuit.tile import TileSpec
from .nonlinear_chains import wire_conductances

__all__ = ["LineSystem", "LineReads", "lines_supported", "nodal_apply", "legendre_basis",
           "tridiagonal_pivots"]

#: Highest Legendre degree of the coarse space in each direction.
COARSE_DEGREE = 2


def nodal_apply(spec: TileSpec, g_lin_s: np.ndarray, x_a: np.ndarray, x_b: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """``A_lin·x`` (A) for node voltages ``x_a``, ``x_b`` (..., R, C) in V of word- and bit-line
    nodes, cell conductances ``g_lin_s`` broadcasting to them (S), sources at 0 V."""
    g_in, g_w, g_b, g_out = wire_conductances(spec)
    out_a = np.zeros(np.broadcast_shapes(x_a.shape, np.shape(g_lin_s)))
    out_b = np.zeros_like(out_a)
    out_a[..., 0] += g_in * x_a[..., 0]
    seg = g_w * (x_a[..., :-1] - x_a[..., 1:])
    out_a[..., :-1] += seg
    out_a[..., 1:] -= seg
    out_b[..., -1, :] += g_out * x_b[..., -1, :]
    seg = g_b * (x_b[..., :-1, :] - x_b[..., 1:, :])
    out_b[..., :-1, :] += seg
    out_b[..., 1:, :] -= seg
    cell = g_lin_s * (x_a - x_b)
    return out_a + cell, out_b - cell


def legendre_basis(n: int, degree: int = COARSE_DEGREE) -> np.ndarray:
    """(n, k) Legendre polynomials of degree < k = min(degree + 1, n) at n equispaced points."""
    x = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
    cols = [np.ones(n), x, 1.5 * x * x - 0.5][:min(degree + 1, n)]
    return np.ascontiguousarray(np.stack(cols, axis=1))


def tridiagonal_pivots(diag: np.ndarray, off: float) -> np.ndarray:
    """Reciprocal pivots (Ω) of the symmetric tridiagonal matrices with diagonals ``diag``
    (..., n) in S and off-diagonal ``−off`` (S), eliminated from index 0 upward."""
    inv = np.empty_like(diag)
    d = diag[..., 0]
    inv[..., 0] = 1.0 / d
    for k in range(1, diag.shape[-1]):
        d = diag[..., k] - off * off * inv[..., k - 1]
        inv[..., k] = 1.0 / d
    return inv


def lines_supported(spec: TileSpec) -> bool:
    """Whether the line solver's closed form can hold for ``spec``'s cells: 1T1R, lambda 0."""
    return spec.cell == "1t1r" and spec.selector.lambda_per_v == 0.0


@dataclass
class LineReads:
    """What :meth:`LineSystem.read` returns for n = T·B vectors (tile-major): sense currents
    (T, B, C) in A, per vector the kernel's status (0 solved, 1 outside the closed form's
    regime, 2 not converged), iterations and last node movement (V), and the node voltages
    ``(a, b, m)`` (n_kept, R, C) in V of the vectors kept (``slot`` ≥ 0), or None."""

    currents_a: np.ndarray
    status: np.ndarray
    iterations: np.ndarray
    moves_v: np.ndarray
    state: tuple[np.ndarray, np.ndarray, np.ndarray] | None


@dataclass
class LineSystem:
    """What the line solver factors once for T tiles of one ``spec``: device and ``A_lin``
    cell conductances (T, R, C) in S, the word lines' and bit lines' reciprocal pivots
    (T, R, C) in Ω, the coarse bases and the coarse inverse's first K columns (T, 2K, K) in Ω,
    the wires' degrees (S) of the word-line (C,) and bit-line (R,) nodes."""

    spec: TileSpec
    g_dev_s: np.ndarray
    g_lin_s: np.ndarray
    inv_dw: np.ndarray
    inv_db: np.ndarray
    basis_rows: np.ndarray
    basis_cols_t: np.ndarray
    coarse_inv: np.ndarray
    degrees_w: np.ndarray
    degrees_b: np.ndarray

    @classmethod
    def build(cls, spec: TileSpec, g_dev_s: np.ndarray, g_lin_s: np.ndarray) -> "LineSystem":
        """Factor for device conductances ``g_dev_s`` and ``A_lin``'s cell conductances
        ``g_lin_s``, (T, R, C) each in S."""
        spec = spec.for_solvers()
        g_in, g_w, g_b, g_out = wire_conductances(spec)
        g_dev = np.ascontiguousarray(g_dev_s, dtype=np.float64)
        g = np.ascontiguousarray(g_lin_s, dtype=np.float64)
        if g.ndim != 3 or g_dev.shape != g.shape:
            raise ValueError(f"conductances must be (tiles, rows, cols) alike, got {g_dev.shape} "
                             f"and {g.shape}")
        T, R, C = g.shape
        deg_w = np.full(C, 2.0 * g_w)
        deg_w[-1] = g_w
        deg_w[0] = g_in + (g_w if C > 1 else 0.0)
        deg_b = np.full(R, 2.0 * g_b)
        deg_b[0] = g_b
        deg_b[-1] = (g_b if R > 1 else 0.0) + g_out
        inv_dw = tridiagonal_pivots(g + deg_w, g_w)
        inv_db = np.ascontiguousarray(
            tridiagonal_pivots((g + deg_b[:, None]).swapaxes(1, 2), g_b).swapaxes(1, 2))
        pr, pc = legendre_basis(R), legendre_basis(C)
        phi = np.einsum("ip,jq->pqij", pr, pc).reshape(-1, R, C)        # (K, R, C)
        K = phi.shape[0]
        zero = np.zeros_like(phi)
        za, zb = np.concatenate([phi, zero]), np.concatenate([zero, phi])      # (2K, R, C)
        aza, azb = nodal_apply(spec, g[:, None], za[None], zb[None])    # (T, 2K, R, C)
        ac = np.einsum("kij,tlij->tkl", za, aza) + np.einsum("kij,tlij->tkl", zb, azb)
        ac_inv = np.linalg.inv(0.5 * (ac + ac.swapaxes(1, 2)))
        return cls(spec, g_dev, g, inv_dw, inv_db, pr, np.ascontiguousarray(pc.T),
                   np.ascontiguousarray(ac_inv[:, :, :K]), deg_w, deg_b)

    def read(self, v_in_v: np.ndarray, v_gate_v: np.ndarray, v_bl_v: np.ndarray,
             start: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
             slot: np.ndarray | None = None, tol_v: float = 1e-10, max_iter: int = 200,
             threads: int | None = None) -> LineReads:
        """Read n = T·B vectors: inputs ``v_in_v`` and gates ``v_gate_v`` (T, B, R), bit-line
        sense ends ``v_bl_v`` (T, B, C), all V; optionally a ``start`` (a, b, m), each
        (T, B, R, C) in V, and ``slot`` (n,) the index under which a vector's node voltages
        are kept (−1: not kept). ``tol_v``: node movement that ends the iteration, relative to
        the largest drive (V/V), with the block solver's rate estimate; ``threads``: how many
        threads solve disjoint ranges of vectors (default torch's thread count)."""
        import torch

        from ..threads import fork_join
        from . import nonlinear_kernel as kern
        from .nonlinear import JUNCTION_FREEZE, LAG_JUNCTION_MAX_V

        T, B, R = np.shape(v_in_v)
        C = self.g_dev_s.shape[2]
        n = T * B
        flat = lambda x, k: np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(n, k))
        v, vg, vbl = flat(v_in_v, R), flat(v_gate_v, R), flat(v_bl_v, C)
        tile = np.repeat(np.arange(T, dtype=np.int64), B)
        if start is not None:
            sa, sb, sm = (np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(n, R, C))
                          for x in start)
        else:
            sa = sb = sm = np.zeros((1, R, C))
        slot = np.full(n, -1, dtype=np.int64) if slot is None else np.asarray(slot, np.int64)
        kept = int((slot >= 0).sum())
        out = tuple(np.empty((max(kept, 1), R, C)) for _ in range(3))
        i_out = np.empty((n, C))
        status, iters, moves = np.empty(n, np.int8), np.empty(n, np.int64), np.empty(n)
        on = self.g_lin_s > 0
        g_min = np.array([x[m].min() if m.any() else 0.0 for x, m in zip(self.g_lin_s, on)])
        sel = self.spec.selector
        cell = np.array([sel.beta_a_per_v2, sel.vto_v, sel.v_bulk_v, sel.is_a, sel.vt_v])
        ctrl = np.array([tol_v, max_iter, JUNCTION_FREEZE, LAG_JUNCTION_MAX_V])
        args = (tile, start is not None, slot, v, vg, vbl, sa, sb, sm, *out, i_out,
                self.g_dev_s, self.g_lin_s, g_min, self.inv_dw, self.inv_db, self.coarse_inv,
                self.basis_rows, self.basis_cols_t, self.degrees_w, self.degrees_b,
                np.array(wire_conductances(self.spec)), cell, ctrl, status, iters, moves)
        nt = max(1, min(n, torch.get_num_threads() if threads is None else int(threads)))
        cuts = [n * k // nt for k in range(nt + 1)]
        # range 0 on this thread, the others on the kept worker threads
        fork_join(*(functools.partial(kern.solve_items, cuts[k], cuts[k + 1], *args)
                    for k in range(nt)), workers=nt)
        return LineReads(i_out.reshape(T, B, C), status, iters, moves, out if kept else None)


def compile_kernel() -> bool:
    """Compile the line solver's kernel (or load it from numba's cache beside the module) by
    one small 1T1R read; True if the line solver answered. ``make setup`` runs it, so the first
    nonlinear read of a new checkout does not pay the compilation (≈ 30 s here, cold)."""
    import torch

    from .config import AnalogConfig
    from .mapping import effective_cell_conductance
    from .nonlinear import BlockSolver

    spec = AnalogConfig.build(tile_rows=4, tile_cols=4, cell="1t1r").tile_spec()
    g = np.full((1, 4, 4), 1e-4)
    solver = BlockSolver(spec, g, effective_cell_conductance(spec, g), dtype=torch.float64)
    solver.read(torch.full((1, 2, 4), 0.2, dtype=torch.float64))
    return solver.lines is not None
