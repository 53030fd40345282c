"""The linear part of the nonlinear 1T1R solver (:mod:`~spicecross.surrogate.nonlinear`) without a
dense factorization: the tile's wires are a forest of chains, each word line driven from one end
and each bit line sensed at one end, so for given cell currents every wire node's voltage is an
explicit sum computed with two cumulative sums per line, ``O(rows·cols)`` per vector.

Word line ``i``, node ``j`` (0 at the driver), carrying cell currents ``f`` (A, leaving the
line)::

    drop_ij = r_in·Σ_k f_ik + r_wl·Σ_{m=1..j} Σ_{k≥m} f_ik          (V)

(``r_in`` = driver + first segment, ``r_wl`` a segment, Ω); bit line ``j``, node ``i`` (row
``rows − 1`` next to the sense resistor), carrying currents ``f`` (A, entering the line)::

    rise_ij = r_out·Σ_k f_kj + r_bl·Σ_{m=i..rows−2} Σ_{k≤m} f_kj     (V)

(``r_out`` = last segment + sense resistance). These are ``W_wl`` and ``W_bl``, the inverses
of the two chain Laplacians. ``A_lin`` (wires plus cells of conductance ``G``, the ``linear``
mode's) is then solved for a residual ``(r_w, r_b)`` through the cell-voltage unknowns ``s``::

    (I + W·G)·s = W_wl·r_w − W_bl·r_b,   δa = W_wl·(r_w − G·s),   δb = W_bl·(r_b + G·s)

with ``W = W_wl + W_bl``. ``W·G`` is self-adjoint and positive semi-definite in the
``G``-weighted inner product, its spectrum within ``[0, μ]``, ``μ`` the Perron bound
:func:`contraction_bound` (the largest voltage drop plus rise that one volt across every cell
would cause). A fixed number of Chebyshev steps on ``[1, 1 + μ]`` (:func:`chebyshev_steps`)
is a fixed polynomial in ``A_lin``, so the outer modified Newton iteration keeps its exact
fixed point; it only converges a little more slowly (by the Chebyshev remainder). Worth it
when ``μ`` is small (short tiles, thin wires, weak cells); otherwise the dense block solver is
cheaper, and :class:`~spicecross.surrogate.nonlinear.BlockSolver` picks one or the other.
"""
from __future__ import annotations

import math

import torch

from ..circuit.tile import TileSpec

#: Relative error of the approximate ``A_lin⁻¹`` that the Chebyshev steps are chosen for.
CHEBYSHEV_REDUCTION = 1e-2


def wire_conductances(spec: TileSpec) -> tuple[float, float, float, float]:
    """(g_in, g_wl, g_bl, g_out) in S: driver plus first word-line segment, word-line segment,
    bit-line segment, last bit-line segment plus sense resistance (``spec`` as the solvers see
    it, 0 Ω segments replaced)."""
    spec = spec.for_solvers()
    return (1.0 / (spec.r_driver_ohm + spec.r_wire_wl_ohm), 1.0 / spec.r_wire_wl_ohm,
            1.0 / spec.r_wire_bl_ohm, 1.0 / (spec.r_wire_bl_ohm + spec.r_sense_ohm))


def chain_resistances(spec: TileSpec) -> tuple[float, float, float, float]:
    """(r_in, r_wl, r_bl, r_out) in Ω, the reciprocals of :func:`wire_conductances`."""
    return tuple(1.0 / g for g in wire_conductances(spec))


def word_line_drops(f_a: torch.Tensor, r_in_ohm: float, r_wl_ohm: float) -> torch.Tensor:
    """Voltage drops (V) along word lines from their drivers for currents ``f_a`` (A) leaving
    the word-line nodes, the lines along the last dimension (node 0 at the driver)."""
    cs = torch.cumsum(f_a, -1)
    tot = cs[..., -1:]
    suffix = torch.sub(tot, cs).add_(f_a)               # Σ_{k ≥ m} f_k
    out = torch.cumsum(suffix, -1).mul_(r_wl_ohm)
    return out.add_(tot, alpha=r_in_ohm - r_wl_ohm)


def bit_line_rises(f_a: torch.Tensor, r_bl_ohm: float, r_out_ohm: float) -> torch.Tensor:
    """Voltages (V) of bit-line nodes above ground for currents ``f_a`` (A) entering them, the
    lines along dimension 1 (the last row next to the sense resistor). Both sums run as loops
    over the rows: torch's cumulative sum along an outer dimension is several times slower."""
    p = torch.empty_like(f_a)                           # current in the segment below node m
    p[:, 0] = f_a[:, 0]
    for i in range(1, f_a.shape[1]):
        torch.add(p[:, i - 1], f_a[:, i], out=p[:, i])
    tot = p[:, -1:].clone()
    tail = p                                            # Σ_{m ≥ i} P_m, in place
    for i in range(f_a.shape[1] - 2, -1, -1):
        tail[:, i] += tail[:, i + 1]
    return tail.mul_(r_bl_ohm).add_(tot, alpha=r_out_ohm - r_bl_ohm)


def contraction_bound(spec: TileSpec, g_lin_s: torch.Tensor) -> torch.Tensor:
    """Upper bound μ (per tile) of the spectral radius of ``W·G`` for cell conductances
    ``g_lin_s`` (T, R, C) in S: the smaller of the largest row sum of ``W·G`` (the wire voltage
    at any node with one volt across every cell) and of ``G·W`` (a cell's conductance times the
    wire resistance it shares with all cells). Dimensionless."""
    r_in, r_wl, r_bl, r_out = chain_resistances(spec)
    g = torch.as_tensor(g_lin_s, dtype=torch.float64)
    by_rows = word_line_drops(g, r_in, r_wl) + bit_line_rises(g, r_bl, r_out)
    ones = torch.ones_like(g[:1])
    by_cols = g * (word_line_drops(ones, r_in, r_wl) + bit_line_rises(ones, r_bl, r_out))
    return torch.minimum(by_rows.amax(dim=(1, 2)), by_cols.amax(dim=(1, 2)))


def chebyshev_steps(mu: float, reduction: float = CHEBYSHEV_REDUCTION) -> int:
    """Chebyshev steps on ``[1, 1 + mu]`` that reduce any error by ``reduction`` at least:
    the smallest ``k`` with ``1/T_k((2 + mu)/mu) ≤ reduction`` (at least 1)."""
    if mu <= 0.0:
        return 1
    sigma = (2.0 + mu) / mu
    return max(1, math.ceil(math.acosh(1.0 / reduction) / math.acosh(sigma)))


class ChainNetwork:
    """``A_lin⁻¹`` of T tiles applied approximately with the chains' explicit voltages and
    ``steps`` Chebyshev steps (see the module docstring); same interface as
    :class:`~spicecross.surrogate.nonlinear.BlockNetwork`."""

    def __init__(self, spec: TileSpec, g_lin_s, dtype: torch.dtype = torch.float32,
                 reduction: float = CHEBYSHEV_REDUCTION):
        self.r_in, self.r_wl, self.r_bl, self.r_out = chain_resistances(spec)
        g = torch.as_tensor(g_lin_s, dtype=torch.float64)
        self.mu = float(contraction_bound(spec, g).max())
        self.steps = chebyshev_steps(self.mu, reduction)
        self.g_lin_s = g[:, :, None, :].to(dtype)          # (T, R, 1, C) in S
        self.dtype = dtype

    def _wire(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (word_line_drops(f, self.r_in, self.r_wl),
                bit_line_rises(f, self.r_bl, self.r_out))

    def solve(self, r_wl: torch.Tensor, r_bl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Node-voltage corrections (V) ≈ ``A_lin⁻¹·r`` for currents (A) into word- and bit-line
        nodes, each (T, R, B, C), in this network's dtype."""
        r_wl, r_bl = r_wl.to(self.dtype), r_bl.to(self.dtype)
        g = self.g_lin_s
        da = word_line_drops(r_wl, self.r_in, self.r_wl)      # W_wl·r_w
        db = bit_line_rises(r_bl, self.r_bl, self.r_out)      # W_bl·r_b
        res = da - db                # residual of (I + W·G)·s = c at s = 0
        # Chebyshev iteration on [1, 1 + μ] (Saad, Iterative Methods, alg. 12.1); the cells'
        # currents G·s reach the wires as W_wl·G·s and W_bl·G·s, accumulated into δa and δb
        theta, delta = 1.0 + 0.5 * self.mu, 0.5 * self.mu
        d = res / theta
        rho = delta / theta
        for k in range(self.steps):
            gd = g * d
            wa, wb = self._wire(gd)
            da -= wa
            db += wb
            if k + 1 == self.steps:
                break
            res -= d
            res -= wa
            res -= wb
            rho_next = 1.0 / (2.0 * theta / delta - rho)
            d.mul_(rho_next * rho).add_(res, alpha=2.0 * rho_next / delta)
            rho = rho_next
        return da, db
