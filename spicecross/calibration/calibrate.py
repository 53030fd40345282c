"""Calibration: random tiles and reads, SPICE ground truth, a least-squares fit of the surrogate's
free parameter, and the held-out error of every mode, stored in HDF5 with provenance.

The one free parameter is the 1T1R selector's effective on-conductance ``g_sel`` (S) used by the
``linear`` mode (the device in series with a fixed conductance). The ``nonlinear`` mode uses the
selector's level-1 equations as the netlist does and has nothing to fit; passive tiles have
nothing to fit at all (the ``linear`` mode is exact), so their report is pure verification.

Tiles are split into a training and a held-out set (by tile, never by read), so the reported
error is measured on tiles the fit never saw.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from ..circuit.tile import TileSpec
from ..spice.simulators import SimulationError
from ..spice.solve import solve_many, solve_many_reads
from ..errors import unreadable
from ..store import atomic_h5, provenance, read_attrs, write_group
from ..surrogate.mapping import (conductances_for_units, double_column_units,
                                 effective_cell_conductance)
from ..surrogate.tile_model import TileSurrogate
from ..surrogate.transfer import transfer_matrices


@dataclass
class Calibration:
    """A stored calibration: the tile it is for, the fitted selector conductance and the
    held-out errors per mode (relative RMS and relative max of sense currents)."""

    spec: TileSpec
    g_sel_s: float | None
    errors: dict[str, dict[str, float]] = field(default_factory=dict)
    best_mode: str = "linear"
    provenance: dict[str, Any] = field(default_factory=dict)
    g_sel_layers_s: tuple[float, ...] | None = None     # per analog layer (from-model fits)

    def summary(self) -> dict[str, Any]:
        return {"tile": f"{self.spec.rows}x{self.spec.cols}", "cell": self.spec.cell,
                "r_wire_ohm": [self.spec.r_wire_wl_ohm, self.spec.r_wire_bl_ohm],
                "g_sel_s": self.g_sel_s, "best_mode": self.best_mode, "held_out": self.errors}


def draw_tiles(spec: TileSpec, n_tiles: int, reads_per_tile: int, v_read_max_v: float,
               g_off_s: float, g_on_s: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Conductances (n_tiles, rows, cols) in S as the double-column weight mapping makes them
    (one array of a pair: ~half the cells at g_off, the rest spread towards g_on as the
    magnitudes of normally distributed weights), and inputs (n_tiles, reads, rows) in V,
    uniform in [0, v_read_max]."""
    if n_tiles < 2:
        raise ValueError(f"need at least 2 tiles (one to fit, one held out), got {n_tiles}")
    if reads_per_tile < 1:
        raise ValueError(f"reads per tile must be ≥ 1, got {reads_per_tile}")
    if not v_read_max_v > 0:
        raise ValueError(f"read voltage must be > 0 V, got {v_read_max_v!r}")
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n_tiles, spec.rows, spec.cols))
    w_max = np.max(np.abs(w), axis=(1, 2), keepdims=True)          # one full scale per tile
    g = conductances_for_units(double_column_units(w, w_max)[0], g_off_s, g_on_s)
    v = rng.uniform(0.0, v_read_max_v, (n_tiles, reads_per_tile, spec.rows))
    return g, v


def _errors(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    d = pred - ref
    return {"rel_rms": float(np.sqrt(np.mean(d ** 2)) / np.sqrt(np.mean(ref ** 2))),
            "rel_max": float(np.max(np.abs(d)) / np.max(np.abs(ref)))}


def _linear_predict(spec: TileSpec, g: np.ndarray, v: np.ndarray, g_sel: float | None) -> np.ndarray:
    T = transfer_matrices(spec, effective_cell_conductance(spec, g, g_sel))
    return torch.einsum("tcr,tkr->tkc", T, torch.as_tensor(v)).numpy()


def calibrate(spec: TileSpec, n_tiles: int = 12, reads_per_tile: int = 8, v_read_max_v: float = 0.2,
              g_off_s: float = 1 / 2500, g_on_s: float = 1 / 100, holdout: float = 0.34,
              seed: int = 0, backend: str = "auto", n_jobs: int | None = None,
              parallel_backend: str = "loky", scheduler: str | None = None,
              out: str | Path | None = None, progress: bool = True) -> tuple[Calibration, dict]:
    """Run a calibration; returns the Calibration and the raw arrays (for plots and storage)."""
    g, v = draw_tiles(spec, n_tiles, reads_per_tile, v_read_max_v, g_off_s, g_on_s, seed)
    t0 = time.perf_counter()
    # every tile's reads in one simulator run (one swept analysis per programmed tile)
    results = solve_many_reads([(spec, g[t], v[t]) for t in range(n_tiles)], backend=backend,
                               n_jobs=n_jobs, parallel_backend=parallel_backend,
                               scheduler=scheduler, progress=progress,
                               desc=f"SPICE {spec.rows}x{spec.cols} {spec.cell}")
    failed = [r for r in results if not r.ok]
    if failed:
        raise SimulationError(f"{len(failed)} of {len(results)} SPICE tiles failed; first: {failed[0].error}")
    spice_s = time.perf_counter() - t0
    ref = np.stack([r.currents_a for r in results])                # (tiles, reads, cols)
    n_hold = max(1, int(round(holdout * n_tiles)))
    train, held = np.arange(n_tiles - n_hold), np.arange(n_tiles - n_hold, n_tiles)

    g_sel: float | None = None
    if spec.cell == "1t1r":
        g0 = spec.selector.g_on_s
        ref_tr = ref[train]

        def loss(log_ratio: float) -> float:
            p = _linear_predict(spec, g[train], v[train], g0 * float(np.exp(log_ratio)))
            return float(np.mean((p - ref_tr) ** 2))

        fit = minimize_scalar(loss, bounds=(np.log(0.3), np.log(3.0)), method="bounded",
                              options={"xatol": 1e-6})
        g_sel = g0 * float(np.exp(fit.x))

    preds: dict[str, np.ndarray] = {
        "ideal": np.einsum("tkr,trc->tkc", v[held], effective_cell_conductance(spec, g[held], g_sel)),
        "linear": _linear_predict(spec, g[held], v[held], g_sel),
    }
    if spec.cell == "1t1r":
        preds["linear_uncalibrated"] = _linear_predict(spec, g[held], v[held], None)
        preds["nonlinear"] = np.stack([TileSurrogate(spec, g[t], "nonlinear").read(v[t]) for t in held])
    errors = {m: _errors(p, ref[held]) for m, p in preds.items()}
    best = min((m for m in errors if m in ("ideal", "linear", "nonlinear")),
               key=lambda m: errors[m]["rel_rms"])
    prov = provenance(simulator=results[0].simulator, simulator_version=results[0].simulator_version,
                      netlist_hashes=[h for r in results for h in r.netlist_hashes], seed=seed,
                      n_tiles=n_tiles, reads_per_tile=reads_per_tile, v_read_max_v=v_read_max_v,
                      g_off_s=g_off_s, g_on_s=g_on_s, held_out_tiles=held.tolist(),
                      spice_seconds=spice_s, tile_spec=spec.to_json())
    # IR-drop map: the last held-out tile read with every input at the full read voltage
    full_v = np.full(spec.rows, v_read_max_v)
    full = solve_many(spec, [g[-1]], [full_v], backend=backend, n_jobs=1, progress=False)[0]
    cal = Calibration(spec, g_sel, errors, best, prov)
    arrays = {"g_s": g, "v_in_v": v, "spice_currents_a": ref, "held_out": held,
              "cell_voltages_v": _cell_voltages(spec, full) if full.ok else np.full(g[-1].shape, np.nan),
              "cell_voltages_input_v": full_v,
              **{f"pred_{m}": p for m, p in preds.items()}}
    if out is not None:
        save_calibration(out, cal, arrays)
    return cal, arrays


def _cell_voltages(spec: TileSpec, res) -> np.ndarray:
    """Voltage across every cell (rows, cols) in V from a SPICE result's node voltages."""
    from ..circuit.tile import bl_node, wl_node

    nv = res.node_voltages_v
    return np.array([[nv[wl_node(i, j)] - nv[bl_node(i, j)] for j in range(spec.cols)]
                     for i in range(spec.rows)])


def save_calibration(path: str | Path, cal: Calibration, arrays: dict[str, np.ndarray]) -> Path:
    with atomic_h5(path) as f:
        f.attrs["kind"] = "spicecross-calibration"
        f.attrs["tile_spec"] = cal.spec.to_json()
        f.attrs["g_sel_s"] = np.nan if cal.g_sel_s is None else cal.g_sel_s
        f.attrs["g_sel_layers_s"] = json.dumps(None if cal.g_sel_layers_s is None
                                               else list(cal.g_sel_layers_s))
        f.attrs["best_mode"] = cal.best_mode
        f.attrs["errors"] = json.dumps(cal.errors, sort_keys=True)
        write_group(f, "provenance", {}, cal.provenance)
        write_group(f, "data", arrays)
    return Path(path)


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration written by :func:`calibrate` (one-line errors for wrong files)."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"calibration file not found: {p}")
    try:
        with h5py.File(p, "r") as f:
            if f.attrs.get("kind") != "spicecross-calibration":
                raise ValueError(f"{p} is not a spicecross calibration file")
            spec = TileSpec.from_json(f.attrs["tile_spec"])
            g_sel = float(f.attrs["g_sel_s"])
            layers = json.loads(f.attrs.get("g_sel_layers_s", "null"))
            return Calibration(spec, None if np.isnan(g_sel) else g_sel,
                               json.loads(f.attrs["errors"]), str(f.attrs["best_mode"]),
                               read_attrs(f["provenance"]),
                               None if layers is None else tuple(float(g) for g in layers))
    except (OSError, KeyError, TypeError, ValueError) as exc:   # corrupt file, missing keys
        if isinstance(exc, ValueError) and str(exc).startswith(str(p)):
            raise
        raise unreadable(p, "calibration file", exc) from None


def calibration_mismatches(cal: Calibration, config) -> list[str]:
    """What makes ``cal`` unfit for the network described by ``config`` (an AnalogConfig): a
    different tile size, cell, wires, driver/sense resistance, selector, device set, or read
    voltage range (the calibration's largest read voltage vs the network's full-scale read,
    more than 5 % apart). Empty when it fits."""
    a, b = cal.spec, config.tile
    out = [f"{name} {getattr(a, name)!r} vs the network's {getattr(b, name)!r}"
           for name in ("rows", "cols", "cell", "r_wire_wl_ohm", "r_wire_bl_ohm", "r_driver_ohm",
                        "r_sense_ohm", "device_set")
           if getattr(a, name) != getattr(b, name)]
    if a.selector != b.selector:
        out.append(f"selector {a.selector} vs the network's {b.selector}")
    v_cal = cal.provenance.get("v_read_max_v")
    if v_cal is not None and abs(float(v_cal) - config.read_voltage_v) > 0.05 * config.read_voltage_v:
        out.append(f"read voltage {float(v_cal):g} V vs the network's {config.read_voltage_v:g} V")
    return out


def apply_calibration(config, cal: Calibration, keep_g_sel: bool = False):
    """``config`` with the calibration's fitted selector conductance, after checking that the
    calibration was made for this tile, cell, device set, selector and read voltage
    (ValueError naming the first mismatches otherwise)."""
    bad = calibration_mismatches(cal, config)
    if bad:
        raise ValueError("calibration made for another circuit: " + "; ".join(bad[:3]))
    if cal.g_sel_s is None:
        raise ValueError("it holds no fitted g_sel (a 0T1R calibration?)")
    if keep_g_sel:
        return config
    return config.with_(g_sel_s=cal.g_sel_s, g_sel_layers_s=cal.g_sel_layers_s)


__all__ = ["Calibration", "apply_calibration", "calibrate", "calibration_mismatches",
           "draw_tiles", "load_calibration", "save_calibration"]
