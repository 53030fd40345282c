"""Read disturb of programmed VTEAM arrays: a sequence of read pulses advances every
cell's state with its exact cell voltage from the wire network.

**1T1R arrays** (rectangular pulses): the network is not linear (the selectors), so there are
no transfer matrices and no row bounds (2 below); the passive bound (1) holds with the
selectors' bulk voltage as one more applied voltage (a channel's current follows its V_DS,
a junction's its bias, and the gates draw none). Every segment (see *Integration*) solves its
reads exactly with the selectors at the segment's conductances
(:class:`~spicecross.surrogate.nonlinear.BlockSolver`, gates at their DC voltage, in chunks of
:data:`SOLVE_CHUNK` reads), the memristor voltage ``V(wl) − V(mid)`` of every read and cell
giving its dose. The rest of this docstring describes 0T1R arrays.

A group of arrays shares one sequence of read vectors ``v`` (n, rows) in V (the G⁺ and G⁻
arrays of every column tile of one row tile see the same word-line voltages). Every read is a
pulse of plateau ``width_s`` with linear ramps ``rise_s``/``fall_s`` (0 for rectangular reads).

**Exact cell voltages.** For fixed cell conductances a read is a linear network, so
``V_cell[a, i, j] = Σ_k T[a, i, j, k]·v_k`` with the cell-voltage transfer matrices ``T``
(:func:`~spicecross.surrogate.dynamic.cell_voltage_transfer`: one factorization of each
array's nodal matrix, every unit input solved at once), built at the present conductances and
rebuilt once the states have moved by more than ``dw_max`` (see *Integration*).

**What needs no solve (bounds).**

1. *Passive network*: every node voltage lies between the smallest and the largest applied
   voltage (inputs and the 0 V sense ends), so every cell voltage lies in
   ``[−span, span]`` with ``span = max(0, max v) − min(0, min v)``. A read with
   ``span ≤ v_off`` and ``−span ≥ v_on`` moves no cell of any array (VTEAM's rate is exactly
   0 between the thresholds), and no ``T`` is built for a group none of whose reads can move
   anything (so reads below threshold leave the network exactly as programmed).
2. *Per read and row*, once ``T`` exists: with ``D = T − δ_ik`` (the wire network's
   deviation from the ideal ``V_cell = v_i``), ``P_ik = max_{a,j} max(D, 0)`` and
   ``N_ik = max_{a,j} max(−D, 0)``, every cell of row ``i`` obeys
   ``v_i − (N·v⁺ + P·v⁻)_i ≤ V_cell ≤ v_i + (P·v⁺ + N·v⁻)_i`` (``v⁺``, ``v⁻`` the positive and
   negative parts of the read). Rows whose interval lies within ``[v_on, v_off]`` are skipped
   (first for all reads at once, each read's parts replaced by their largest values); rows
   whose interval lies wholly above ``v_off`` are *surely switching*; the rest are solved cell
   by cell. The bounds cost 2·inputs products per read and row (4· with negative inputs)
   instead of the inputs·cols·arrays of the exact voltages; they and these decisions are made
   in one compiled pass (:func:`~spicecross.surrogate.read_disturb_kernel.classify_reads`,
   tested against :func:`~spicecross.surrogate.read_disturb_bounds.row_voltage_bounds`).

**Surely switching rows, aggregated.** With ``alpha_off = 1`` (pt_hf_ti) and rectangular pulses,
VTEAM's OFF rate ``k_off/x_span·(V/v_off − 1)`` is linear in ``V`` wherever ``V > v_off``, so
the dose of all surely switching reads of row ``i`` is ``T_i·Σv / v_off − n_i``: one product
per row instead of one per read. Otherwise (or for ramps, whose integral
``∫ rate dt = rise·k·u^α·u/((α+1)(1+u))``, ``u = V/v_th − 1``, is nonlinear in ``V``) every
such read is solved exactly as well. The same linearity makes the reads a row solves one by
one cheap where only OFF motion is possible: their dose is ``k_off·width/v_off`` times
``Σ max(V_cell − v_off, 0)``, made and summed in one compiled pass per row
(:func:`~spicecross.surrogate.read_disturb_kernel.excess_sums`).

**Pinned cells.** A 0T1R cell at the OFF bound (state 1) cannot move further OFF: in rows
where only OFF motion is possible its OFF dose would be clipped away, so the compiled pass does
not make it (the first MNIST convolution's arrays hold 98 % of their cells there: the unused
columns and the weaker cell of every differential pair). Doses made while a cell was pinned
are not used again once ON motion has moved it off the bound.

**Integration.** Within a segment of consecutive reads the conductances (so ``T``) and the
window (a function of the state) are frozen at the segment's start, every read's rate is
exact for those, and the state moves by the sum (explicit Euler over the reads). A segment
whose largest state change (within the state range [0, 1]: the part a bound clips away is no
change) exceeds ``dw_max`` is halved (its halves' doses, summed to judge it, kept), down to
single pulses, and a single pulse that still moves more is cut into ``⌈Δw/dw_max⌉`` time
sub-steps. ``T`` is rebuilt once any state has moved by
more than ``dw_max`` since it was built, array by array (also across calls,
:class:`~spicecross.surrogate.read_disturb_transfer.TransferCache`), so a segment's frozen
conductances are within ``2·dw_max`` of the state range of the true ones:
``|Δw_err| ≤ Δw · 2·dw_max · ρ``, ``ρ`` the relative change of the cells' rates per unit
state change through the wire drops (mV per state range against overdrives of tens of mV).
tests/test_read_disturb.py checks this against per-pulse integration and SPICE transients.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..circuit.tile import TileSpec
from ..devices.vteam import VTEAMParams
from ..threads import fork_join
from .cells import series_node_1t1r
from .dynamic import DynamicTileSurrogate
from .mapping import effective_cell_conductance
from .nonlinear import BlockSolver
from .read_disturb_bounds import inert_reads, rows_any_read_can_move
from .read_disturb_kernel import classify_reads, excess_sums
from .read_disturb_transfer import TransferCache

#: Reads per nonlinear solve of 1T1R arrays (their node voltages are kept per read).
SOLVE_CHUNK = 128
#: Segments of at least this many reads are dosed as two halves (kept should it be split).
SPLIT_MIN_READS = 256
#: Exact cell voltages of one segment from which its rows are dosed in two groups, the second
#: offered to another worker (:func:`~spicecross.threads.fork_join`).
FORK_MIN_VOLTAGES = 2 ** 22

__all__ = ["ReadPulse", "DisturbStats", "advance_arrays"]


@dataclass(frozen=True)
class ReadPulse:
    """One read pulse: plateau ``width_s`` (s, > 0) and linear ramps ``rise_s``/``fall_s``
    (s, ≥ 0) from and back to 0 V."""

    width_s: float
    rise_s: float = 0.0
    fall_s: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.width_s) and self.width_s > 0):
            raise ValueError(f"read pulse width must be a finite time > 0 s, got {self.width_s!r}")
        for name in ("rise_s", "fall_s"):
            x = getattr(self, name)
            if not (math.isfinite(x) and x >= 0):
                raise ValueError(f"read pulse {name} must be a finite time ≥ 0 s, got {x!r}")

    def scaled(self, f: float) -> "ReadPulse":
        return ReadPulse(self.width_s * f, self.rise_s * f, self.fall_s * f)


@dataclass
class DisturbStats:
    """What an update did: reads applied, reads that needed no solve by the passive bound,
    (read, row) pairs skipped by the row bound, solved exactly, aggregated as surely switching;
    transfer-matrix builds and segments integrated."""

    reads: int = 0
    inert_reads: int = 0
    rows_skipped: int = 0
    rows_exact: int = 0
    rows_aggregated: int = 0
    transfer_builds: int = 0
    segments: int = 0

    def add(self, other: "DisturbStats") -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))


class _Device:
    """VTEAM's bare rates (without window, 1/s) and windows, from the dynamic surrogate."""

    def __init__(self, spec: TileSpec, p: VTEAMParams) -> None:
        self.p = p
        self.dyn = DynamicTileSurrogate(spec, p)
        self.k_off = p.k_off_m_per_s / p.x_span_m
        self.k_on = p.k_on_m_per_s / p.x_span_m

    def windows(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The window factors of OFF (rate > 0) and ON (rate < 0) motion at states ``w``:
        DynamicTileSurrogate.rate_per_s at twice each threshold, where the bare rate is k."""
        f_off = self.dyn.rate_per_s(torch.full_like(w, 2 * self.p.v_off_v), w) / self.k_off
        f_on = self.dyn.rate_per_s(torch.full_like(w, 2 * self.p.v_on_v), w) / self.k_on
        return f_off, f_on

    def doses(self, v_cell: torch.Tensor, pulse: ReadPulse, off: bool = True, on: bool = True
              ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """State change without window (OFF part ≥ 0, ON part ≤ 0) of one pulse per cell
        voltage (V): plateau plus the ramps' exact integral at frozen conductances; a part not
        asked for (the caller knows no voltage passes its threshold: it is 0) is None."""
        p, ramps = self.p, pulse.rise_s + pulse.fall_s
        out = []
        for want, k, v_th, alpha in ((off, self.k_off, p.v_off_v, p.alpha_off),
                                     (on, self.k_on, p.v_on_v, p.alpha_on)):
            if not want:
                out.append(None)
                continue
            u = (v_cell / v_th).sub_(1.0).clamp_(min=0.0)
            if ramps:
                t_eff = pulse.width_s + ramps * u / ((alpha + 1.0) * (1.0 + u))
                out.append(k * u ** alpha * t_eff)
            else:                                # the same products, in place: u^1 is u
                out.append((u if alpha == 1.0 else u.pow_(alpha)).mul_(k).mul_(pulse.width_s))
        return out[0], out[1]


def _raw_1t1r(dev: _Device, spec: TileSpec, g: torch.Tensor, v: torch.Tensor,
              pulse: ReadPulse, wires: bool, stats: DisturbStats
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """OFF and ON doses without window (A, rows, cols) of rectangular reads ``v`` (n, rows) of
    1T1R arrays with memristor conductances ``g`` (A, rows, cols) in S: every read's memristor
    voltages from the exact nonlinear solve with the selectors (gates at their DC voltage;
    ideal wires: each cell alone between its input and 0 V)."""
    A, R, C = g.shape
    off, on = (torch.zeros((A, R, C), dtype=torch.float64) for _ in range(2))
    if wires:
        solver = BlockSolver(spec, g.numpy(), effective_cell_conductance(spec, g.numpy()),
                             dtype=torch.float64, linear="auto")
    for s in range(0, len(v), SOLVE_CHUNK):
        vc = v[s:s + SOLVE_CHUNK]                            # (m, R)
        if wires:
            solver.read(vc[None].expand(A, -1, -1).contiguous())
            a, _, m = solver.last_state                      # (A, R, m, C)
            v_mem = a - m
        else:
            a = vc.T[None, :, :, None].expand(A, R, len(vc), C).numpy()
            m = series_node_1t1r(spec, g.numpy()[:, :, None, :], a, 0.0)
            v_mem = torch.as_tensor(a - m)
        v_mem = torch.where(g[:, :, None, :] > 0, v_mem, torch.zeros_like(v_mem))
        d_off, d_on = dev.doses(v_mem, pulse)
        off += d_off.sum(2)
        on += d_on.sum(2)
    stats.rows_exact += len(v) * R
    return off, on


def _raw_0t1r(dev: _Device, cache: "TransferCache", v: torch.Tensor, pulse: ReadPulse,
              stats: DisturbStats, movable: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """OFF and ON doses without window (A, rows, cols) of reads ``v`` (n, inputs) at the
    frozen ``cache.t``: rows skipped, aggregated or solved by the row bounds (module doc).
    ``movable`` (A, rows, cols): where False (a cell pinned at the OFF bound) the OFF dose of
    rows where only OFF motion is possible may be left 0 (module doc, *Pinned cells*)."""
    p, t = dev.p, cache.t
    A, R, C, _ = t.shape
    off, on = torch.zeros((A, R, C), dtype=t.dtype), torch.zeros((A, R, C), dtype=t.dtype)
    rows = rows_any_read_can_move(p, cache.pos_neg, v, R)           # the others: skipped
    stats.rows_skipped += len(v) * (R - len(rows))
    if len(rows) == 0:
        return off, on
    linear_off = p.alpha_off == 1.0 and pulse.rise_s == 0.0 and pulse.fall_s == 0.0
    # per row: bound 2 of every read, the reads it solves cell by cell (live), the sum and count
    # of those that surely switch it (aggregated when the OFF rate is linear), whether any
    # solved read reaches v_off or v_on: one compiled pass
    pos, neg = cache.pos_neg
    live, sums, n_sure, wants, counts = classify_reads(v.numpy(), rows.numpy(), pos.numpy(),
                                                       neg.numpy(), p.v_off_v, p.v_on_v,
                                                       linear_off)
    stats.rows_skipped += int(counts[0])
    stats.rows_aggregated += int(counts[1])
    stats.rows_exact += int(counts[2])
    if counts[1]:
        v_sum = torch.einsum("aijk,ik->aij", t[:, rows], torch.from_numpy(sums))
        n_i = torch.from_numpy(n_sure).to(t.dtype)
        off[:, rows] += dev.k_off * pulse.width_s * (v_sum / p.v_off_v - n_i[None, :, None])
    by_row = cache.by_row()                                          # (R, inputs, A·C)
    wants_off, wants_on = wants[:, 0].tolist(), wants[:, 1].tolist()
    mov_rows = None if movable is None else movable.permute(1, 0, 2).reshape(R, A * C)[rows]
    any_mov = None if mov_rows is None else mov_rows.any(1).tolist()

    def dose_rows(js: list[int]) -> None:           # rows of their own: no two write one row
        summed = []              # OFF only, rate linear above v_off: Σ relu(V − v_off), compiled
        for j in js:
            i = int(rows[j])
            want_off, want_on = wants_off[j], wants_on[j]
            if linear_off and not want_on:
                if want_off and (any_mov is None or any_mov[j]):
                    summed.append(j)
                continue
            v_cell = v[torch.from_numpy(live[j])] @ by_row[i]
            d_off, d_on = dev.doses(v_cell, pulse, off=want_off, on=want_on)   # (m, A·C)
            if d_off is not None:
                off[:, i] += d_off.sum(0).view(A, C)
            if d_on is not None:
                on[:, i] += d_on.sum(0).view(A, C)
        if summed:
            excess = excess_sums(v.numpy(), by_row.numpy(), rows[summed].numpy(),
                                 live[summed], p.v_off_v,
                                 None if mov_rows is None else mov_rows[summed].numpy())
            off[:, rows[summed]] += (torch.from_numpy(excess).view(len(summed), A, C)
                                     .transpose(0, 1) * (dev.k_off * pulse.width_s / p.v_off_v))

    per_row = torch.from_numpy(live.sum(1))
    todo = torch.nonzero(per_row).flatten().tolist()
    work = torch.cumsum(per_row[todo], 0) if todo else per_row[:0]
    if todo and int(work[-1]) * A * C >= FORK_MIN_VOLTAGES and len(todo) > 1:
        cut = min(max(1, int(torch.searchsorted(work, work[-1] // 2))), len(todo) - 1)
        fork_join(lambda: dose_rows(todo[:cut]), lambda: dose_rows(todo[cut:]))
    else:
        dose_rows(todo)
    return off, on


def advance_arrays(spec: TileSpec, p: VTEAMParams, g_s: np.ndarray, v: np.ndarray,
                   pulse: ReadPulse, *, dw_max: float = 0.01, wires: bool = True,
                   cache: TransferCache | None = None, split_min_reads: int = SPLIT_MIN_READS
                   ) -> tuple[np.ndarray, DisturbStats]:
    """Conductances (A, rows, cols) in S of arrays programmed to ``g_s`` (A, rows, cols)
    after the reads ``v`` (n, k ≤ rows) in V, in order, each a ``pulse`` on the first ``k``
    word lines, the others at 0 V (only ``k`` columns of the transfer matrices are solved)
    (see module doc; cells of 0 S are open and stay so; cells that did not move keep their
    conductance exactly).
    1T1R arrays (``spec.cell``; rectangular pulses only): every segment solves its reads
    with the selectors at the segment's conductances (no transfer matrices, no row bounds).
    ``wires=False``: ideal wires, ``V_cell = v_i``. ``cache``: the group's transfer matrices
    from earlier calls (updated in place); an array's are rebuilt once any of its states has
    moved by more than ``dw_max`` since they were built, so every segment sees conductances within
    ``2·dw_max`` of the present ones. Segments of ≥ ``split_min_reads`` reads are dosed as
    their halves' doses, kept should the segment be split (equal up to the sums' order)."""
    if not dw_max > 0:
        raise ValueError(f"dw_max must be > 0, got {dw_max!r}")
    v = np.asarray(v, dtype=np.float64)
    if v.ndim != 2 or not 1 <= v.shape[1] <= spec.rows:
        raise ValueError(f"reads must be (n, k) with 1 ≤ k ≤ {spec.rows} word lines, got shape "
                         f"{v.shape}")
    selector = spec.cell == "1t1r"
    if selector and (pulse.rise_s or pulse.fall_s):
        raise ValueError(f"read disturb of 1t1r arrays takes rectangular pulses, got ramps of "
                         f"{pulse.rise_s!r} s and {pulse.fall_s!r} s")
    stats = DisturbStats(reads=len(v))
    g0 = torch.as_tensor(np.asarray(g_s, dtype=np.float64))
    v_bulk = spec.selector.v_bulk_v if selector else 0.0
    live = ~inert_reads(v, p, v_bulk) if len(v) else np.zeros(0, bool)
    stats.inert_reads = int(len(v) - live.sum())
    if not live.any():
        return np.asarray(g_s, dtype=np.float64).copy(), stats
    vl = torch.as_tensor(np.ascontiguousarray(v[live]))
    n_in = vl.shape[1]
    if selector:                                         # the solver drives every word line
        vl = torch.nn.functional.pad(vl, (0, spec.rows - n_in))
    dev = _Device(spec, p)
    open_cell = g0 <= 0
    w = w0 = dev.dyn.states_for_conductances(torch.where(open_cell, torch.ones_like(g0), g0))
    cache = TransferCache() if cache is None else cache

    def transfer() -> TransferCache:
        def g_of(idx: torch.Tensor) -> torch.Tensor:
            return torch.where(open_cell[idx], 0.0, dev.dyn.conductances(w[idx]))

        if cache.update(spec, w, n_in, dw_max, wires, g_of) and wires:
            stats.transfer_builds += 1
        return cache

    memo: dict = {}                     # (lo, hi, frozen) → doses of reads lo:hi
    # bumped whenever the 1T1R conductances change, or a pinned 0T1R cell leaves the OFF
    # bound (doses made while it was pinned may lack its OFF part)
    frozen = [0]

    def doses(lo: int, hi: int, pulse_seg: ReadPulse) -> tuple[torch.Tensor, torch.Tensor]:
        if selector:
            g = torch.where(open_cell, torch.zeros_like(w), dev.dyn.conductances(w))
            return _raw_1t1r(dev, spec, g, vl[lo:hi], pulse_seg, wires, stats)
        return _raw_0t1r(dev, transfer(), vl[lo:hi], pulse_seg, stats, movable=w < 1.0)

    def segment_doses(lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Doses of reads lo:hi (a long segment's as its halves', kept: one pass, not two)."""
        if not selector and transfer().t is not memo.get("cache_t"):
            memo.clear()                               # T rebuilt: the kept doses are stale
            memo["cache_t"] = cache.t
        got = memo.pop((lo, hi, frozen[0]), None)
        if got is not None:
            return got
        if hi - lo < max(2, split_min_reads):
            return doses(lo, hi, pulse)
        mid = (lo + hi) // 2
        first, second = doses(lo, mid, pulse), doses(mid, hi, pulse)
        memo[(lo, mid, frozen[0])], memo[(mid, hi, frozen[0])] = first, second
        return first[0] + second[0], first[1] + second[1]

    def change(off_on: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        f_off, f_on = dev.windows(w)
        return off_on[0] * f_off + off_on[1] * f_on

    def step(dw: torch.Tensor) -> torch.Tensor:
        stats.segments += 1
        w_new = (w + dw).clamp(0.0, 1.0)
        if selector or bool(((w >= 1.0) & (w_new < 1.0)).any()):
            frozen[0] += 1                  # 1T1R doses depend on the present w; unpinned cells
        return w_new

    def moved(dw: torch.Tensor) -> float:
        """The largest state change ``dw`` makes (within the state range)."""
        return float(((w + dw).clamp(0.0, 1.0) - w).abs().max())

    stack = [(0, len(vl))]
    while stack:
        lo, hi = stack.pop()
        dw = change(segment_doses(lo, hi))
        big = moved(dw)
        if big > dw_max and hi - lo > 1:
            mid = (lo + hi) // 2
            stack += [(mid, hi), (lo, mid)]                  # first half next, same T
            continue
        if big > dw_max:                                     # one pulse: cut it in time
            n = math.ceil(big / dw_max)
            part = pulse.scaled(1.0 / n)
            for k in range(n):
                dw = dw / n if k == 0 else change(doses(lo, hi, part))
                w = step(dw)
            continue
        w = step(dw)
    g = torch.where(open_cell | (w == w0), g0, dev.dyn.conductances(w))   # unmoved: as given
    return g.numpy(), stats
