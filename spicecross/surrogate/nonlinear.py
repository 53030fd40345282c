"""Fast exact nonlinear reads of 1T1R tiles: modified Newton on the word- and bit-line node
voltages with a block-tridiagonal dense solve in torch as its linear part, batched over vectors
and over tiles (:func:`read_many`). Where its closed form applies (lambda 0) the compiled line
solver (:mod:`~spicecross.surrogate.nonlinear_lines`, the same iteration with line solves and a
coarse correction as its linear part) reads first; this iteration solves what it leaves.

Unknowns per cell: the word-line node ``a``, the bit-line node ``b`` and the series node ``m``
between device and selector (V). The equations are the ones of
:func:`~spicecross.surrogate.cells.cell_currents_1t1r` (SPICE's level-1 NMOS with its bulk
junctions) and Kirchhoff's current law on every wire node. One iteration:

1. the series nodes ``m`` for the present ``a``, ``b``: in closed form (the root of a quadratic)
   when every selector is in triode, lambda is 0 and no drain–bulk junction conducts, its
   junction current taken from the last iteration; otherwise elementwise Newton steps,
   warm-started, a step that leaves the bracket where the node's current balance changes sign
   replaced by the safeguarded solve of :func:`~spicecross.surrogate.cells.series_node_1t1r`,
   the cell currents linearized around the new ``m``. Either is exact once ``m`` stops moving;
2. the KCL residual ``r`` (A) of every word- and bit-line node, in float64;
3. the update ``δ = A_lin⁻¹·r``, ``A_lin`` the nodal matrix of the tile with the ``linear``
   mode's cells (the device in series with the selector's on-conductance). Rows are eliminated
   block by block: each word line with its cells is a dense ``cols × cols`` solve
   (``H_i = (L_w + G_i)⁻¹``), which leaves a block-tridiagonal system on the bit-line nodes
   (``cols × cols`` pivots ``Σ_i``, coupled by ``g_bl``). All blocks are inverted once per tile
   (Cholesky, float64); applying ``A_lin⁻¹`` to a batch is ``2·rows + 1`` batched matmuls,
   ``4·rows·cols²`` multiply-adds per vector, in ``dtype`` (float32 by default: ``δ`` is a
   correction driven by a float64 residual, so the fixed point is the float64 one). Or
   (``linear="chains"``, :mod:`~spicecross.surrogate.nonlinear_chains`) ``A_lin⁻¹`` applied
   approximately with the wire chains' explicit voltages (cumulative sums, ``O(rows·cols)``)
   and Chebyshev steps: same fixed point, slower, ``auto`` only where cheaper (:func:`linear_network`).

This is the sparse-LU fixed point of ``tile_model`` (``method="sparse_lu"``) as a residual
correction. It stops when no node moves by more than ``tol_v`` relative to the largest input
or bulk voltage, or when the contraction rate of the last two updates says that what remains
is below that. Once the nodes move too little to change the junctions' currents (≤ 1e-12 S
each in reverse bias) by ``JUNCTION_FREEZE`` of the tolerance, those currents are kept.
Vectors go in chunks of ``chunk``. Sense currents are ``g_out·V`` of the last bit-line nodes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..circuit.tile import TileSpec
from .cells import SPICE_GMIN_S, _EXP_ARG_MAX, nmos_level1_id, series_node_1t1r
from .nonlinear_block import (CHAIN_STEP_MACS, LINEAR_PARTS, BlockNetwork,  # noqa: F401
                              block_network, linear_network)
from .nonlinear_chains import wire_conductances
from .nonlinear_lines import LineSystem, lines_supported

#: Newton steps of the series nodes per outer iteration at most.
MAX_CELL_STEPS = 50
#: Largest drain–bulk forward bias (V) at which the closed-form series node takes the junction's
#: current from the last iteration (its conductance there, < 1e-7 S, is far below any cell's).
LAG_JUNCTION_MAX_V = 0.3
#: Junction currents are kept once they would change by less than this fraction of the
#: tolerance's voltage times the weakest cell's conductance: at 1, by no more than the error
#: the stopping tolerance already admits in that cell's current (1e-3 cost a 64×64 read tile
#: about a quarter more time, two or three more junction evaluations, for answers within
#: 2e-12 relative).
JUNCTION_FREEZE = 1.0
#: Series-node steps continue until their Newton remainder is below this fraction of the last
#: outer update (looser lets strongly forward-biased junctions diverge).
CELL_TOL = 1e-4


def _channel(sel, m: torch.Tensor, b: torch.Tensor, vg: "float | torch.Tensor"
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Selector channel current (A, from the series node ``m`` to the bit line ``b``) at gate
    voltage ``vg`` (V; a number or a tensor broadcasting to ``m``) and its
    derivative dI/dm (S): the level-1 equations of :func:`~.cells.nmos_level1_id` in one
    branch-free form (``vde = min(V_DS, max(V_ov, 0))`` covers triode, saturation and off)."""
    beta, lam = sel.beta_a_per_v2, sel.lambda_per_v
    swap = m < b
    vds = (m - b).abs_()
    vovp = torch.minimum(m, b).neg_().add_(vg - sel.vto_v).clamp_min_(0.0)
    vde = torch.minimum(vds, vovp)
    i0 = vde * (vovp - 0.5 * vde)
    i0 *= beta
    gm = vde.mul_(beta)                      # dI/dvgs without channel-length modulation
    gd = vovp.sub_(gm, alpha=1.0 / beta).mul_(beta)
    if lam != 0.0:
        clm = vds.mul_(lam).add_(1.0)
        gd = gd.mul_(clm).add_(i0, alpha=lam)
        gm = gm.mul_(clm)
        i0 = i0.mul_(clm)
    # swapped (m < b): I = −i, dI/dm = gm + gd; otherwise I = i, dI/dm = gd
    return torch.where(swap, i0.neg(), i0), gd.add_(gm.mul_(swap))


def _junction(sel, v_v: torch.Tensor, slope: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor | float]:
    """Bulk-junction current (A, bulk into the terminal) at bulk-to-terminal voltage ``v_v``
    and its derivative (S), as :func:`~.cells.junction_current`; with ``slope=False`` only the
    derivative's largest value (S), which is the one at the largest ``v_v`` (it never falls)."""
    vt = sel.vt_v
    fwd = v_v > -3.0 * vt
    e = (v_v / vt).clamp_max_(_EXP_ARG_MAX).exp_().mul_(fwd)
    i = torch.add(v_v * SPICE_GMIN_S, e, alpha=sel.is_a).sub_(sel.is_a)
    if slope:
        return i, e.mul_(sel.is_a / vt).add_(SPICE_GMIN_S)
    x = float(v_v.max())
    e_max = np.exp(min(x / vt, _EXP_ARG_MAX)) if x > -3.0 * vt else 0.0
    return i, sel.is_a / vt * e_max + SPICE_GMIN_S


def _max_abs(x: torch.Tensor) -> float:
    """Largest magnitude of ``x`` (one pass); inf if ``x`` has a NaN or ±inf."""
    lo, hi = (float(t) for t in torch.aminmax(x))
    return max(-lo, hi) if np.isfinite(lo) and np.isfinite(hi) else np.inf


@dataclass
class SolveStats:
    iterations: int = 0
    residual_v: float = 0.0          # last largest node-voltage change, V
    fallback_cells: int = 0          # series-node steps redone by the safeguarded solver
    cell_steps: int = 0              # Newton steps of the series nodes (whole batch)
    torch_vectors: int = 0           # vectors the line solver left to the torch iteration


class NotConverged(RuntimeError):
    """The block iteration did not converge within its iteration limit."""


class BlockSolver:
    """Exact nonlinear reads of T tiles of one ``spec`` with device conductances ``g_dev_s``
    (T, R, C) in S: :meth:`read` maps inputs (T, B, R) in V to sense currents (T, B, C) in A.
    ``A_lin`` is factored once here (``dtype`` the precision its corrections are applied in),
    or ``net``, an ``A_lin⁻¹`` already factored (``solve(r_wl, r_bl)`` and ``g_lin_s``, as
    :class:`BlockNetwork`), is reused: it only preconditions, the fixed point is exact. Where
    the compiled line solver applies (``linear`` "auto" or "lines", 1T1R with lambda 0,
    :mod:`~spicecross.surrogate.nonlinear_lines`) it reads first, on ``threads`` threads
    (default torch's), and this torch iteration, its ``A_lin`` factored when first needed,
    re-solves the vectors it leaves."""

    def __init__(self, spec: TileSpec, g_dev_s: np.ndarray, g_lin_s: np.ndarray | None,
                 dtype: torch.dtype = torch.float32, tol_v: float = 1e-10, max_iter: int = 200,
                 chunk: int = 128, linear: str = "auto", net=None, threads: int | None = None):
        self.spec = spec.for_solvers()
        self.g_dev = torch.as_tensor(np.asarray(g_dev_s, dtype=np.float64))[:, :, None, :]
        self.on = self.g_dev > 0
        self.all_on = bool(self.on.all())
        if linear not in LINEAR_PARTS:
            raise ValueError(f"linear part must be one of {LINEAR_PARTS}, got {linear!r}")
        if linear == "lines" and not lines_supported(self.spec):
            raise ValueError("the line solver needs 1t1r cells with lambda_per_v = 0, got "
                             f"lambda_per_v={self.spec.selector.lambda_per_v!r}")
        self.lines = None           # the compiled line solver (nonlinear_lines), where it applies
        if linear in ("auto", "lines") and lines_supported(self.spec):
            g_lin = g_lin_s if net is None else net.g_lin_s[:, :, 0, :].to(torch.float64)
            self.lines = LineSystem.build(self.spec, np.asarray(g_dev_s), np.asarray(g_lin))
        self._net, self._net_args = net, (g_lin_s, dtype, "auto" if linear == "lines" else linear)
        self.g_in, self.g_w, self.g_b, self.g_out = wire_conductances(self.spec)
        self.tol_v, self.max_iter, self.chunk = tol_v, max_iter, max(1, int(chunk))
        self.threads = threads      # the line solver's (default torch's thread count)
        self.stats = SolveStats()

    @property
    def net(self):
        """``A_lin⁻¹`` of the torch iteration, factored when first needed."""
        if self._net is None:
            self._net = linear_network(self.spec, *self._net_args)
        return self._net

    def _cells_triode(self, a, b, m, vg, frozen=None):
        """The series nodes in closed form where every selector is in triode and lambda = 0:
        with the drain–bulk junction current ``J`` (A) taken at the last ``m``, the node's
        balance ``g(w − u) + J = β(V_ov·u − u²/2)`` (``u = m − b``, ``w = a − b``,
        ``V_ov = V_G − V_T − b``, ``V_G`` = ``vg``, either direction of current) is a quadratic whose root is
        ``u = 2q/(p + √(p² − 2βq))``, ``p = βV_ov + g``, ``q = gw + J``; exact once ``m`` stops
        moving. ``frozen``: both junctions' currents (A) from an earlier iteration, used when
        the nodes have since moved too little to change them (see ``_read_chunk``). Returns
        (j_wl, j_bl, m_new, (j_bd, j_bd + j_sb, g_j)), g_j the junctions' largest conductance
        (S), or None if some on-cell is not in that regime (the caller takes Newton steps instead)."""
        sel = self.spec.selector
        beta, g = sel.beta_a_per_v2, self.g_dev
        if frozen is None:
            x_bd = sel.v_bulk_v - m
            if float(x_bd.max()) > LAG_JUNCTION_MAX_V:   # a conducting junction: no lag
                return None
            j_bd, g_bd = _junction(sel, x_bd, slope=False)
            j_sb, g_sb = _junction(sel, sel.v_bulk_v - b, slope=False)
            frozen = (j_bd, j_bd + j_sb, max(g_bd, g_sb))
        j_bd, j_both, _ = frozen
        w = a - b
        vov = b.neg().add_(vg - sel.vto_v)
        p = torch.add(g, vov, alpha=beta)
        q = torch.addcmul(j_bd, g, w)
        root = (p * p).sub_(q, alpha=2.0 * beta).sqrt_().add_(p)
        u = q.div_(root).mul_(2.0)
        # on and in triode: V_ov > max(u, 0); checked elementwise only if the extremes fail it
        # (NaN fails both)
        if not float(vov.min()) > max(float(u.max()), 0.0):
            ok = vov > u.clamp_min(0.0)
            if not self.all_on:
                ok |= ~self.on
            if not bool(ok.all()):
                return None
        j_wl = w.sub_(u).mul_(g)
        j_bl = j_wl + j_both
        m_new = u.add_(b)
        if not self.all_on:
            j_wl *= self.on
            j_bl *= self.on
            m_new = torch.where(self.on, m_new, b)
        return j_wl, j_bl, m_new, frozen

    def _cells(self, a, b, m, vg, tol_m_v: float):
        """Newton steps of the series nodes at fixed ``a``, ``b`` (gates at ``vg``) until the last step's
        remainder (≈ step²/(2·V_T)) is at most ``tol_m_v`` (V); returns (j_wl, j_bl, m_new) in
        A, A, V, the currents linearized around ``m_new`` by the last step (exact where it is
        converged)."""
        sel = self.spec.selector
        g = self.g_dev
        lo = torch.minimum(a, b).clamp_max_(sel.v_bulk_v)
        hi = torch.maximum(a, b).clamp_min_(sel.v_bulk_v)
        for _ in range(MAX_CELL_STEPS):
            i_ch, di_ch = _channel(sel, m, b, vg)
            i_bd, g_bd = _junction(sel, sel.v_bulk_v - m)
            f = (a - m).mul_(g).add_(i_bd).sub_(i_ch)
            df = g_bd.add_(g).add_(di_ch)                   # −df/dm
            m_new = torch.addcdiv(m, f, df)
            bad = ~((m_new >= lo) & (m_new <= hi))          # leaves the bracket, or NaN
            if not self.all_on:
                bad &= self.on
                m_new = torch.where(self.on, m_new, b)
            j_bl = torch.addcmul(i_ch, di_ch, m_new - m)
            n_bad = int(bad.sum())
            if n_bad:   # the safeguarded scalar solve for those cells, exact currents there
                self.stats.fallback_cells += n_bad
                gb = torch.broadcast_to(g, a.shape)[bad].numpy()
                ab, bb = a[bad].numpy(), b[bad].numpy()
                vgb = torch.broadcast_to(torch.as_tensor(vg, dtype=a.dtype), a.shape)[bad].numpy()
                mb = series_node_1t1r(self.spec, gb, ab, bb, v_gate_v=vgb)
                m_new[bad] = torch.from_numpy(mb)
                j_bl[bad] = torch.from_numpy(nmos_level1_id(sel, vgb, mb, bb)[0])
            step = float((m_new - m).abs_().max()) if m.numel() else 0.0
            m = m_new
            self.stats.cell_steps += 1
            # Newton's remainder after a step s is about s²·|f''/2f'| ≤ s²/(2·V_T) (the
            # junction's exponential is the strongest curvature)
            if step * step / (2.0 * sel.vt_v) <= tol_m_v:
                break
        j_bl += _junction(sel, sel.v_bulk_v - b)[0]
        j_wl = (a - m).mul_(g)
        if not self.all_on:
            j_wl *= self.on
            j_bl *= self.on
        return j_wl, j_bl, m

    def _residual(self, v, a, b, j_wl, j_bl, v_bl=0.0):
        """KCL residuals (A, into each node) of word- and bit-line nodes, (T, R, B, C) each; the
        sense ends of the bit lines at ``v_bl`` (V, a number or (T, B, C))."""
        s = torch.empty(a.shape[:-1] + (a.shape[-1] + 1,), dtype=a.dtype)
        torch.sub(v, a[..., 0], out=s[..., 0]).mul_(self.g_in)
        torch.sub(a[..., :-1], a[..., 1:], out=s[..., 1:-1]).mul_(self.g_w)
        s[..., -1] = 0.0
        r_w = torch.sub(s[..., :-1], s[..., 1:]).sub_(j_wl)
        d = torch.empty(b.shape[:1] + (b.shape[1] + 1,) + b.shape[2:], dtype=b.dtype)
        d[:, 0] = 0.0
        torch.sub(b[:, :-1], b[:, 1:], out=d[:, 1:-1]).mul_(self.g_b)
        torch.sub(b[:, -1], v_bl, out=d[:, -1]).mul_(self.g_out)
        r_b = torch.sub(d[:, :-1], d[:, 1:]).add_(j_bl)
        return r_w, r_b

    def read(self, v_in_v: np.ndarray | torch.Tensor, v_gate_v=None, v_bl_v=None, start=None
             ) -> torch.Tensor:
        """Sense currents (T, B, C) in A for inputs (T, B, R) in V (float64), solved in chunks
        of ``chunk`` vectors (their working arrays stay in cache). Optional, per vector: gate
        voltages ``v_gate_v`` (T, B, R) in V (default the selector's DC ``v_gate_v``), the
        bit lines' sense ends at ``v_bl_v`` (T, B, C) in V (default 0 V, a read; the sense
        currents are then ``g_out·(V_last − v_bl)``), and a ``start`` (a, b, m) of node
        voltages (T, R, B, C) each in V (e.g. ``last_state`` of a neighbouring solve) instead
        of the linear solve. ``last_state`` holds the last chunk's solution."""
        v = torch.as_tensor(v_in_v, dtype=torch.float64)
        vg = None if v_gate_v is None else torch.as_tensor(v_gate_v, dtype=torch.float64)
        vb = None if v_bl_v is None else torch.as_tensor(v_bl_v, dtype=torch.float64)
        self.stats = SolveStats()
        if self.lines is not None:
            return self._read_lines(v, vg, vb, start)
        outs = []
        for s in range(0, v.shape[1], self.chunk):
            k = slice(s, s + self.chunk)
            outs.append(self._read_chunk(
                v[:, k], None if vg is None else vg[:, k], None if vb is None else vb[:, k],
                None if start is None else tuple(x[:, :, k] for x in start)))
        return torch.cat(outs, dim=1) if outs else v.new_zeros(v.shape[:2] + (self.g_dev.shape[-1],))

    def _read_lines(self, v, vg, vb, start) -> torch.Tensor:
        """:meth:`read` by the line solver; the vectors it leaves (outside its closed form's
        regime, not converged) by the torch iteration, those indices in every tile at once.
        ``last_state`` is the last chunk's, as the torch iteration leaves it."""
        (T, B, R), C = v.shape, self.g_dev.shape[-1]
        vg = torch.full_like(v, self.spec.selector.v_gate_v) if vg is None else vg
        vb = v.new_zeros((T, B, C)) if vb is None else vb
        st = None if start is None else tuple(x.transpose(1, 2).numpy() for x in start)
        b0 = (max(B - 1, 0) // self.chunk) * self.chunk              # the last chunk's vectors
        slot = np.arange(B) - b0 + (B - b0) * np.arange(T)[:, None]
        res = self.lines.read(v.numpy(), vg.numpy(), vb.numpy(), st,
                              np.where(np.arange(B) >= b0, slot, -1).ravel(), self.tol_v,
                              self.max_iter, self.threads)
        out = torch.from_numpy(res.currents_a)
        state = (None if res.state is None else tuple(
            torch.from_numpy(x.reshape(T, B - b0, R, C)).transpose(1, 2) for x in res.state))
        failed = (res.status != 0).reshape(T, B)
        idx = np.flatnonzero(failed.any(axis=0))
        if len(idx):
            k = torch.from_numpy(idx)
            i = self._read_chunk(v[:, k], vg[:, k], vb[:, k],
                                 None if start is None else tuple(x[:, :, k] for x in start))
            fix = torch.from_numpy(failed[:, idx])
            out[:, k] = torch.where(fix[..., None], i, out[:, k])
            self.stats.torch_vectors = int(failed.sum())
            for col, b in enumerate(idx):       # kept vectors the torch iteration solved
                if b >= b0:
                    for x, y in zip(state, self.last_state):
                        x[:, :, b - b0] = torch.where(fix[:, col, None, None], y[:, :, col],
                                                      x[:, :, b - b0])
        solved = res.status == 0
        self.stats.iterations = max(self.stats.iterations, int(res.iterations[solved].max(initial=0)))
        self.stats.residual_v = max(self.stats.residual_v, float(res.moves_v[solved].max(initial=0.0)))
        self.last_state = state
        return out

    def _read_chunk(self, v_in: torch.Tensor, vg_in=None, v_bl=None, start=None) -> torch.Tensor:
        v = v_in.transpose(1, 2)                                               # (T, R, B)
        sel = self.spec.selector
        vg = sel.v_gate_v if vg_in is None else vg_in.transpose(1, 2)[..., None]  # (T, R, B, 1)
        scale = max(float(v.abs().max()) if v.numel() else 0.0, abs(sel.v_bulk_v), 1e-30,
                    0.0 if v_bl is None else _max_abs(v_bl))
        tol = self.tol_v * scale
        T, R, B = v.shape
        C = self.g_dev.shape[-1]
        if start is not None:
            a, b, m = (x.to(torch.float64).clone() for x in start)
        else:
            r_w = torch.zeros(T, R, B, C, dtype=torch.float64)
            r_w[..., 0] = self.g_in * v
            r_b = torch.zeros_like(r_w)
            if v_bl is not None:
                r_b[:, -1] = self.g_out * v_bl
            a, b = (x.to(torch.float64) for x in self.net.solve(r_w, r_b))
            g_on = max(sel.g_on_s, 1e-30)
            m = (self.g_dev * a + g_on * b) / (self.g_dev + g_on)
        v_bl = 0.0 if v_bl is None else v_bl
        delta = prev = scale
        frozen = None
        g_on_cells = self.net.g_lin_s[self.net.g_lin_s > 0]
        jtol = JUNCTION_FREEZE * tol * (float(g_on_cells.min()) if g_on_cells.numel() else 0.0)
        for it in range(1, self.max_iter + 1):
            cells = (self._cells_triode(a, b, m, vg, frozen) if sel.lambda_per_v == 0 else None)
            if cells is None:
                frozen = None
                j_wl, j_bl, m_new = self._cells(a, b, m, vg, max(CELL_TOL * delta, tol))
            else:
                j_wl, j_bl, m_new, junctions = cells
            r_w, r_b = self._residual(v, a, b, j_wl, j_bl, v_bl)
            da, db = self.net.solve(r_w, r_b)
            moves = (_max_abs(da), _max_abs(db), _max_abs(m_new.sub(m)))
            delta = max(moves)
            if not np.isfinite(moves).all():
                break
            a += da
            b += db
            m = m_new
            # junction currents change by at most g_j·(movement); once the nodes move (this step
            # and, at a contraction ≤ 1/2, all later ones together) by less than what changes
            # them by JUNCTION_FREEZE of the tolerance's current through the weakest cell, keep them
            if cells is not None and frozen is None and 2.0 * delta * junctions[2] <= jtol:
                frozen = junctions
            # linear convergence at rate rho = delta/prev leaves about delta·rho/(1 − rho)
            rho = delta / prev if prev > 0 else 1.0
            prev = delta
            if delta <= tol or (it > 2 and rho < 0.5 and delta * rho / (1.0 - rho) <= tol):
                self.stats.iterations = max(self.stats.iterations, it)
                self.stats.residual_v = max(self.stats.residual_v, delta)
                self.last_state = (a, b, m)
                return self.g_out * (b[:, -1] - v_bl)
        raise NotConverged(f"nonlinear tile solve did not converge in {self.max_iter} iterations "
                           f"(last node-voltage change {delta:.3e} V)")


def read_many(spec: TileSpec, g_dev_s: np.ndarray, v_in_v: np.ndarray, **kw) -> np.ndarray:
    """Exact nonlinear sense currents (tiles, n, cols) in A of several 1T1R tiles of ``spec``
    read together: device conductances ``g_dev_s`` (tiles, rows, cols) in S, inputs
    ``v_in_v`` (tiles, n, rows) in V. ``A_lin`` uses the linear mode's cells (the device in
    series with the level-1 on-conductance); ``kw`` goes to :class:`BlockSolver`."""
    from .mapping import effective_cell_conductance

    g = np.stack([spec.check_conductances(x) for x in np.asarray(g_dev_s, dtype=np.float64)])
    v = np.asarray(v_in_v, dtype=np.float64)
    if v.ndim != 3 or v.shape[0] != g.shape[0]:
        raise ValueError(f"inputs must have shape (tiles, n, rows) with {g.shape[0]} tiles, got {v.shape}")
    for x in v:
        spec.check_inputs(x)
    solver = BlockSolver(spec, g, effective_cell_conductance(spec, g), **kw)
    return solver.read(v).numpy()
