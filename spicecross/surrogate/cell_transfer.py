"""The cell-voltage transfer matrices of read tiles by block elimination (the read-disturb
update's ``T``, :func:`~spicecross.surrogate.dynamic.cell_voltage_transfer`), and the wire,
driver and sense terms of the nodal matrix's diagonal that every solver of the tile network
shares.

Nodes row by row: word line ``i`` is a chain (−g_w between neighbours, the driver at column 0)
whose nodes meet the bit-line nodes of row ``i`` through the cells; bit line ``j`` is a chain
down the rows (−g_b) to the sense end. Per tile:

1. every word line's chain matrix ``M_i`` (tridiagonal) is inverted in closed form in
   O(cols²) (:func:`_tridiagonal_inverses`: the diagonal from both pivot sweeps, the rest
   from the running products of ``g_w/p_j``), instead of a Cholesky inverse (O(cols³) per
   row);
2. eliminating the word lines leaves the bit lines' block-tridiagonal system with the dense
   Schur blocks ``S_i = D_i − G_i·M_i⁻¹·G_i`` (``G_i`` the row's cell conductances);
3. one block sweep up the rows, from the sense end (``U_i = S_i − g_b²·U_{i+1}⁻¹``, Cholesky,
   its inverse), the right-hand sides carried up only from the row each input drives (input
   ``k`` enters row ``k``: below the driven rows they are 0), then the back substitution down
   the rows for every input. Row ``i``'s ``U_i`` depends on rows ``i`` … ``rows − 1`` alone,
   so a rebuild after the conductances of the top rows moved (the first MNIST convolution
   drives 9 of 64 word lines; only their cells ever reach a threshold) keeps the rows below
   from its last build (:class:`SweepState`): bitwise a build from scratch;
4. the word-line voltages from the bit lines' (``M_i⁻¹·G_i·v_bl`` plus the drive).

Exact (Cholesky and products only: no LU, which torch 2.13's MKL breaks after
``set_num_threads(n ≥ 2)``, :mod:`spicecross.threads`); float64 in, float64 out.
"""
from __future__ import annotations

import numpy as np
import torch

from ..circuit.tile import TileSpec

__all__ = ["line_diagonals", "block_cell_voltage_transfer"]


def line_diagonals(spec: TileSpec, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Wire, driver and sense terms (S) on the nodal matrix's diagonal: per word-line node
    (cols,) and per bit-line node's row (rows,); neighbours couple by −1/r_wire."""
    R, C = spec.rows, spec.cols
    g_w, g_b = 1.0 / spec.r_wire_wl_ohm, 1.0 / spec.r_wire_bl_ohm
    wl_diag = torch.full((C,), 2 * g_w, dtype=dtype)
    wl_diag[0] = 1.0 / (spec.r_driver_ohm + spec.r_wire_wl_ohm) + (g_w if C > 1 else 0.0)
    if C > 1:
        wl_diag[-1] = g_w
    bl_diag = torch.full((R,), 2 * g_b, dtype=dtype)
    bl_diag[0] = g_b if R > 1 else 0.0
    bl_diag[-1] = (g_b if R > 1 else 0.0) + 1.0 / (spec.r_wire_bl_ohm + spec.r_sense_ohm)
    return wl_diag, bl_diag


def _tridiagonal_inverses(d: torch.Tensor, c: float) -> torch.Tensor:
    """Inverses (..., n, n) of the symmetric tridiagonal matrices with diagonals ``d`` (..., n)
    and every off-diagonal entry ``−c`` (c > 0; diagonally dominant, so every pivot is > c).

    Forward pivots ``p`` and backward pivots ``q`` of the two eliminations give the diagonal
    ``δ_j = 1/(p_j + q_j − d_j)``; above it, in column ``k`` the rows ``j < k`` hold
    homogeneous equations, whose forward elimination leaves ``p_j·x_j = c·x_{j+1}``, so
    ``(M⁻¹)_{jk} = δ_k·Π_{l=j}^{k−1} c/p_l`` = ``δ_max(j,k)·exp(−|L_j − L_k|)`` with ``L`` the
    running sum of ``log(c/p)`` before each node (decreasing; relative error ≈
    |L_j − L_k|·eps, and entries below the float range become 0). The pivots' recurrences run
    in numpy (small steps)."""
    n = d.shape[-1]
    dn = d.numpy()
    p, q = dn.copy(), dn.copy()
    for j in range(1, n):
        p[..., j] -= c * c / p[..., j - 1]
        q[..., n - 1 - j] -= c * c / q[..., n - j]
    delta = torch.from_numpy(1.0 / (p + q - dn))
    run = torch.from_numpy(np.cumsum(np.log(c / p[..., :-1]), axis=-1))
    run = torch.nn.functional.pad(run, (1, 0))                       # L_0 = 0
    decay = (run[..., :, None] - run[..., None, :]).abs_().neg_().exp_()
    k = torch.arange(n)
    return decay.mul_(delta[..., torch.maximum(k[:, None], k[None, :])])


class SweepState:
    """What a build leaves for the next one of the same arrays: the conductances ``g_s`` (B,
    rows, cols) in S it was made at, every word line's chain inverse ``m_inv`` (B, rows, cols,
    cols) and the bottom-up Schur inverses ``invs`` (rows, B, cols, cols) (module doc)."""

    __slots__ = ("g_s", "m_inv", "invs")

    def __init__(self, g_s: torch.Tensor, m_inv: torch.Tensor, invs: torch.Tensor) -> None:
        self.g_s, self.m_inv, self.invs = g_s, m_inv, invs

    @staticmethod
    def nbytes(rows: int, cols: int) -> int:
        """Bytes one array's state holds (float64)."""
        return 8 * rows * cols * (2 * cols + 1)


def block_cell_voltage_transfer(spec: TileSpec, g_s: torch.Tensor, n_in: int,
                                prev: SweepState | None = None
                                ) -> tuple[torch.Tensor, SweepState]:
    """Cell-voltage transfer matrices (B, rows, cols, n_in), V per V, of read tiles (sense ends
    at 0 V) with cell conductances ``g_s`` (B, rows, cols) in S, the first ``n_in`` word lines
    driven (module doc), and the :class:`SweepState` of this build. ``prev``: the state of an
    earlier build of the same B arrays; the rows below the lowest row whose conductances
    changed since keep its word-line inverses and Schur inverses (the sweep runs bottom up, so
    row ``i``'s depends on rows ``i`` … ``rows − 1`` alone): bitwise what a build from scratch
    gives. ``spec`` already ``for_solvers()``."""
    R, C = spec.rows, spec.cols
    B = g_s.shape[0]
    g_w, g_b = 1.0 / spec.r_wire_wl_ohm, 1.0 / spec.r_wire_bl_ohm
    g_in = 1.0 / (spec.r_driver_ohm + spec.r_wire_wl_ohm)
    wl_diag, bl_diag = line_diagonals(spec, g_s.dtype)
    top = R                                        # rows [0, top) are built anew
    if prev is not None and prev.g_s.shape == g_s.shape:
        changed = torch.nonzero((g_s != prev.g_s).any(dim=2).any(dim=0)).flatten()
        top = int(changed[-1]) + 1 if len(changed) else 0
    if top == R:
        m_inv = _tridiagonal_inverses(wl_diag + g_s, g_w)              # (B, R, C, C)
        invs = g_s.new_empty((R, B, C, C))
    else:
        m_inv, invs = prev.m_inv.clone(), prev.invs.clone()
        if top:
            m_inv[:, :top] = _tridiagonal_inverses(wl_diag + g_s[:, :top], g_w)
    g = g_s[..., None]                                                  # (B, R, C, 1)
    for i in range(top - 1, -1, -1):               # U_i = S_i − g_b²·U_{i+1}⁻¹, bottom up
        s = (-g[:, i] * m_inv[:, i] * g[:, i].transpose(-1, -2))
        s.diagonal(dim1=-2, dim2=-1).add_(bl_diag[i] + g_s[:, i])
        if i < R - 1:
            s.add_(invs[i + 1], alpha=-g_b * g_b)
        torch.cholesky_inverse(torch.linalg.cholesky(s), out=invs[i])
    drive = g_in * m_inv[:, :n_in, :, 0]                                # (B, n_in, C)
    # z_i = rhs_i + g_b·U_{i+1}⁻¹·z_{i+1}, carried up from the rows the inputs drive: input k
    # enters row k, so below row n_in every z is 0 and z_i's columns below i stay 0
    zs = g_s.new_zeros((n_in, B, C, n_in))
    k = torch.arange(n_in)
    zs[k, :, :, k] = g_s[:, :n_in].transpose(0, 1) * drive.transpose(0, 1)
    for i in range(n_in - 2, -1, -1):
        zs[i, :, :, i + 1:].baddbmm_(invs[i + 1], zs[i + 1, :, :, i + 1:], alpha=g_b)
    v_bl = g_s.new_empty((R, B, C, n_in))          # down: v_i = U_i⁻¹·(z_i + g_b·v_{i−1})
    torch.matmul(invs[0], zs[0], out=v_bl[0])
    for i in range(1, R):
        rhs = zs[i].add_(v_bl[i - 1], alpha=g_b) if i < n_in else v_bl[i - 1] * g_b
        torch.matmul(invs[i], rhs, out=v_bl[i])
    v_bl = v_bl.transpose(0, 1)                                         # (B, R, C, n_in)
    v_wl = torch.matmul(m_inv, g * v_bl)
    v_wl[:, k, :, k] += drive.transpose(0, 1)
    return v_wl.sub_(v_bl), SweepState(g_s.clone(), m_inv, invs)
