"""Read-pulse transients of a VTEAM tile in ngspice (behavioural subcircuit) and VACASK
(Verilog-A): emit, run, and read back per pulse the sense currents (A) and charge (C), and the
final state of every cell.

Every input ``i`` is a piecewise-linear source. Pulse ``k`` (period
``gap_s + rise_s + width_s + fall_s``) holds 0 V for ``gap_s``, ramps in ``rise_s`` to its plateau
``scale·v_pulses_v[k, i]`` (V), holds it for ``width_s`` and ramps back to 0 V in ``fall_s``.
The sense currents of a pulse are sampled at the end of its plateau (a source breakpoint, so
both simulators have a time point there); its charge is the sense current integrated over the
whole period. The cells are VTEAM devices started at the states of the programmed conductances
(``tile_elements(..., devices="vteam")``); their window is the one of ``device_params``.

This module imports neither torch nor matplotlib.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..circuit.netlist import ngspice_netlist_from_elements, vacask_netlist_from_elements
from ..circuit.tile import Element, TileSpec, input_name, sense_name, tile_elements
from .simulators import NGSPICE, VACASK, SimulationError, Simulator, get_simulator

__all__ = ["PulseTrain", "TileTransientResult", "pulse_train_from_read", "tile_transient_elements",
           "emit_tile_transient", "run_tile_transient", "write_pulse_netlist"]

#: Default time-step ceiling of the SPICE runs: this fraction of the plateau width (the sources'
#: corners are breakpoints, so shorter ramps and gaps still get their own time points).
MAX_STEP_FRACTION = 1.0 / 200.0


@dataclass(frozen=True)
class PulseTrain:
    """Pulses on the word lines: ``v_pulses_v`` (n_pulses, rows) plateau voltages (V)
    times ``scale`` (dimensionless), plateau ``width_s``, ramps ``rise_s``/``fall_s`` and a
    0 V ``gap_s`` before each pulse (s, all > 0).

    Write pulses also drive the bit lines and gates: ``v_bitlines_v`` (n_pulses, cols) plateau
    voltages (V, times ``scale``) of the sources at the bit lines' sense ends (``None``: the
    sense sources stay at 0 V), ``v_gates_v`` (n_pulses, rows) plateau voltages (V, not scaled)
    of the 1T1R gate lines (``None``: the gates stay at the selector's DC ``v_gate_v``). They
    follow the same timing as the word lines."""

    v_pulses_v: np.ndarray
    width_s: float
    rise_s: float
    fall_s: float
    gap_s: float
    scale: float = 1.0
    v_bitlines_v: np.ndarray | None = None
    v_gates_v: np.ndarray | None = None

    def __post_init__(self) -> None:
        v = np.asarray(self.v_pulses_v, dtype=np.float64)
        if v.ndim != 2 or v.shape[0] < 1 or not np.all(np.isfinite(v)):
            raise ValueError(f"v_pulses_v must be finite voltages of shape (n_pulses, rows), got "
                             f"shape {v.shape}")
        object.__setattr__(self, "v_pulses_v", v)
        for name in ("v_bitlines_v", "v_gates_v"):
            x = getattr(self, name)
            if x is None:
                continue
            x = np.asarray(x, dtype=np.float64)
            rows_ok = name == "v_bitlines_v" or x.shape[1:] == v.shape[1:]
            if x.ndim != 2 or x.shape[0] != v.shape[0] or not rows_ok \
                    or not np.all(np.isfinite(x)):
                raise ValueError(f"{name} must be finite voltages with one row per pulse "
                                 f"({v.shape[0]}), got shape {x.shape}")
            object.__setattr__(self, name, x)
        for name in ("width_s", "rise_s", "fall_s", "gap_s", "scale"):
            x = getattr(self, name)
            if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) \
                    or not np.isfinite(x) or (x <= 0 and name != "scale"):
                raise ValueError(f"PulseTrain.{name} must be a finite number"
                                 f"{'' if name == 'scale' else ' > 0 s'}, got {x!r}")
            object.__setattr__(self, name, float(x))

    @property
    def n_pulses(self) -> int:
        return self.v_pulses_v.shape[0]

    @property
    def plateaus_v(self) -> np.ndarray:
        """(n_pulses, rows) plateau voltages (V), the scale applied."""
        return self.scale * self.v_pulses_v

    @property
    def period_s(self) -> float:
        return self.gap_s + self.rise_s + self.width_s + self.fall_s

    @property
    def t_stop_s(self) -> float:
        return self.n_pulses * self.period_s

    def starts_s(self) -> np.ndarray:
        """(n_pulses,) start of each pulse's rise (s)."""
        return np.arange(self.n_pulses) * self.period_s + self.gap_s

    def sample_times_s(self) -> np.ndarray:
        """(n_pulses,) end of each plateau (s), where the currents are sampled."""
        return self.starts_s() + self.rise_s + self.width_s

    @property
    def bitline_plateaus_v(self) -> np.ndarray | None:
        """(n_pulses, cols) bit-line plateau voltages (V), the scale applied, or None."""
        return None if self.v_bitlines_v is None else self.scale * self.v_bitlines_v

    def wave(self, row: int) -> tuple[float, ...]:
        """PWL pairs ``(t0_s, v0_v, t1_s, v1_v, …)`` of input ``row``."""
        return self.wave_of(self.plateaus_v[:, row])

    def wave_of(self, plateaus_v: np.ndarray) -> tuple[float, ...]:
        """PWL pairs of a source whose pulse ``k`` has plateau ``plateaus_v[k]`` (V)."""
        pts = [0.0, 0.0]
        for t0, v in zip(self.starts_s(), plateaus_v):
            pts += [t0, 0.0, t0 + self.rise_s, v, t0 + self.rise_s + self.width_s, v,
                    t0 + self.rise_s + self.width_s + self.fall_s, 0.0]
        return tuple(float(x) for x in pts)


def pulse_train_from_read(v_in_v: np.ndarray, pulse_v: float, width_s: float, n_pulses: int,
                          ramp_fraction: float = 0.1) -> PulseTrain:
    """``n_pulses`` repetitions of one read vector ``v_in_v`` (rows,), scaled so that its
    largest magnitude is ``pulse_v`` (V); ramps of ``ramp_fraction·width_s``, gaps of
    ``width_s`` (what ``spicecross netlist --pulse-v V --pulse-ns T --pulses N`` emits)."""
    v = np.asarray(v_in_v, dtype=np.float64)
    peak = float(np.max(np.abs(v))) if v.size else 0.0
    if v.ndim != 1 or peak == 0 or not np.isfinite(peak):
        raise ValueError("the read vector must be (rows,) finite voltages, not all 0 V")
    if not (isinstance(n_pulses, (int, np.integer)) and n_pulses >= 1):
        raise ValueError(f"n_pulses must be an integer ≥ 1, got {n_pulses!r}")
    ramp = ramp_fraction * float(width_s)
    return PulseTrain(np.tile(v, (n_pulses, 1)), width_s, ramp, ramp, width_s,
                      scale=float(pulse_v) / peak)


def tile_transient_elements(spec: TileSpec, g_s: np.ndarray, train: PulseTrain,
                            device_params=None) -> list[Element]:
    """The tile's element list with VTEAM cells and the inputs (and, for write pulses, the
    bit-line sense sources and the gate sources) as the train's PWL sources."""
    if train.v_pulses_v.shape[1] != spec.rows:
        raise ValueError(f"the pulse train has {train.v_pulses_v.shape[1]} inputs, the tile "
                         f"{spec.rows} rows")
    if train.v_bitlines_v is not None and train.v_bitlines_v.shape[1] != spec.cols:
        raise ValueError(f"the pulse train drives {train.v_bitlines_v.shape[1]} bit lines, the "
                         f"tile has {spec.cols}")
    if train.v_gates_v is not None and spec.cell != "1t1r":
        raise ValueError("gate pulses need a 1t1r tile")
    els = tile_elements(spec, g_s, np.zeros(spec.rows), devices="vteam",
                        device_params=device_params)
    waves = {input_name(i): train.wave(i) for i in range(spec.rows)}
    bl = train.bitline_plateaus_v
    if bl is not None:
        waves |= {sense_name(j): train.wave_of(bl[:, j]) for j in range(spec.cols)}
    if train.v_gates_v is not None:
        waves |= {f"gate{i}": train.wave_of(train.v_gates_v[:, i]) for i in range(spec.rows)}
    return [e._replace(wave=waves[e.name]) if e.kind == "V" and e.name in waves else e
            for e in els]


def _state_names(elements: list[Element]) -> list[tuple[int, int, str]]:
    """(row, col, instance name as the simulators call it) of every VTEAM cell."""
    out = []
    for e in elements:
        if e.kind == "MEM":
            i, j = (int(k) for k in e.name[1:].split("_"))
            out.append((i, j, f"x{e.name}"))
    return out


def emit_tile_transient(simulator: str | Simulator, spec: TileSpec, g_s: np.ndarray,
                        train: PulseTrain, *, device_params=None,
                        max_step_s: float | None = None) -> str:
    """The pulse-train transient of the VTEAM tile as ngspice or VACASK netlist text; the time
    step is at most ``max_step_s`` (default 1/200 of the plateau width)."""
    sim = get_simulator(simulator)
    els = tile_transient_elements(spec, g_s, train, device_params)
    hmax = max_step_s or MAX_STEP_FRACTION * train.width_s
    f = repr
    if sim is NGSPICE:
        saves = [f"i(v{sense_name(j)})" for j in range(spec.cols)]
        saves += [NGSPICE.voltage_key(name, "w") for _, _, name in _state_names(els)]
        lines = [".options method=gear",
                 f".tran {f(hmax)} {f(train.t_stop_s)} 0 {f(hmax)} uic",
                 *(".save " + " ".join(saves[k:k + 8]) for k in range(0, len(saves), 8))]
        return ngspice_netlist_from_elements(spec, els, device=device_params, analysis=lines)
    return vacask_netlist_from_elements(
        spec, els, device=device_params,
        analysis=[f"analysis tran1 tran step={f(hmax)} stop={f(train.t_stop_s)} maxstep={f(hmax)}"])


@dataclass
class TileTransientResult:
    """A pulse-train transient: per pulse the sense currents at the plateau's end
    ``currents_a`` (n_pulses, cols) and the charge through each sense source ``charge_c``
    (n_pulses, cols); the final normalised states ``w_final`` (rows, cols, in [0, 1]; NaN for
    open cells) and conductances ``g_final_s`` (S; 0 for open cells); the traces ``t_s`` and
    ``i_sense_a`` (n_t, cols); the simulator and its wall time ``sim_s`` (s)."""

    currents_a: np.ndarray
    charge_c: np.ndarray
    w_final: np.ndarray
    g_final_s: np.ndarray
    t_s: np.ndarray
    i_sense_a: np.ndarray
    simulator: str
    sim_s: float
    cached: bool = False

#: The arrays of a TileTransientResult kept in the solve cache (``<simulator>-tran-<sha256>``).
_CACHED_FIELDS = ("currents_a", "charge_c", "w_final", "g_final_s", "t_s", "i_sense_a")


def _cache_file(cache_dir, sim: Simulator, text: str):
    from ..circuit.netlist import netlist_hash
    from .solve import _cache_path

    return _cache_path(Path(cache_dir), f"{sim.name}-tran-{netlist_hash(text)}")


def _load_transient(path) -> TileTransientResult | None:
    """A cached transient, or None (an unreadable entry is dropped and solved again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k].copy() for k in _CACHED_FIELDS}
            return TileTransientResult(**arrays, simulator=str(z["simulator"]),
                                       sim_s=float(z["sim_s"]), cached=True)
    except Exception:  # noqa: BLE001 - any unreadable entry is dropped
        path.unlink(missing_ok=True)
        return None


def _store_transient(path, res: TileTransientResult) -> None:
    from ..store import atomic_path

    with atomic_path(path) as tmp:
        np.savez(tmp, **{k: getattr(res, k) for k in _CACHED_FIELDS}, simulator=res.simulator,
                 sim_s=res.sim_s)


def _charges(t: np.ndarray, i: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """∫ i dt (trapezoids on the simulator's points) between consecutive ``edges`` (s)."""
    q = np.concatenate([np.zeros((1, i.shape[1])),
                        np.cumsum(0.5 * (i[1:] + i[:-1]) * np.diff(t)[:, None], axis=0)])
    q_edges = np.stack([np.interp(edges, t, q[:, j]) for j in range(i.shape[1])], axis=1)
    return np.diff(q_edges, axis=0)


def run_tile_transient(simulator: str | Simulator, spec: TileSpec, g_s: np.ndarray,
                       train: PulseTrain, *, device_params=None,
                       max_step_s: float | None = None,
                       timeout_s: float = 3600.0, cache_dir=None) -> TileTransientResult:
    """Emit and run the pulse-train transient (see :func:`emit_tile_transient`) and read it
    back as a :class:`TileTransientResult`; with ``cache_dir`` (a folder, e.g.
    :func:`spicecross.spice.solve.default_cache_dir`) through the solve cache, keyed by the
    netlist's content hash."""
    from ..devices.verilog_a import OSDI_FILE, compile_vteam_osdi
    from ..devices.vteam import get_parameter_set, resistance_at_state_ohm

    sim = get_simulator(simulator)
    p = get_parameter_set(spec.device_set) if device_params is None else device_params
    text = emit_tile_transient(sim, spec, g_s, train, device_params=p, max_step_s=max_step_s)
    cache = None if cache_dir is None else _cache_file(cache_dir, sim, text)
    if cache is not None and (hit := _load_transient(cache)) is not None:
        return hit
    extra = {OSDI_FILE: compile_vteam_osdi()} if sim is VACASK else None
    t0 = time.perf_counter()
    plots = sim.run(text, extra_files=extra, timeout_s=timeout_s)
    sim_s = time.perf_counter() - t0
    plot = next((pl for pl in plots if "time" in pl), None)
    if plot is None:
        raise SimulationError(f"{sim.label}: no transient plot in the results")
    t = plot["time"]
    keys = [sim.current_key(f"v{sense_name(j)}") for j in range(spec.cols)]
    missing = [k for k in keys if k not in plot]
    if missing:
        raise SimulationError(f"{sim.label}: the transient result lacks {', '.join(missing[:3])}")
    i_sense = np.stack([plot[k] for k in keys], axis=1)
    currents = np.stack([np.interp(train.sample_times_s(), t, i_sense[:, j])
                         for j in range(spec.cols)], axis=1)
    edges = np.arange(train.n_pulses + 1) * train.period_s
    w = np.full((spec.rows, spec.cols), np.nan)
    for i, j, name in _state_names(tile_transient_elements(spec, g_s, train, p)):
        w[i, j] = plot[sim.voltage_key(name, "w")][-1]
    w = np.clip(w, 0.0, 1.0)
    g_final = np.where(np.isnan(w), 0.0,
                       1.0 / resistance_at_state_ohm(np.nan_to_num(w), p.r_on_ohm, p.r_off_ohm,
                                                     p.r_model))
    res = TileTransientResult(currents, _charges(t, i_sense, edges), w, g_final, t, i_sense,
                              sim.name, sim_s)
    if cache is not None:
        _store_transient(cache, res)
    return res


def write_pulse_netlist(path, spec: TileSpec, g_s: np.ndarray, v_in_v: np.ndarray, *,
                        pulse_v: float, width_s: float, n_pulses: int,
                        simulator: str = "ngspice", device_params=None):
    """Write the transient of ``n_pulses`` read pulses of ``v_in_v`` scaled to ``pulse_v`` (V)
    and ``width_s`` wide (:func:`pulse_train_from_read`) on the VTEAM tile to ``path``; the
    function behind ``spicecross netlist --devices vteam --pulse-v V --pulse-ns T --pulses N``
    (``width_s = T·1e-9``). VACASK decks load ``vteam.osdi`` from their directory (compile it
    with :func:`spicecross.devices.verilog_a.compile_vteam_osdi`). Returns the path."""
    from ..store import write_text_atomic

    train = pulse_train_from_read(v_in_v, pulse_v, width_s, n_pulses)
    return write_text_atomic(path, emit_tile_transient(simulator, spec, g_s, train,
                                                       device_params=device_params))
