"""The dense linear part of the nonlinear 1T1R solver (:mod:`~spicecross.surrogate.nonlinear`):
``A_lin⁻¹`` of tiles as row blocks (each word line with its cells a dense ``cols × cols``
inverse, then a block-tridiagonal sweep over the bit lines), and the choice between it and the
chains' explicit sums (:mod:`~spicecross.surrogate.nonlinear_chains`). See the nonlinear
module's docstring, step 3.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..circuit.tile import TileSpec
from .nonlinear_chains import ChainNetwork, wire_conductances

__all__ = ["BlockNetwork", "block_network", "linear_network", "LINEAR_PARTS", "CHAIN_STEP_MACS"]

@dataclass
class BlockNetwork:
    """``A_lin⁻¹`` of tiles (T of them) as dense blocks, for applying to batches of residuals."""

    h: torch.Tensor          # (T, R, C, C) word-line blocks (L_w + G_i)⁻¹ in Ω
    s_inv: torch.Tensor      # (T, R, C, C) bit-line pivots Σ_i⁻¹ in Ω
    g_lin_s: torch.Tensor    # (T, R, 1, C) cell conductances of A_lin in S
    g_bl_s: float            # bit-line segment conductance in S

    def solve(self, r_wl: torch.Tensor, r_bl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Node voltages (V) ``A_lin⁻¹·r`` for currents (A) into word- and bit-line nodes, each
        (T, R, B, C); computed in the blocks' dtype, returned in that dtype."""
        dt = self.h.dtype
        r_wl, r_bl = r_wl.to(dt), r_bl.to(dt)
        g = self.g_lin_s
        rw_h = torch.matmul(r_wl, self.h)                  # H_i r_w,i   (T, R, B, C)
        y = torch.addcmul(r_bl, g, rw_h)                   # right-hand sides, then y_i in place
        R = y.shape[1]
        z = torch.empty_like(y)
        for i in range(R):     # forward: z_i = (y_i + g_bl·z_{i−1})·Σ_i⁻¹
            if i:
                y[:, i].add_(z[:, i - 1], alpha=self.g_bl_s)
            torch.matmul(y[:, i], self.s_inv[:, i], out=z[:, i])
        b = z                  # backward: b_i = z_i + g_bl·b_{i+1}·Σ_i⁻¹, in place
        for i in range(R - 2, -1, -1):
            b[:, i].baddbmm_(b[:, i + 1], self.s_inv[:, i], alpha=self.g_bl_s)
        return rw_h.add_(torch.matmul(b * g, self.h)), b


def block_network(spec: TileSpec, g_lin_s: np.ndarray | torch.Tensor,
                  dtype: torch.dtype = torch.float32) -> BlockNetwork:
    """Factor ``A_lin`` of tiles with linear cell conductances ``g_lin_s`` (T, R, C) in S."""
    g_in, g_w, g_b, g_out = wire_conductances(spec)
    g = torch.as_tensor(g_lin_s, dtype=torch.float64)
    T, R, C = g.shape
    lw = torch.zeros(C, C, dtype=torch.float64)
    idx = torch.arange(C)
    lw[idx[:-1], idx[1:]] = lw[idx[1:], idx[:-1]] = -g_w
    deg = torch.full((C,), 2 * g_w, dtype=torch.float64)
    deg[-1] = g_w
    deg[0] = g_in + (g_w if C > 1 else 0.0)
    lw += torch.diag(deg)
    h = torch.cholesky_inverse(torch.linalg.cholesky(lw + torch.diag_embed(g)))   # (T, R, C, C)
    d_bl = torch.full((R,), 2 * g_b, dtype=torch.float64)
    d_bl[0] = g_b
    d_bl[-1] = (g_b if R > 1 else 0.0) + g_out
    s = torch.diag_embed(g + d_bl[:, None]) - g[..., :, None] * h * g[..., None, :]
    s_inv = torch.empty_like(s)
    for i in range(R):
        piv = s[:, i] if i == 0 else s[:, i] - g_b * g_b * s_inv[:, i - 1]
        s_inv[:, i] = torch.cholesky_inverse(torch.linalg.cholesky(piv))
    return BlockNetwork(h.to(dtype), s_inv.to(dtype), g[:, :, None, :].to(dtype), g_b)


#: Linear parts of :class:`BlockSolver`: dense row blocks, the chains' explicit voltages with
#: Chebyshev steps (:mod:`~spicecross.surrogate.nonlinear_chains`), the compiled line solver
#: (:mod:`~spicecross.surrogate.nonlinear_lines`, its own whole iteration), or ``auto``: the
#: line solver where it applies (1T1R, lambda 0), else the cheaper of the first two.
LINEAR_PARTS = ("auto", "block", "chains", "lines")
#: Cost of one chain Chebyshev step per cell, in the block solve's multiply-adds (it does
#: ``4·cols`` per cell). Measured with torch 2.13 on one core (float32): applying both chain
#: sums ≈ 8.5 ns per cell, a step with its elementwise passes ≈ 10 ns, the 64×64 block solve
#: ≈ 20 ns per cell for its 256 multiply-adds.
CHAIN_STEP_MACS = 130.0


def linear_network(spec: TileSpec, g_lin_s, dtype: torch.dtype = torch.float32,
                   linear: str = "auto") -> "BlockNetwork | ChainNetwork":
    """The linear part ``A_lin⁻¹`` for tiles with linear cell conductances ``g_lin_s``
    (T, R, C) in S: ``linear`` one of :data:`LINEAR_PARTS`. ``auto`` takes the chains when
    their Chebyshev steps (one more for the right-hand side) cost less than the block solve,
    ``(steps + 1)·CHAIN_STEP_MACS < 4·cols``: weakly coupled tiles (small contraction bound
    μ: weak cells, thin wires) with long word lines; otherwise the block solve."""
    if linear not in LINEAR_PARTS or linear == "lines":
        raise ValueError(f"linear part must be one of {LINEAR_PARTS[:3]}, got {linear!r}")
    if linear != "block":
        chains = ChainNetwork(spec, g_lin_s, dtype)
        cols = chains.g_lin_s.shape[-1]
        if linear == "chains" or (chains.steps + 1) * CHAIN_STEP_MACS < 4 * cols:
            return chains
    return block_network(spec, g_lin_s, dtype)
