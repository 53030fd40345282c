"""The cell-voltage transfer matrices of read tiles by block elimination (the read-disturb
update's ``T``, :func:`~spicecross.surrogate.dynamic.cell_voltage_transfer`), and the wire,
driver and sense terms of the nodal matrix's diagonal that every solver of the tile network
shares.

Nodes row by row: word line ``i`` is a chain (−g_w between neighbours, the driver at column 0)
whose nodes meet the bit-line nodes of row ``i`` through the cells; bit line ``j`` is a chain
down the rows (−g_b) to the sense end. Per tile:

1. every word line's chain matrix ``M_i`` (tridiagonal) is inverted exactly in O(cols²)
   (:func:`_tridiagonal_inverses`: its upper triangle from the forward pivots, column by
   column, ``(M⁻¹)_{jk} = (g_w/p_j)·(M⁻¹)_{j+1,k}`` for ``j < k``, the diagonal from both
   pivot sweeps), instead of a Cholesky inverse (O(cols³) per row);
2. eliminating the word lines leaves the bit lines' block-tridiagonal system with the dense
   Schur blocks ``S_i = D_i − G_i·M_i⁻¹·G_i`` (``G_i`` the row's cell conductances);
3. one block sweep down the rows (``S_i − g_b²·S_{i−1}⁻¹``, Cholesky, its inverse), the
   right-hand sides carried only from the row each input drives (input ``k`` enters row
   ``k``: above it its column is 0), then the back substitution for every input;
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
    running sum of ``log(c/p)`` before each node (decreasing; relative error ≈ |L_j − L_k|·eps, and entries
    below the float range become 0). The pivots' recurrences run in numpy (small steps)."""
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


def block_cell_voltage_transfer(spec: TileSpec, g_s: torch.Tensor, n_in: int) -> torch.Tensor:
    """Cell-voltage transfer matrices (B, rows, cols, n_in), V per V, of read tiles (sense ends
    at 0 V) with cell conductances ``g_s`` (B, rows, cols) in S, the first ``n_in`` word lines
    driven (module doc). ``spec`` already ``for_solvers()``."""
    R, C = spec.rows, spec.cols
    B = g_s.shape[0]
    g_w, g_b = 1.0 / spec.r_wire_wl_ohm, 1.0 / spec.r_wire_bl_ohm
    g_in = 1.0 / (spec.r_driver_ohm + spec.r_wire_wl_ohm)
    wl_diag, bl_diag = line_diagonals(spec, g_s.dtype)
    m_inv = _tridiagonal_inverses(wl_diag + g_s, g_w)                  # (B, R, C, C)
    g = g_s[..., None]                                                  # (B, R, C, 1)
    s_all = -g * m_inv * g.transpose(-1, -2)                            # (B, R, C, C)
    s_all.diagonal(dim1=-2, dim2=-1).add_(bl_diag[:, None] + g_s)
    drive = g_in * m_inv[:, :n_in, :, 0]                                # (B, n_in, C)
    ys = g_s.new_zeros((R, B, C, n_in))            # y_i, row by row: input k enters row k
    k = torch.arange(n_in)
    ys[k, :, :, k] = g_s[:, :n_in].transpose(0, 1) * drive.transpose(0, 1)
    invs = g_s.new_empty((R, B, C, C))             # S'_i⁻¹ of the sweep
    for i in range(R):
        s = s_all[:, i]
        if i:
            s = torch.add(s, invs[i - 1], alpha=-g_b * g_b)
            m = min(i, n_in)                       # above row m, column m is still 0
            ys[i, :, :, :m].baddbmm_(invs[i - 1], ys[i - 1, :, :, :m], alpha=g_b)
        torch.cholesky_inverse(torch.linalg.cholesky(s), out=invs[i])
    v_bl = g_s.new_empty((R, B, C, n_in))
    torch.matmul(invs[R - 1], ys[R - 1], out=v_bl[R - 1])
    for i in range(R - 2, -1, -1):
        torch.matmul(invs[i], ys[i].add_(v_bl[i + 1], alpha=g_b), out=v_bl[i])
    v_bl = v_bl.transpose(0, 1)                                         # (B, R, C, n_in)
    v_wl = torch.matmul(m_inv, g * v_bl)
    v_wl[:, k, :, k] += drive.transpose(0, 1)
    return v_wl.sub_(v_bl)
