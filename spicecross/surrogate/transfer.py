"""Exact transfer matrices of crossbar tiles with linear cells, by a row recursion (torch).

For fixed cell conductances a tile read is a linear network, so the sense currents are
``I = T·v`` with ``T`` (cols × rows, S) depending on the conductances and every wire segment.
Instead of a sparse factorization with many right-hand sides (SuperLU: 45 ms for one 64×64
tile and 555 ms for 128×128 single-threaded here, vs 22 ms and 185 ms for this recursion; see
BENCHMARKS.md), the network is reduced row by row:

* each word line ``i`` is a chain (segments ``g_w``, input conductance ``g_in`` at column 0,
  cell conductances ``g_i`` to its bit-line nodes ``u_i``); eliminating its nodes gives the row's
  admittance ``Y_i = diag(g_i) − diag(g_i)·L_i⁻¹·diag(g_i)`` onto ``u_i`` and an input term
  ``p_i·v_i`` with ``p_i = g_in·diag(g_i)·L_i⁻¹·e_0``;
* from the bottom (sense sources, ``g_out``) upwards, everything below bit-line row ``i`` seen
  from ``u_i`` is ``M_i·u_i − s_i·v`` (``M_i`` C×C, ``s_i`` C×R), with
  ``Q_{i+1} = (M_{i+1} + g_b·I)⁻¹``, ``M_i = Y_i + g_b·I − g_b²·Q_{i+1}``,
  ``s_i = g_b·Q_{i+1}·s_{i+1} + p_i·e_iᵀ``;
* at the top ``M_0·U_0 = s_0``; going down ``U_{i+1} = Q_{i+1}·(g_b·U_i + s_{i+1})``; finally
  ``T = g_out·U_{R−1}``.

Cost O(R·C³ + R²·C²) dense work in BLAS, batched over any number of same-shaped tiles, exact to
rounding (checked against ngspice, VACASK and a sparse nodal solve in the tests).
"""
from __future__ import annotations

import numpy as np
import torch

from ..circuit.tile import TileSpec


def _chain_laplacian(spec: TileSpec, cols: int, g_in: float) -> torch.Tensor:
    g_w = 1.0 / spec.r_wire_wl_ohm
    lap = torch.zeros(cols, cols, dtype=torch.float64)
    k = torch.arange(cols)
    lap[k[:-1], k[:-1]] += g_w
    lap[k[1:], k[1:]] += g_w
    lap[k[:-1], k[1:]] -= g_w
    lap[k[1:], k[:-1]] -= g_w
    lap[0, 0] += g_in
    return lap


def transfer_matrices(spec: TileSpec, g_cell_s: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Transfer matrices T (..., cols, rows) in S for cell conductances (..., rows, cols) in S.

    Any leading batch dimensions are tiles solved together. ``I = T @ v`` gives the sense
    currents (A) for input voltages ``v`` (V). Float64 throughout.
    """
    g = torch.as_tensor(g_cell_s, dtype=torch.float64)
    if g.shape[-2:] != (spec.rows, spec.cols):
        raise ValueError(f"cell conductances must end in shape ({spec.rows}, {spec.cols}), got {tuple(g.shape)}")
    if not bool(torch.isfinite(g).all()) or bool((g < 0).any()):
        raise ValueError("cell conductances must be finite and ≥ 0 S")
    R, C = spec.rows, spec.cols
    g_b = 1.0 / spec.r_wire_bl_ohm
    g_in = 1.0 / (spec.r_driver_ohm + spec.r_wire_wl_ohm)
    g_out = 1.0 / (spec.r_wire_bl_ohm + spec.r_sense_ohm)
    batch = g.shape[:-2]

    L = _chain_laplacian(spec, C, g_in).expand(*batch, R, C, C).clone()
    L.diagonal(dim1=-2, dim2=-1).add_(g)
    rhs = torch.cat([torch.diag_embed(g), torch.zeros(*batch, R, C, 1, dtype=torch.float64)], dim=-1)
    rhs[..., 0, C] = g_in
    sol = torch.linalg.solve(L, rhs)                       # L_i⁻¹·[diag(g_i), g_in·e_0]
    y_cell = torch.diag_embed(g) - g.unsqueeze(-1) * sol[..., :C]
    p = g * sol[..., C]                                    # (..., R, C)

    eye = torch.eye(C, dtype=torch.float64)
    qs: list[torch.Tensor | None] = [None] * R
    ss: list[torch.Tensor | None] = [None] * R
    M = y_cell[..., R - 1, :, :] + g_out * eye
    s = torch.zeros(*batch, C, R, dtype=torch.float64)
    s[..., :, R - 1] = p[..., R - 1, :]
    for i in range(R - 2, -1, -1):
        Q = torch.linalg.inv(M + g_b * eye)
        qs[i + 1], ss[i + 1] = Q, s
        M = y_cell[..., i, :, :] + g_b * eye - (g_b * g_b) * Q
        s = g_b * (Q @ s)
        s[..., :, i] += p[..., i, :]
    U = torch.linalg.solve(M, s)
    for i in range(1, R):
        U = qs[i] @ (g_b * U + ss[i])
    return g_out * U


def transfer_matrix(spec: TileSpec, g_cell_s: np.ndarray) -> np.ndarray:
    """T (cols, rows) in S of one tile as a numpy array; see :func:`transfer_matrices`."""
    return transfer_matrices(spec, spec.check_conductances(g_cell_s, "cell conductances")).numpy()
