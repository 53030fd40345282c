"""Programming VTEAM tiles: half-select write schemes and write-verify, in ngspice
(behavioural VTEAM), VACASK (Verilog-A VTEAM) or the dynamic surrogate.

Write schemes (the line voltages of one write pulse of amplitude ``V`` to cell (i, j); a
positive ``V`` RESETs the cell towards r_off, a negative one SETs it towards r_on):

* ``v2`` (0T1R): word line i at V, bit line j at 0 V, every other line at V/2. The cells of
  row i and column j (half-selected) see V/2, the rest 0 V.
* ``v3`` (0T1R): word line i at V, bit line j at 0 V, the other word lines at V/3, the other
  bit lines at 2V/3. Half-selected cells see V/3, the rest −V/3: with |V|/3 below both VTEAM
  thresholds nothing but the selected cell moves (up to the wires' IR drop).
* ``gate`` (1T1R): only gate line i on (``v_gate_v``), every other gate at 0 V. RESET: word
  line i at V, bit line j at 0 V, the other bit lines at V (row i's other cells see 0 V);
  SET: every word line at 0 V, bit line j at |V| (the cell sees −|V|), the other bit lines at
  0 V, so every line stays ≥ 0 V (no forward-biased selector junctions). VACASK 0.3.4's
  sp_mos1 can fail to converge in these transients when an off selector's drain is driven
  above ~1 V, and where it sets in depends on the machine's rounding (a 2×2 tile, RESET from
  state 0.375: at 1.0 V it ran and at 1.1 V aborted on one machine, at 1.0 V it aborted on
  another of the same type (2026-11-26); ngspice runs all of them): write 1T1R tiles in VACASK at
  |V| ≤ 1.0 V, and with ngspice where VACASK aborts.

Bit lines are driven at their sense ends (the 0 V sense sources of a read carry the write
voltages), word lines at their drivers: the wires are the tile's own.

Write-verify (:func:`program_tile`): for every target cell in turn, read it (its word line at
``v_read_v``, below threshold, every other line at 0 V; its conductance estimated from its
bit line's current with the cell's series wire, driver, sense and selector resistance taken
off), stop when it is within ``tolerance`` of the conductance range of its target, otherwise
pulse it towards the target: polarity from the sign of the state error, width from the state
error over the cell's switching rate (first the VTEAM rate at the write voltage, then the rate
the last pulse of that polarity achieved, as read back), until the pulse budget is spent.

The surrogate (:mod:`~spicecross.surrogate.programming`) writes 0T1R tiles with the wire
network and 1T1R tiles with the selectors in the solve.

This module imports neither torch nor matplotlib (the surrogate writers do, when asked for).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..circuit.tile import TileSpec
from ..devices.vteam import (VTEAMParams, conductance_at_state_s, get_parameter_set,
                             state_at_conductance, state_derivative_m_per_s)
from .tile_transient import PulseTrain, run_tile_transient

__all__ = ["SCHEMES", "BACKENDS", "line_voltages", "write_train", "open_loop_train",
           "SpiceWriter", "make_writer", "ProgrammingResult", "program_tile"]

SCHEMES = ("v2", "v3", "gate")
BACKENDS = ("surrogate", "ngspice", "vacask")
#: Ramps (rise and fall) and the 0 V gap before a write pulse, as fractions of its width.
RAMP_FRACTION = 0.1
GAP_FRACTION = 0.1
#: A write pulse aims at this fraction of the state error (under-shoot, so the next read
#: corrects rather than reverses).
WIDTH_GAIN = 0.8
#: Limits of a write pulse's width in units of 1/rate (rate: the VTEAM rate at the write voltage,
#: normalised states per s): from 1e-4 of the range to 100 ranges (a cell the wires or its
#: selector starve gets long pulses), and at most this factor longer than the last one.
WIDTH_MIN_RANGES, WIDTH_MAX_RANGES, WIDTH_GROWTH = 1e-4, 100.0, 10.0


def _check_scheme(spec: TileSpec, scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    want = "1t1r" if scheme == "gate" else "0t1r"
    if spec.cell != want:
        raise ValueError(f"scheme {scheme!r} writes {want} tiles, the tile is {spec.cell}")


def line_voltages(spec: TileSpec, scheme: str, row: int, col: int, v_write_v: float,
                  v_gate_v: float | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(word lines (rows,), bit lines (cols,), gates (rows,) or None) in V of one write pulse of
    ``v_write_v`` (V) to cell (row, col) in ``scheme`` (see the module docstring)."""
    _check_scheme(spec, scheme)
    if not (0 <= row < spec.rows and 0 <= col < spec.cols):
        raise ValueError(f"cell ({row}, {col}) is outside the {spec.rows}x{spec.cols} tile")
    v = float(v_write_v)
    if not np.isfinite(v) or v == 0:
        raise ValueError(f"the write voltage must be finite and not 0 V, got {v_write_v!r}")
    if scheme in ("v2", "v3"):
        wl_other, bl_other = (v / 2, v / 2) if scheme == "v2" else (v / 3, 2 * v / 3)
        wl = np.full(spec.rows, wl_other)
        bl = np.full(spec.cols, bl_other)
        wl[row], bl[col] = v, 0.0
        return wl, bl, None
    gates = np.zeros(spec.rows)
    gates[row] = spec.selector.v_gate_v if v_gate_v is None else float(v_gate_v)
    wl, bl = np.zeros(spec.rows), np.zeros(spec.cols)
    if v > 0:
        wl[row] = v
        bl[:] = v
        bl[col] = 0.0
    else:
        bl[col] = -v
    return wl, bl, gates


def _train(pulses: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]], width_s: float
           ) -> PulseTrain:
    wl, bl, gates = (np.stack(x) if x[0] is not None else None for x in zip(*pulses))
    return PulseTrain(wl, width_s, RAMP_FRACTION * width_s, RAMP_FRACTION * width_s,
                      GAP_FRACTION * width_s, v_bitlines_v=bl, v_gates_v=gates)


def write_train(spec: TileSpec, scheme: str, row: int, col: int, v_write_v: float,
                width_s: float, v_gate_v: float | None = None) -> PulseTrain:
    """One write pulse (plateau ``width_s`` in s, ramps and gap of :data:`RAMP_FRACTION` and
    :data:`GAP_FRACTION` of it) to cell (row, col)."""
    return _train([line_voltages(spec, scheme, row, col, v_write_v, v_gate_v)], width_s)


def open_loop_train(spec: TileSpec, scheme: str, cells: list[tuple[int, int]], v_write_v: float,
                    width_s: float, v_gate_v: float | None = None) -> PulseTrain:
    """One pulse of ``v_write_v`` (V) and ``width_s`` (s) to each of ``cells`` in turn, as one
    train (one SPICE run): programming without verify."""
    return _train([line_voltages(spec, scheme, i, j, v_write_v, v_gate_v) for i, j in cells],
                  width_s)


class SpiceWriter:
    """Write pulses as VTEAM tile transients and verify reads as ``.op`` reads of the tile with
    the cells' present conductances, in ``simulator`` ('ngspice' or 'vacask'), through the
    solve cache ``cache_dir`` (None: no cache). States are normalised, in [0, 1]."""

    def __init__(self, simulator: str, spec: TileSpec, params: VTEAMParams,
                 cache_dir: Path | str | None = None) -> None:
        self.simulator, self.spec, self.params, self.cache_dir = simulator, spec, params, cache_dir
        self.name = simulator
        self.sim_s = 0.0

    def conductances(self, w: np.ndarray) -> np.ndarray:
        p = self.params
        return conductance_at_state_s(p, w)

    def pulse(self, w: np.ndarray, train: PulseTrain) -> np.ndarray:
        from .simulators import SimulationError

        try:
            res = run_tile_transient(self.simulator, self.spec, self.conductances(w), train,
                                     device_params=self.params, cache_dir=self.cache_dir)
        except SimulationError as exc:
            if self.simulator != "vacask" or self.spec.cell != "1t1r":
                raise
            raise SimulationError(f"{exc} (VACASK 0.3.4's sp_mos1 can fail to converge when an "
                                  f"off selector's drain is driven above ~1 V: write 1t1r tiles "
                                  f"at |V| ≤ 1.0 V in VACASK, or use ngspice)") from exc
        self.sim_s += 0.0 if res.cached else res.sim_s
        return res.w_final

    def read(self, w: np.ndarray, v_in_v: np.ndarray) -> np.ndarray:
        from .simulators import SimulationError
        from .solve import solve_tile

        res = solve_tile(self.spec, self.conductances(w), v_in_v, self.simulator,
                         self.cache_dir)
        if not res.ok:
            raise SimulationError(f"{self.simulator}: verify read failed: {res.error}")
        self.sim_s += res.seconds
        return res.sense_currents_a


def make_writer(backend: str, spec: TileSpec, params: VTEAMParams | None = None, *,
                cache_dir: Path | str | None = None, c2c_sigma: float = 0.0,
                seed: int | None = None):
    """The writer of ``backend`` ('surrogate', 'ngspice' or 'vacask'). Cycle-to-cycle
    variability (``c2c_sigma``, ``seed``) is a surrogate option."""
    p = get_parameter_set(spec.device_set) if params is None else params
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "surrogate":
        from ..surrogate.programming import SurrogateWriter

        return SurrogateWriter(spec, p, c2c_sigma=c2c_sigma, seed=seed)
    if c2c_sigma:
        raise ValueError(f"cycle-to-cycle variability (c2c sigma {c2c_sigma!r}) is a surrogate "
                         f"option; the {backend} devices are deterministic")
    return SpiceWriter(backend, spec, p, cache_dir)


@dataclass
class ProgrammingResult:
    """The outcome of write-verify on one tile. Per cell (rows, cols): normalised states
    ``w_initial``/``w_final`` (in [0, 1]), ``g_target_s`` (S, NaN for cells not targeted),
    ``g_final_s`` (S), ``g_error_s`` = final − target (S, NaN where not targeted),
    ``disturb_w`` (the state change, in units of the state range, the cell took during pulses
    addressed to other cells), ``pulses`` and ``time_s`` (its write pulses' total period, s),
    ``converged`` (its verify read came within tolerance). ``g_range_s`` = 1/r_on − 1/r_off."""

    w_initial: np.ndarray
    w_final: np.ndarray
    g_target_s: np.ndarray
    g_final_s: np.ndarray
    g_error_s: np.ndarray
    disturb_w: np.ndarray
    pulses: np.ndarray
    time_s: np.ndarray
    converged: np.ndarray
    g_range_s: float
    scheme: str
    backend: str
    tolerance: float
    reads: int = 0
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def targeted(self) -> np.ndarray:
        return np.isfinite(self.g_target_s)

    def to_json(self) -> dict:
        def grid(a):
            return [[None if not np.isfinite(x) else float(x) for x in row] for row in a]

        err_rel = self.g_error_s / self.g_range_s
        untargeted = ~self.targeted
        return {
            "backend": self.backend, "scheme": self.scheme, "tolerance": self.tolerance,
            "states": grid(self.w_final), "states_initial": grid(self.w_initial),
            "g_target_s": grid(self.g_target_s), "g_final_s": grid(self.g_final_s),
            "g_error_s": grid(self.g_error_s), "g_error_rel_range": grid(err_rel),
            "max_abs_error_rel_range": float(np.nanmax(np.abs(err_rel))),
            "disturb": grid(self.disturb_w),
            "max_abs_disturb": float(np.max(np.abs(self.disturb_w))),
            "max_abs_disturb_untargeted": (float(np.max(np.abs(self.disturb_w[untargeted])))
                                           if untargeted.any() else None),
            "pulses": self.pulses.astype(int).tolist(), "total_pulses": int(self.pulses.sum()),
            "time_s": grid(self.time_s), "total_time_s": float(self.time_s.sum()),
            "converged": self.converged.tolist(), "all_converged":
                bool(self.converged[self.targeted].all()), "reads": self.reads,
            "wall_s": self.wall_s, **self.extra,
        }


def _series_ohm(spec: TileSpec, row: int, col: int) -> float:
    """The resistance (Ω) in series with cell (row, col) on a read of its word line: driver,
    col+1 word-line segments, rows−row bit-line segments, sense, and (1T1R) the selector on."""
    s = spec.for_solvers()
    r = s.r_driver_ohm + (col + 1) * s.r_wire_wl_ohm + (s.rows - row) * s.r_wire_bl_ohm \
        + s.r_sense_ohm
    return r + (1.0 / s.selector.g_on_s if s.cell == "1t1r" else 0.0)


def _check_targets(spec: TileSpec, p: VTEAMParams, targets_s) -> np.ndarray:
    t = np.asarray(targets_s, dtype=np.float64)
    if t.shape != (spec.rows, spec.cols):
        raise ValueError(f"targets must have the tile's shape ({spec.rows}, {spec.cols}), got "
                         f"{t.shape}")
    lo, hi = 1.0 / p.r_off_ohm, 1.0 / p.r_on_ohm
    bad = np.isfinite(t) & ((t < lo * (1 - 1e-12)) | (t > hi * (1 + 1e-12)))
    if np.any(np.isinf(t)) or bad.any():
        x = float(t[np.isinf(t) | bad].ravel()[0])
        raise ValueError(f"target conductance {x!r} S is outside the device's range "
                         f"[{lo:.6g}, {hi:.6g}] S")
    return np.clip(t, lo, hi)


def program_tile(spec: TileSpec, targets_s, *, scheme: str, backend: str = "surrogate",
                 w_initial, tolerance: float = 0.02, max_pulses: int = 10,
                 v_set_v: float = -1.4, v_reset_v: float = 1.4, v_read_v: float = 0.2,
                 v_gate_v: float | None = None, params: VTEAMParams | None = None,
                 writer=None, cache_dir=None, c2c_sigma: float = 0.0, seed: int | None = None,
                 progress=None) -> ProgrammingResult:
    """Write-verify every cell with a finite target (``targets_s`` (rows, cols) in S; NaN: leave
    the cell alone) in row-major order, from normalised states ``w_initial`` (rows, cols).
    ``tolerance``: the allowed |G_read − G_target| as a fraction of 1/r_on − 1/r_off;
    ``max_pulses``: the pulse budget per cell; SET pulses at ``v_set_v`` < 0, RESET at
    ``v_reset_v`` > 0, reads at ``v_read_v`` (V). ``writer`` (default :func:`make_writer`)
    applies pulses and reads; ``progress(done, total)`` is called after each cell."""
    t_wall = time.perf_counter()
    _check_scheme(spec, scheme)
    p = get_parameter_set(spec.device_set) if params is None else params
    g_t = _check_targets(spec, p, targets_s)
    if not (np.isfinite(tolerance) and 0 < tolerance < 1):
        raise ValueError(f"tolerance must be in (0, 1) of the conductance range, got {tolerance!r}")
    if not (isinstance(max_pulses, (int, np.integer)) and max_pulses >= 1):
        raise ValueError(f"the pulse budget must be an integer ≥ 1, got {max_pulses!r}")
    if not (v_set_v < 0 < v_reset_v):
        raise ValueError(f"need v_set_v < 0 < v_reset_v, got {v_set_v!r} and {v_reset_v!r}")
    if not (p.v_on_v < v_read_v < p.v_off_v) or v_read_v == 0:
        raise ValueError(f"the read voltage {v_read_v!r} V must be non-zero and between the "
                         f"thresholds ({p.v_on_v:g}, {p.v_off_v:g}) V")
    w = np.clip(np.asarray(w_initial, dtype=np.float64), 0.0, 1.0)
    if w.shape != g_t.shape:
        raise ValueError(f"w_initial must have shape {g_t.shape}, got {w.shape}")
    if writer is None:
        writer = make_writer(backend, spec, p, cache_dir=cache_dir, c2c_sigma=c2c_sigma,
                             seed=seed)
    g_range = 1.0 / p.r_on_ohm - 1.0 / p.r_off_ohm

    def state(g):
        return float(state_at_conductance(p, g))

    def nominal_rate(v):
        return abs(float(state_derivative_m_per_s(p, v))) / p.x_span_m

    w0 = w.copy()
    disturb = np.zeros_like(w)
    pulses = np.zeros(w.shape, dtype=int)
    time_s = np.zeros_like(w)
    converged = np.zeros(w.shape, dtype=bool)
    reads = 0
    cells = [(int(i), int(j)) for i, j in zip(*np.nonzero(np.isfinite(g_t)))]
    for n_done, (i, j) in enumerate(cells):
        v_in = np.zeros(spec.rows)
        v_in[i] = v_read_v
        rate = {1: nominal_rate(v_reset_v), -1: nominal_rate(v_set_v)}
        r0 = dict(rate)
        last_width = {1: None, -1: None}
        pending = None
        w_target = state(g_t[i, j])
        while True:
            i_read = float(writer.read(w, v_in)[j])
            reads += 1
            r_cell = v_read_v / max(i_read, 1e-30) - _series_ohm(spec, i, j)
            g_read = 1.0 / min(max(r_cell, p.r_on_ohm * 1e-3), p.r_off_ohm * 1e3)
            w_read = state(g_read)
            if pending is not None:     # learn the achieved rate of the last pulse's polarity
                pol, width, w_before = pending
                moved = (w_read - w_before) * pol
                if moved > 0:
                    rate[pol] = moved / width
            if abs(g_read - g_t[i, j]) <= tolerance * g_range:
                converged[i, j] = True
                break
            if pulses[i, j] >= max_pulses:
                break
            dw = w_target - w_read
            pol = 1 if dw > 0 else -1
            width = WIDTH_GAIN * abs(dw) / rate[pol]
            width = min(max(width, WIDTH_MIN_RANGES / r0[pol]), WIDTH_MAX_RANGES / r0[pol])
            if last_width[pol] is not None:
                width = min(width, WIDTH_GROWTH * last_width[pol])
            v = v_reset_v if pol > 0 else v_set_v
            train = write_train(spec, scheme, i, j, v, width, v_gate_v)
            w_new = np.clip(writer.pulse(w, train), 0.0, 1.0)
            others = np.ones(w.shape, dtype=bool)
            others[i, j] = False
            disturb[others] += (w_new - w)[others]
            w = w_new
            pulses[i, j] += 1
            time_s[i, j] += train.t_stop_s
            last_width[pol] = width
            pending = (pol, width, w_read)
        if progress is not None:
            progress(n_done + 1, len(cells))
    g_final = conductance_at_state_s(p, w)
    extra = {"sim_s": getattr(writer, "sim_s", None)}
    return ProgrammingResult(w0, w, np.where(np.isfinite(g_t), g_t, np.nan), g_final,
                             g_final - g_t, disturb, pulses, time_s, converged, g_range, scheme,
                             getattr(writer, "name", backend), float(tolerance), reads,
                             time.perf_counter() - t_wall, extra)
