"""Programming a whole network through a calibrated programming model (``infer --program``).

Writing every cell of every array of a network pulse by pulse in a tile transient is out of
reach (one write-verify pulse on a 64×64 tile costs seconds in the dynamic surrogate, and the
MNIST network has ≈ 600 000 cells), so the network is programmed through a *model* of what a
write scheme leaves behind, calibrated on the network's own tile:

1. **Calibration** (:func:`calibrate_programming`): a tile of the network's own
   :class:`~spicecross.circuit.tile.TileSpec` (size, wires, driver and sense resistance,
   device set), formatted to the RESET state (every cell at r_off, state 1), has ``cells``
   cells at random positions written to targets drawn from the network's own target states,
   by :func:`~spicecross.spice.programming.program_tile` (write-verify) or by one open-loop
   pulse per cell, in the dynamic surrogate (which tests/test_programming.py holds to
   ngspice and VACASK), V/3 half-select (the scheme whose half-selected cells stay below
   both VTEAM thresholds). Each written cell gives a sample: its target state and the state
   error it was left with (IR drop of the real wires, the verify read's error, c2c).
   *Open loop*: one SET pulse of the write voltage whose width the nominal device (no wires)
   needs to go from the RESET state to the target, pulse ramps included
   (:func:`open_loop_width_s`, bisection on :func:`~spicecross.devices.vteam_reference.simulate`).
2. **Network** (:meth:`ProgrammingModel.program`): every written cell (target below the
   RESET state) of every array takes the conductance error (fraction of 1/r_on − 1/r_off) of a
   calibration sample drawn at random from the same target-state bin (quantile bins of the calibration targets); cells whose
   target is the RESET state are not written and keep it. The model carries the position
   dependence of the calibration tile only as spread (the sample is drawn regardless of
   position), and no disturb between written cells (V/3 keeps half-selected cells below the
   thresholds; the calibration's largest disturb of unwritten cells is reported).

Calibrations are cached as JSON under the solve cache, keyed by a content hash of everything
they depend on. 0T1R only: the surrogate writes 0T1R tiles (gate-selected 1T1R writes run in
SPICE only, far too slow for a network).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..circuit.tile import TileSpec
from ..devices.vteam import (VTEAMParams, conductance_at_state_s, get_parameter_set,
                             state_at_conductance)
from .modes import PROGRAM_METHODS

__all__ = ["METHODS", "ProgrammingModel", "calibrate_programming", "open_loop_width_s",
           "open_loop_program",
           "network_target_states", "program_network"]

METHODS = PROGRAM_METHODS
#: The write scheme of the programming model: V/3 half-select (0T1R).
SCHEME = "v3"
#: Target-state bins of the error model (quantiles of the calibration targets).
BINS = 4
#: Cells whose target state is within this of the RESET state (1) are not written.
RESET_EPS = 1e-9
CACHE_VERSION = 1


@dataclass(frozen=True)
class ProgrammingModel:
    """What a write scheme leaves behind, measured on a calibration tile: per written
    calibration cell its target state ``w_target`` and final − target state ``dw`` (normalised
    states, 1 = r_off), its ``pulses`` and programmed time ``time_s`` (s); ``max_disturb`` the
    largest |state change| of an unwritten calibration cell; ``method``, ``tolerance`` (of the
    conductance range, write-verify), ``tile`` (RxC), ``v_set_v`` (V), ``wall_s`` (s)."""

    method: str
    tolerance: float
    tile: str
    v_set_v: float
    w_target: tuple[float, ...]
    dw: tuple[float, ...]
    pulses: tuple[int, ...]
    time_s: tuple[float, ...]
    max_disturb: float
    wall_s: float

    def bins(self) -> np.ndarray:
        """Inner edges of the target-state bins (quantiles of the calibration targets)."""
        return np.quantile(np.asarray(self.w_target), np.linspace(0, 1, BINS + 1)[1:-1])

    def program(self, g_target_s: np.ndarray, params: VTEAMParams, rng: np.random.Generator
                ) -> tuple[np.ndarray, dict]:
        """Device conductances (S, shape of ``g_target_s``) the model leaves for targets
        ``g_target_s`` (S) and a summary: written cells, their conductance error (fraction of
        1/r_on − 1/r_off, RMS and max), pulses and programmed time per written cell. A written
        cell takes the *conductance* error (fraction of the range) of a calibration cell from its
        target-state bin: write-verify's tolerance is a conductance band, and near r_off a large
        state error is a small conductance error."""
        p = params
        w_t = state_at_conductance(p, g_target_s)
        written = w_t < 1.0 - RESET_EPS
        cal_w, cal_dw = np.asarray(self.w_target), np.asarray(self.dw)
        edges = self.bins()
        cal_bin, net_bin = np.digitize(cal_w, edges), np.digitize(w_t[written], edges)
        pick = np.empty(net_bin.shape, dtype=np.int64)
        for b in range(BINS):
            members = np.flatnonzero(cal_bin == b)
            if members.size == 0:                     # empty bin: fall back to every sample
                members = np.arange(cal_w.size)
            sel = net_bin == b
            pick[sel] = rng.choice(members, size=int(sel.sum()))
        g_range = 1.0 / p.r_on_ohm - 1.0 / p.r_off_ohm
        cal_dg = (conductance_at_state_s(p, cal_w + cal_dw) - conductance_at_state_s(p, cal_w)) / g_range    # fraction of the range
        g = np.array(g_target_s, dtype=np.float64)
        g[written] = np.clip(g[written] + cal_dg[pick] * g_range, 1.0 / p.r_off_ohm,
                             1.0 / p.r_on_ohm)
        err = (g - np.asarray(g_target_s))[written] / g_range
        n = int(written.sum())
        return g, {"written_cells": n, "cells": int(g.size),
                   "g_error_rms_of_range": float(np.sqrt(np.mean(err ** 2))) if n else 0.0,
                   "g_error_max_of_range": float(np.max(np.abs(err))) if n else 0.0,
                   "pulses": int(np.asarray(self.pulses)[pick].sum()),
                   "programmed_time_s": float(np.asarray(self.time_s)[pick].sum())}

    def summary(self, params: VTEAMParams) -> dict:
        """The calibration in numbers; ``calibration_within_tolerance`` is the share of its cells
        whose final conductance is within ``tolerance`` of the range of the target."""
        dw, w_t, p = np.asarray(self.dw), np.asarray(self.w_target), params
        err = np.abs(conductance_at_state_s(p, w_t + dw) - conductance_at_state_s(p, w_t)) / (1.0 / p.r_on_ohm - 1.0 / p.r_off_ohm)
        return {"method": self.method, "scheme": SCHEME, "tolerance": self.tolerance,
                "calibration_tile": self.tile, "calibration_cells": len(self.dw),
                "v_set_v": self.v_set_v,
                "calibration_dw_rms": float(np.sqrt(np.mean(dw ** 2))),
                "calibration_dw_max": float(np.max(np.abs(dw))),
                "calibration_max_disturb": self.max_disturb,
                "calibration_within_tolerance": float(np.mean(err <= self.tolerance)),
                "calibration_wall_s": self.wall_s}


def open_loop_width_s(params: VTEAMParams, w_target, v_write_v: float, *,
                      ramp_fraction: float | None = None) -> np.ndarray:
    """Plateau widths (s) of a write pulse of ``v_write_v`` (V; ramps of ``ramp_fraction`` of
    the width, default the write schemes' :data:`~spicecross.spice.programming.RAMP_FRACTION`)
    that take the nominal device, alone and without wires, from the RESET state (1) to each
    state of ``w_target``: bisection on the reference integrator (40 halvings, log scale)."""
    from ..devices.vteam_reference import simulate
    from ..spice.programming import RAMP_FRACTION

    rf = RAMP_FRACTION if ramp_fraction is None else float(ramp_fraction)
    if not v_write_v < params.v_on_v:
        raise ValueError(f"an open-loop SET pulse needs a write voltage below v_on "
                         f"({params.v_on_v:g} V), got {v_write_v!r}")
    span = params.x_off_m - params.x_on_m
    x0 = params.x_off_m

    def final_w(width_s: np.ndarray) -> np.ndarray:
        out = np.empty(width_s.shape)
        for k, wd in enumerate(width_s):
            t = np.array([0.0, rf * wd, (1 + rf) * wd, (1 + 2 * rf) * wd])
            v = np.array([0.0, v_write_v, v_write_v, 0.0])
            _, x = simulate(params, t, v, x0, max_step_s=wd / 400.0)
            out[k] = (x[-1] - params.x_on_m) / span
        return out

    w_t = np.atleast_1d(np.asarray(w_target, dtype=np.float64))
    if np.any(~np.isfinite(w_t)) or np.any((w_t < 0) | (w_t >= 1)):
        raise ValueError("open-loop targets must be states in [0, 1)")
    lo = np.full(w_t.shape, -30.0)                  # log10 width (s): 1 fs … 1 ks
    hi = np.full(w_t.shape, 3.0)
    if np.any(final_w(10.0 ** hi) > w_t):
        raise ValueError(f"{v_write_v:g} V cannot SET the device to the targets within 1000 s")
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        above = final_w(10.0 ** mid) > w_t           # not yet reached: longer pulse
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return 10.0 ** (0.5 * (lo + hi))


def open_loop_program(spec: TileSpec, params: VTEAMParams, writer, rows, cols, w_target,
                      v_set_v: float,
                      w_initial: np.ndarray, progress: Callable[[int, int], None] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Open-loop programming: cells (``rows[k]``, ``cols[k]``) in turn get one V/3 SET pulse
    of ``v_set_v`` (V) whose width the nominal device needs to reach ``w_target[k]`` from the
    RESET state (:func:`open_loop_width_s`), through ``writer`` (a
    :func:`~spicecross.spice.programming.make_writer` writer: the surrogate, ngspice or
    VACASK). Returns the final states (rows, cols) and each pulse's period (s)."""
    from ..spice.programming import write_train

    widths = open_loop_width_s(params, w_target, v_set_v)
    w = np.asarray(w_initial, dtype=np.float64).copy()
    t_s = np.zeros(len(widths))
    for k, (i, j) in enumerate(zip(rows, cols)):
        train = write_train(spec, SCHEME, int(i), int(j), v_set_v, float(widths[k]))
        w = np.clip(writer.pulse(w, train), 0.0, 1.0)
        t_s[k] = train.t_stop_s
        if progress is not None:
            progress(k + 1, len(widths))
    return w, t_s


def _cache_key(spec: TileSpec, params: VTEAMParams, method: str, w_sample: np.ndarray,
               **knobs) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "spec": repr(spec), "params": repr(params),
                       "method": method, "w": np.round(w_sample, 12).tolist(), **knobs},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def calibrate_programming(spec: TileSpec, w_network: np.ndarray, *, method: str,
                          cells: int = 16, tolerance: float = 0.02, max_pulses: int = 10,
                          v_set_v: float = -1.4, v_reset_v: float = 1.4, seed: int = 0,
                          cache_dir: Path | str | None = None,
                          progress: Callable[[int, int], None] | None = None
                          ) -> ProgrammingModel:
    """Calibrate the programming model (module doc) on a formatted tile of ``spec`` with
    ``cells`` cells written to target states drawn (seeded) from ``w_network`` (the network's
    written target states, normalised)."""
    import time

    from ..spice.programming import make_writer, program_tile
    from ..store import write_text_atomic

    if method not in METHODS:
        raise ValueError(f"programming method must be one of {', '.join(METHODS)}, got "
                         f"{method!r}")
    if spec.cell != "0t1r":
        raise ValueError(f"the programming model writes 0t1r tiles (V/3 in the dynamic "
                         f"surrogate); got a {spec.cell} tile")
    if not (isinstance(cells, int) and 1 <= cells <= spec.rows * spec.cols):
        raise ValueError(f"calibration cells must be an integer in [1, {spec.rows * spec.cols}],"
                         f" got {cells!r}")
    w_network = np.asarray(w_network, dtype=np.float64).ravel()
    if w_network.size == 0:
        raise ValueError("the network has no cell to write (every target is the RESET state)")
    p = get_parameter_set(spec.device_set)
    rng = np.random.default_rng(seed)
    w_t = rng.choice(w_network, size=cells)
    pos = rng.choice(spec.rows * spec.cols, size=cells, replace=False)
    key = _cache_key(spec, p, method, w_t, cells=cells, tol=tolerance, mp=max_pulses,
                     vs=v_set_v, vr=v_reset_v, pos=pos.tolist())
    path = None if cache_dir is None else Path(cache_dir) / "programming" / f"{key}.json"
    if path is not None and path.is_file():
        try:
            return ProgrammingModel(**{k: (tuple(v) if isinstance(v, list) else v)
                                       for k, v in json.loads(path.read_text()).items()})
        except (ValueError, TypeError):
            pass                                          # damaged cache entry: recompute
    t0 = time.perf_counter()
    rows, cols = np.divmod(pos, spec.cols)
    w0 = np.ones((spec.rows, spec.cols))
    if method == "write-verify":
        targets = np.full((spec.rows, spec.cols), np.nan)
        targets[rows, cols] = conductance_at_state_s(p, w_t)
        res = program_tile(spec, targets, scheme=SCHEME, backend="surrogate", w_initial=w0,
                           tolerance=tolerance, max_pulses=max_pulses, v_set_v=v_set_v,
                           v_reset_v=v_reset_v, progress=progress)
        w_final, pulses, t_s = res.w_final, res.pulses[rows, cols], res.time_s[rows, cols]
        disturb = np.abs(res.disturb_w)
    else:
        w_final, t_s = open_loop_program(spec, p, make_writer("surrogate", spec, p), rows,
                                         cols, w_t, v_set_v, w0, progress)
        pulses = np.ones(cells, dtype=int)
        disturb = np.abs(w_final - w0)
    written = np.zeros((spec.rows, spec.cols), dtype=bool)
    written[rows, cols] = True
    model = ProgrammingModel(method, float(tolerance), f"{spec.rows}x{spec.cols}",
                             float(v_set_v), tuple(map(float, w_t)),
                             tuple(map(float, w_final[rows, cols] - w_t)),
                             tuple(map(int, pulses)), tuple(map(float, t_s)),
                             float(disturb[~written].max()) if (~written).any() else 0.0,
                             time.perf_counter() - t0)
    if path is not None:
        write_text_atomic(path, json.dumps(asdict(model)))
    return model


def network_target_states(layers) -> np.ndarray:
    """The normalised target states (1 = RESET) of every cell the network writes (targets
    below the RESET state), over all arrays of ``layers`` ((name, AnalogLayer) pairs)."""
    out = []
    for _, layer in layers:
        w = state_at_conductance(layer.array.config.device_params(),
                                 layer.array.g_dev_programmed).ravel()
        out.append(w[w < 1.0 - RESET_EPS])
    return np.concatenate(out) if out else np.zeros(0)


def program_network(layers, method: str, *, cells: int = 16, tolerance: float = 0.02,
                    seed: int = 0, cache_dir: Path | str | None = None,
                    progress: Callable[[int, int], None] | None = None) -> dict:
    """Calibrate the programming model on the network's own tile and target states
    (:func:`calibrate_programming`), then program every analog layer's arrays (``layers``:
    (name, AnalogLayer) pairs) through it (seeded per layer) and rebuild their reads. Returns
    the model's summary with the conductance error over all written cells and per layer."""
    if not layers:
        raise ValueError("the network has no analog layer to program")
    spec = layers[0][1].array.spec
    model = calibrate_programming(spec, network_target_states(layers), method=method,
                                  cells=cells, tolerance=tolerance, seed=seed,
                                  cache_dir=cache_dir, progress=progress)
    per_layer, errs2, n_all, e_max, pulses, t_all = [], 0.0, 0, 0.0, 0, 0.0
    for index, (name, layer) in enumerate(layers):
        array = layer.array
        rng = np.random.default_rng([int(seed), 7919, index])
        g, info = model.program(array.g_dev_programmed, array.config.device_params(), rng)
        array.reprogram(g)
        per_layer.append({"layer": name, **info})
        n = info["written_cells"]
        errs2 += info["g_error_rms_of_range"] ** 2 * n
        n_all += n
        e_max = max(e_max, info["g_error_max_of_range"])
        pulses += info["pulses"]
        t_all += info["programmed_time_s"]
    return {**model.summary(layers[0][1].array.config.device_params()), "written_cells": n_all,
            "g_error_rms_of_range": float(np.sqrt(errs2 / n_all)) if n_all else 0.0,
            "g_error_max_of_range": e_max, "pulses": pulses, "programmed_time_s": t_all,
            "per_layer": per_layer}
