"""The dynamic surrogate: VTEAM tiles under read or write pulses, batched in torch.

For every time step the cell voltages come from the exact wire network (every word- and
bit-line segment, driver and sense resistance of the :class:`~spicecross.circuit.tile.TileSpec`)
with the cells' present conductances, and the VTEAM state equation (window included, state
clipped to [0, 1]) advances every cell of every tile at once. The pulses are those of a
:class:`~spicecross.spice.tile_transient.PulseTrain`, the same piecewise-linear sources the
SPICE transients apply (word lines at their drivers; for write pulses also the bit lines at
their sense ends, ``PulseTrain.v_bitlines_v``), so the two answer the same question: per
pulse the sense currents at the plateau's end (A) and the charge through each sense source
(C), and the final states.

1T1R tiles: the memristor voltages come from the exact nonlinear solve of the tile with its
level-1 selectors, the gate lines at ``PulseTrain.v_gates_v`` (ramped like the word lines) or
at the selector's DC ``v_gate_v``, warm-started from the previous step
(:mod:`~spicecross.surrogate.dynamic_1t1r`); the time stepping is the same.

The network solve (tiles above :data:`DENSE_MAX_CELLS` cells; smaller ones are one dense
solve of the same matrix). Ordering the nodes row by row, ``[word line i (cols), bit line i (cols)]``,
the nodal matrix is block tridiagonal: row ``i``'s block holds its word-line chain, its cells
and the bit-line nodes' own terms; neighbouring rows couple only through the bit-line segments
(``−g_b·I`` on the bit-line part). A block Cholesky sweep (block Thomas algorithm: one
``2·cols`` Cholesky per row, batched over tiles) solves it exactly in O(rows·cols³) per tile.

Time stepping. Each pulse is cut at its corners (gap, rise, plateau, fall); the rise, plateau
and fall are split into at least ``substeps_ramp``/``substeps_plateau`` steps of Heun's method
(explicit trapezoidal rule: the cell voltages are recomputed at both ends of every step, after
the conductances moved), and into more when the fastest cell, at the pulse's start under its
plateau voltages, would move by more than ``dw_max`` of its range in one step (the fastest
cell of the whole batch, so a batch answers like its tiles alone to integration error) (ON switching of
pt_hf_ti is strongly nonlinear, alpha_on = 3). In the gaps the inputs are 0 V and nothing moves.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..circuit.tile import TileSpec
from ..devices.vteam import VTEAMParams, get_parameter_set
from ..threads import limited_threads, threads_for
from .cell_transfer import block_cell_voltage_transfer, line_diagonals

#: Below this many flops per block-Cholesky step (batch · (2·cols)³) one thread is faster: the
#: thread pool's overhead dominates small matrices (measured 1.4 ms vs 37 ms per 8×8 solve with
#: 2 threads on 2 shared cores).
SINGLE_THREAD_FLOPS = 2e7

#: Tiles of at most this many cells are solved as one dense matrix: the block sweep's Python
#: loop over the rows costs more than the whole solve there (measured 4×4: 3.2 ms vs 5.9 ms,
#: 8×8: 3.7 vs 10.3 ms per solve; 16×16: 52 vs 23 ms, on 2 loaded cores).
DENSE_MAX_CELLS = 100

__all__ = ["DynamicTileSurrogate", "PulseResult", "cell_voltage_transfer", "cell_voltages",
           "DENSE_MAX_CELLS"]


def word_line_blocks(spec: TileSpec, g: torch.Tensor) -> torch.Tensor:
    """The word-line blocks (B, rows, cols, cols) in S of the nodal matrix (each word line's
    chain and its cells, whose other ends are the bit-line nodes)."""
    C = spec.cols
    j = torch.arange(C)
    d = g.new_zeros(g.shape + (C,))
    d[..., j, j] = line_diagonals(spec, g.dtype)[0] + g
    if C > 1:
        d[..., j[:-1], j[1:]] = -1.0 / spec.r_wire_wl_ohm
        d[..., j[1:], j[:-1]] = -1.0 / spec.r_wire_wl_ohm
    return d


def nodal_blocks(spec: TileSpec, g: torch.Tensor) -> torch.Tensor:
    """Diagonal blocks (B, rows, 2·cols, 2·cols) in S of the row-ordered nodal matrix."""
    R, C = spec.rows, spec.cols
    d, j = g.new_zeros((g.shape[0], R, 2 * C, 2 * C)), torch.arange(C)
    d[:, :, :C, :C] = word_line_blocks(spec, g)
    d[:, :, C + j, C + j] = line_diagonals(spec, g.dtype)[1][:, None] + g
    d[:, :, j, C + j] = -g
    d[:, :, C + j, j] = -g
    return d


def dense_cholesky(d: torch.Tensor, g_b: float) -> torch.Tensor:
    """Cholesky factor (B, R·2C, R·2C) of the block-tridiagonal nodal matrix (diagonal blocks
    ``d`` (B, R, 2C, 2C) in S, bit-line couplings −g_b between neighbouring rows) assembled
    whole, nodes row by row."""
    B, R, n, _ = d.shape
    C = n // 2
    a = d.new_zeros((B, R, n, R, n))
    rows = torch.arange(R)
    a[:, rows, :, rows, :] = d.transpose(0, 1)
    bl = torch.arange(C, n)
    a[:, rows[:-1, None], bl, rows[1:, None], bl] = -g_b
    a[:, rows[1:, None], bl, rows[:-1, None], bl] = -g_b
    # the nodal matrix is symmetric positive definite: Cholesky, not LU (torch 2.13's MKL LU
    # returns garbage for matrices of ≥ ~200 after torch.set_num_threads(n ≥ 2); spicecross.threads)
    return torch.linalg.cholesky(a.reshape(B, R * n, R * n))


def _dense_solve(d: torch.Tensor, rhs: torch.Tensor, g_b: float) -> torch.Tensor:
    """Node voltages (B, R, 2C, K) of the block-tridiagonal system (diagonal blocks ``d``,
    bit-line couplings −g_b between neighbouring rows) assembled whole and solved at once."""
    B, R, n, _ = d.shape
    x = torch.cholesky_solve(rhs.reshape(B, R * n, -1), dense_cholesky(d, g_b))
    return x.reshape(B, R, n, -1)


def _node_voltages(spec: TileSpec, g_s: torch.Tensor, rhs: torch.Tensor, method: str
                   ) -> torch.Tensor:
    """Node voltages (B, rows, 2·cols, K) in V of the row-ordered nodal system of tiles with
    cell conductances ``g_s`` (B, rows, cols) for ``K`` right-hand sides ``rhs`` (B, rows,
    2·cols, K) of injected currents (A): one factorization, every right-hand side (see
    :func:`cell_voltages` for ``method``). ``spec`` already ``for_solvers()``."""
    R, C = spec.rows, spec.cols
    g_b = 1.0 / spec.r_wire_bl_ohm
    d = nodal_blocks(spec, g_s)
    if method not in ("auto", "block", "dense"):
        raise ValueError(f"method must be 'auto', 'block' or 'dense', got {method!r}")
    if method == "dense" or (method == "auto" and R * C <= DENSE_MAX_CELLS):
        return _dense_solve(d, rhs, g_b)
    chols, ys = [], []
    s, y = d[:, 0], rhs[:, 0]
    for i in range(R):
        if i:
            # only the bit-line block of S_{i−1}⁻¹ and of S_{i−1}⁻¹·y is needed: with the
            # lower Cholesky factor L, (L⁻¹)_bb = (L_bb)⁻¹ and (L⁻ᵀ)_b· = L_bb⁻ᵀ on the
            # bit-line part (C³ instead of (2C)³ per row)
            l_bb = chols[-1][:, C:, C:]
            s = d[:, i].clone()
            s[:, C:, C:] -= g_b * g_b * torch.cholesky_inverse(l_bb)    # (S_{i−1}⁻¹)_bb
            z = torch.linalg.solve_triangular(chols[-1], ys[-1], upper=False)[:, C:]
            y = rhs[:, i].clone()
            y[:, C:] += g_b * torch.linalg.solve_triangular(l_bb.mT, z, upper=True)
        chols.append(torch.linalg.cholesky(s))
        ys.append(y)
    x = [None] * R
    x[R - 1] = torch.cholesky_solve(ys[R - 1], chols[R - 1])
    for i in range(R - 2, -1, -1):
        y = ys[i].clone()
        y[:, C:] += g_b * x[i + 1][:, C:]
        x[i] = torch.cholesky_solve(y, chols[i])
    return torch.stack(x, dim=1)                                       # (B, R, 2C, K)


def cell_voltages(spec: TileSpec, g_s: torch.Tensor, v_in_v: torch.Tensor,
                  v_bl_v: torch.Tensor | None = None, *, method: str = "auto"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell voltages V(wl) − V(bl) (B, rows, cols) in V and sense currents (B, cols) in A of
    tiles with linear cell conductances ``g_s`` (B, rows, cols) in S under inputs ``v_in_v``
    (B, rows) in V, the sense ends of the bit lines at ``v_bl_v`` (B, cols) in V (default 0 V,
    a read; a write scheme drives them): the exact nodal solve, by block Cholesky over the
    rows (``method='block'``), or for tiles of at most :data:`DENSE_MAX_CELLS` cells the whole
    matrix in one dense solve (``'dense'``; ``'auto'`` picks by size)."""
    spec = spec.for_solvers()
    R, C = spec.rows, spec.cols
    g_in = 1.0 / (spec.r_driver_ohm + spec.r_wire_wl_ohm)
    g_out = 1.0 / (spec.r_wire_bl_ohm + spec.r_sense_ohm)
    rhs = g_s.new_zeros((g_s.shape[0], R, 2 * C, 1))
    rhs[:, :, 0, 0] = g_in * v_in_v
    if v_bl_v is not None:
        rhs[:, R - 1, C:, 0] += g_out * v_bl_v
    nodes = _node_voltages(spec, g_s, rhs, method)[..., 0]             # (B, R, 2C)
    i_sense = g_out * (nodes[:, R - 1, C:] - (0.0 if v_bl_v is None else v_bl_v))
    return nodes[..., :C] - nodes[..., C:], i_sense


def cell_voltage_transfer(spec: TileSpec, g_s: torch.Tensor, *, method: str = "auto",
                          inputs: int | None = None) -> torch.Tensor:
    """The cell-voltage transfer matrices (B, rows, cols, inputs), V per V, of read tiles (sense
    ends at 0 V) with cell conductances ``g_s`` (B, rows, cols) in S: ``V_cell[b, i, j] =
    Σ_k T[b, i, j, k]·v_in[b, k]``, the exact solve of :func:`cell_voltages` for every unit
    input at once (one factorization per tile; ``'block'``:
    :func:`~spicecross.surrogate.cell_transfer.block_cell_voltage_transfer`). ``inputs``
    (default ``rows``): only the first ``inputs`` word lines are driven (the others at 0 V):
    only their columns are solved."""
    spec = spec.for_solvers()
    R, C = spec.rows, spec.cols
    n_in = R if inputs is None else inputs
    if isinstance(n_in, bool) or not isinstance(n_in, int) or not 1 <= n_in <= R:
        raise ValueError(f"inputs must be a number of word lines in 1..{R}, got {inputs!r}")
    g_in = 1.0 / (spec.r_driver_ohm + spec.r_wire_wl_ohm)
    k = torch.arange(n_in)
    if method == "dense" or (method == "auto" and R * C <= DENSE_MAX_CELLS):
        rhs = g_s.new_zeros((g_s.shape[0], R, 2 * C, n_in))
        rhs[:, k, 0, k] = g_in
        nodes = _node_voltages(spec, g_s, rhs, "dense")                # (B, R, 2C, inputs)
        return nodes[:, :, :C] - nodes[:, :, C:]
    if method not in ("auto", "block"):
        raise ValueError(f"method must be 'auto', 'block' or 'dense', got {method!r}")
    return block_cell_voltage_transfer(spec, g_s, n_in)[0]


@dataclass
class PulseResult:
    """Per pulse the sense currents at the plateau's end ``currents_a`` (B, n_pulses, cols)
    and the charge ``charge_c`` (B, n_pulses, cols); the final normalised states ``w_final``
    (B, rows, cols, in [0, 1]) and conductances ``g_final_s`` (B, rows, cols) in S."""

    currents_a: np.ndarray
    charge_c: np.ndarray
    w_final: np.ndarray
    g_final_s: np.ndarray


class DynamicTileSurrogate:
    """VTEAM tiles of one ``spec`` under read or write pulses; ``device_params`` a
    VTEAMParams (window included; default the set ``spec.device_set``). Float64 throughout.
    0T1R: the cell voltages from the linear wire network (:func:`cell_voltages`). 1T1R: the
    memristor voltages from the exact nonlinear solve with the selectors, their gates at the
    train's ``v_gate_v`` pulses (or the selector's DC ``v_gate_v``), warm-started from the
    last step (:class:`~spicecross.surrogate.dynamic_1t1r.SelectorTileSolve`).

    Cycle-to-cycle variability (``c2c_sigma`` > 0): every pulse's state change of every cell,
    Δw, becomes Δw·(1 + c2c_sigma·ξ), ξ a standard normal drawn per cell and pulse from a
    generator seeded by ``seed`` (the state reached scatters around the deterministic one in
    proportion to how far the pulse moved it; a cell the pulse left alone stays put). The
    generator lives with the surrogate, so successive calls draw new ξ."""

    def __init__(self, spec: TileSpec, device_params: VTEAMParams | None = None, *,
                 substeps_plateau: int = 20, substeps_ramp: int = 16, dw_max: float = 5e-4,
                 max_substeps: int = 5000, c2c_sigma: float = 0.0,
                 seed: int | None = None) -> None:
        if substeps_plateau < 1 or substeps_ramp < 1:
            raise ValueError("substeps_plateau and substeps_ramp must be ≥ 1")
        self.spec = spec
        self.params = get_parameter_set(spec.device_set) if device_params is None \
            else device_params
        self.substeps_plateau = int(substeps_plateau)
        self.substeps_ramp = int(substeps_ramp)
        if not dw_max > 0:
            raise ValueError(f"dw_max must be > 0, got {dw_max!r}")
        self.dw_max = float(dw_max)
        self.max_substeps = int(max_substeps)
        if not (np.isfinite(c2c_sigma) and c2c_sigma >= 0):
            raise ValueError(f"c2c_sigma must be a finite number ≥ 0, got {c2c_sigma!r}")
        self.c2c_sigma = float(c2c_sigma)
        self._gen = torch.Generator().manual_seed(0 if seed is None else int(seed))

    # -- the device in torch (the same equations as spicecross.devices.vteam) ----------------
    def states_for_conductances(self, g_s: torch.Tensor) -> torch.Tensor:
        """Normalised states w in [0, 1] of conductances (S), G clipped to [1/r_off, 1/r_on]."""
        p = self.params
        r = 1.0 / g_s.clamp(1.0 / p.r_off_ohm, 1.0 / p.r_on_ohm)
        if p.r_model == "exponential":
            w = torch.log(r / p.r_on_ohm) / p.lambda_
        else:
            w = (r - p.r_on_ohm) / (p.r_off_ohm - p.r_on_ohm)
        return w.clamp(0.0, 1.0)

    def conductances(self, w: torch.Tensor) -> torch.Tensor:
        """1/R(w) in S."""
        p = self.params
        if p.r_model == "exponential":
            return 1.0 / (p.r_on_ohm * torch.exp(p.lambda_ * w))
        return 1.0 / (p.r_on_ohm + (p.r_off_ohm - p.r_on_ohm) * w)

    def rate_per_s(self, v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """dw/dt (1/s) at cell voltages ``v`` (V) and states ``w``, window applied."""
        p = self.params
        off = torch.clamp(v / p.v_off_v - 1.0, min=0.0) ** p.alpha_off
        on = torch.clamp(v / p.v_on_v - 1.0, min=0.0) ** p.alpha_on
        rate = torch.where(v > p.v_off_v, p.k_off_m_per_s * off,
                           torch.where(v < p.v_on_v, p.k_on_m_per_s * on,
                                       torch.zeros_like(v))) / p.x_span_m
        wc = w.clamp(0.0, 1.0)
        p2 = 2.0 * p.window_p
        if p.window == "joglekar":
            rate = rate * (1.0 - (2.0 * wc - 1.0).abs() ** p2)
        elif p.window == "biolek":
            rate = rate * (1.0 - torch.where(rate > 0, wc, 1.0 - wc) ** p2)
        elif p.window == "prodromakis":
            rate = rate * (1.0 - ((wc - 0.5) ** 2 + 0.75) ** p.window_p)
        return rate

    # -- pulses ----------------------------------------------------------------------------
    def _segments(self, train) -> list[tuple[float, float, float, int, bool]]:
        """One pulse's driven segments: (t0, t1, fraction of the plateau at t0 and t1,
        steps, ends at the plateau's end); the fraction scales the plateau voltages."""
        r, w, f = train.rise_s, train.width_s, train.fall_s
        return [(0.0, r, (0.0, 1.0), self.substeps_ramp, False),
                (r, r + w, (1.0, 1.0), self.substeps_plateau, True),
                (r + w, r + w + f, (1.0, 0.0), self.substeps_ramp, False)]

    def run_pulses(self, g_s, train) -> PulseResult:
        """Apply the :class:`~spicecross.spice.tile_transient.PulseTrain` ``train`` to tiles
        programmed to ``g_s`` (rows, cols) or (B, rows, cols) in S. The train's plateaus
        (n_pulses, rows) are shared by all tiles, or give ``train.v_pulses_v`` per tile by
        passing a list of trains of the same timing instead."""
        g0 = torch.as_tensor(np.asarray(g_s, dtype=np.float64))
        single = g0.ndim == 2
        g0 = g0.reshape(-1, self.spec.rows, self.spec.cols)
        trains = list(train) if isinstance(train, (list, tuple)) else [train] * g0.shape[0]
        if len(trains) != g0.shape[0]:
            raise ValueError(f"{len(trains)} pulse trains for {g0.shape[0]} tiles")
        plateaus = torch.as_tensor(np.stack([t.plateaus_v for t in trains], axis=1))  # (P, B, R)
        if plateaus.shape[-1] != self.spec.rows:
            raise ValueError(f"the pulse train has {plateaus.shape[-1]} inputs, the tile "
                             f"{self.spec.rows} rows")
        bl = [t.bitline_plateaus_v for t in trains]
        bl = torch.as_tensor(np.stack([np.zeros((t.n_pulses, self.spec.cols)) if b is None else b
                                       for t, b in zip(trains, bl)], axis=1))     # (P, B, C)
        if any(t.v_gates_v is not None for t in trains) and self.spec.cell != "1t1r":
            raise ValueError(f"gate pulses need a 1t1r tile, the tile is {self.spec.cell}")
        # gates at fraction a of the plateau: dc + a·pulsed (V), (P, B, R) each; a train
        # without gate pulses holds the selector's DC gate voltage, one with them ramps them
        gate_dc = torch.as_tensor(np.stack([np.full_like(t.plateaus_v, 0.0 if t.v_gates_v is not None
                                                         else self.spec.selector.v_gate_v)
                                            for t in trains], axis=1))
        gate_pulse = torch.as_tensor(np.stack([np.zeros_like(t.plateaus_v) if t.v_gates_v is None
                                               else t.v_gates_v for t in trains], axis=1))
        ref = trains[0]
        work = g0.shape[0] * (2 * self.spec.cols) ** 3
        with limited_threads(1 if work < SINGLE_THREAD_FLOPS else threads_for()):
            out = self._run(g0, plateaus, bl, (gate_dc, gate_pulse), ref)
        if single:
            out = PulseResult(out.currents_a[0], out.charge_c[0], out.w_final[0], out.g_final_s[0])
        return out

    def _run(self, g0: torch.Tensor, plateaus: torch.Tensor, bl: torch.Tensor, gates, ref
             ) -> PulseResult:
        open_cell = g0 <= 0
        w = self.states_for_conductances(torch.where(open_cell, torch.ones_like(g0), g0))
        n_p = plateaus.shape[0]
        currents = torch.zeros((g0.shape[0], n_p, self.spec.cols), dtype=torch.float64)
        charge = torch.zeros_like(currents)

        from .dynamic_1t1r import SelectorTileSolve

        selector = SelectorTileSolve(self.spec) if self.spec.cell == "1t1r" else None

        def solve(w_now, a, k):
            g = torch.where(open_cell, torch.zeros_like(w_now), self.conductances(w_now))
            if selector is not None:
                return selector(g, a * plateaus[k], a * bl[k], gates[0][k] + a * gates[1][k])
            return cell_voltages(self.spec, g, a * plateaus[k], a * bl[k])

        for k in range(n_p):
            w_start = w
            v_full, _ = solve(w, 1.0, k)
            fastest = float(self.rate_per_s(v_full, w).abs().max())
            for t0, t1, (a0, a1), n_min, at_sample in self._segments(ref):
                n = int(min(self.max_substeps,
                            max(n_min, np.ceil(fastest * (t1 - t0) / self.dw_max))))
                h = (t1 - t0) / n
                v_cell, i_sense = solve(w, a0, k)
                for m in range(n):
                    s1 = a0 + (a1 - a0) * (m + 1) / n
                    k1 = self.rate_per_s(v_cell, w)
                    w_pred = (w + h * k1).clamp(0.0, 1.0)
                    v_pred, _ = solve(w_pred, s1, k)
                    k2 = self.rate_per_s(v_pred, w_pred)
                    w = (w + 0.5 * h * (k1 + k2)).clamp(0.0, 1.0)
                    i_prev = i_sense
                    v_cell, i_sense = solve(w, s1, k)
                    charge[:, k] += 0.5 * h * (i_prev + i_sense)
                if at_sample:
                    currents[:, k] = i_sense
            if self.c2c_sigma > 0:
                xi = torch.randn(w.shape, generator=self._gen, dtype=w.dtype)
                w = (w_start + (w - w_start) * (1.0 + self.c2c_sigma * xi)).clamp(0.0, 1.0)
        g_final = torch.where(open_cell, torch.zeros_like(w), self.conductances(w))
        w_final = torch.where(open_cell, torch.full_like(w, float("nan")), w)
        return PulseResult(currents.numpy(), charge.numpy(), w_final.numpy(), g_final.numpy())
