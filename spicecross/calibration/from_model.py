"""Calibrate where you infer: the calibration set drawn from the patched network itself.

The network is patched and its converters calibrated as for inference; then tile reads are
sampled from it (:func:`~spicecross.calibration.network_check.sample_tile_reads`: its real
programmed arrays and the word-line vectors that calibration images put on them, every read
phase), both arrays of every sampled tile are solved in SPICE (VACASK by default, parallel,
cached), the sampled tiles of each layer are split into a training and a held-out set (by tile;
a layer that fits on one tile, such as a first convolution, holds out half of its reads and says
so), the 1T1R selector's effective conductance ``g_sel`` of the ``linear`` mode is
fitted on the training tiles, one value per layer (each layer reads its own voltage range, and
the level-1 selector's conductance falls with V_DS) and one for the whole network, and the held-out error is reported per layer in % of the array
currents and in ADC steps of the layer's own converters.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from ..spice.simulators import DEFAULT_CHECK_BACKEND
from ..surrogate.mapping import effective_cell_conductance
from ..surrogate.transfer import transfer_matrices
from .calibrate import Calibration
from ..nn.calibrator import adc_yardstick
from .network_check import SampledTile, sample_tile_reads, solve_sampled_arrays

#: Search interval of the fitted g_sel as a ratio to the level-1 on-conductance.
G_SEL_RATIO_BOUNDS = (0.3, 3.0)


def _linear_currents(spec, g_dev: np.ndarray, v: list[np.ndarray], g_sel: float | None
                     ) -> list[np.ndarray]:
    """Linear-mode sense currents (n, cols) in A of each array (device conductances g_dev
    (arrays, rows, cols) in S) for its word-line voltages v[k] (n, rows) in V."""
    T = transfer_matrices(spec.for_solvers(), effective_cell_conductance(spec, g_dev, g_sel))
    return [vk @ T[k].numpy().T for k, vk in enumerate(v)]


def _fit_g_sel(spec, g_dev: np.ndarray, v: list[np.ndarray], spice: list[np.ndarray],
               ks: list[int]) -> float:
    """The g_sel (S) whose linear-mode currents best match SPICE (least squares) on arrays ks."""
    g0 = spec.selector.g_on_s

    def loss(log_ratio: float) -> float:
        pred = _linear_currents(spec, g_dev[ks], [v[k] for k in ks], g0 * np.exp(log_ratio))
        return float(sum(np.sum((p - spice[k]) ** 2) for p, k in zip(pred, ks)))

    fit = minimize_scalar(loss, bounds=tuple(np.log(G_SEL_RATIO_BOUNDS)), method="bounded",
                          options={"xatol": 1e-6})
    return g0 * float(np.exp(fit.x))


def calibrate_from_model(model_name: str, data_root, config, reads_per_layer: int = 64,
                         images: int = 64, holdout: float = 0.34,
                         backend: str = DEFAULT_CHECK_BACKEND, n_jobs: int | None = None,
                         parallel_backend: str = "loky", scheduler: str | None = None,
                         weights=None, cache_dir="default", progress: bool = True
                         ) -> tuple[Calibration, dict[str, Any]]:
    """Fit and verify the surrogate on reads of the network ``model_name`` patched per
    ``config`` (an AnalogConfig). Returns the Calibration (for ``config.tile``, with the read
    voltage it was made at) and a report with the held-out errors per layer."""
    from ..nn.analog import analog_layers, patch_model
    from ..nn.inference import load_eval_data, load_network

    if not 0 < holdout < 1:
        raise ValueError(f"held-out share must be in (0, 1), got {holdout!r}")
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise ValueError(f"images must be a positive integer, got {images!r}")
    t0 = time.perf_counter()
    model = load_network(model_name, weights)
    data = load_eval_data(model_name, data_root, limit=1, calibration_images=config.calibration_images)
    net = patch_model(model, config, data.calibration)
    layers = dict(analog_layers(net))
    sampled = sample_tile_reads(net, data.calibration[:images], reads_per_layer, seed=config.seed)
    split_by_read = set()
    for name, tiles in sampled.items():
        if len(tiles) == 1 and len(tiles[0].v) >= 2:       # a one-tile layer: hold out reads
            t, h = tiles[0], len(tiles[0].v) // 2
            sampled[name] = [SampledTile(name, t.r, t.c, t.v[:h]), SampledTile(name, t.r, t.c, t.v[h:])]
            split_by_read.add(name)
    jobs, index = [], []
    for name, tiles in sampled.items():
        for t in tiles:
            for s in (0, 1):
                jobs.append((config.tile.for_solvers(), layers[name].array.g_dev[s, t.r, t.c], t.v))
                index.append((name, t, s))
    spice = solve_sampled_arrays(jobs, backend, n_jobs, parallel_backend, scheduler, cache_dir,
                                 progress)
    spice_s = time.perf_counter() - t0
    # split by tile within each layer: the last share of each layer's tiles is held out
    held: set[int] = set()
    for name, tiles in sampled.items():
        n_hold = int(round(holdout * len(tiles))) if len(tiles) > 1 else 0
        held |= {id(t) for t in tiles[len(tiles) - n_hold:]}
    train = [k for k, (_, t, _) in enumerate(index) if id(t) not in held]
    test = [k for k, (_, t, _) in enumerate(index) if id(t) in held] or train
    g_dev = np.stack([j[1] for j in jobs])
    v = [j[2] for j in jobs]
    spec = config.tile

    g_sel, per_layer_g = None, None
    names = list(sampled)
    if spec.cell == "1t1r":
        g_sel = _fit_g_sel(spec, g_dev, v, spice, train)
        # each layer reads its own voltage range: one effective g_sel per layer
        per_layer_g = tuple(_fit_g_sel(spec, g_dev, v, spice,
                                       [k for k in train if index[k][0] == name] or train)
                            for name in names)
    g_of = {name: (per_layer_g[i] if per_layer_g else None) for i, name in enumerate(names)}
    pred = [None] * len(jobs)
    for name in names:
        ks = [k for k in range(len(jobs)) if index[k][0] == name]
        for k, p in zip(ks, _linear_currents(spec, g_dev[ks], [v[k] for k in ks], g_of[name])):
            pred[k] = p
    per_layer = _held_out_report(sampled, layers, index, test, pred, spice)
    for p in per_layer:
        p["held_out_by"] = "read" if p["layer"] in split_by_read else "tile"
    errors = {"linear": {"rel_rms": max(p["rel_rms"] for p in per_layer),
                         "rel_max": max(p["rel_max"] for p in per_layer)}}
    prov = {"source": f"model:{model_name}", "simulator": backend, "v_read_max_v": config.read_voltage_v,
            "read_scheme": config.read_scheme, "reads_per_layer": reads_per_layer, "images": images,
            "seed": config.seed, "held_out_share": holdout, "spice_seconds": spice_s,
            "tile_spec": spec.to_json(), "config": config.to_json()}
    cal = Calibration(spec, g_sel, errors, "linear", prov, per_layer_g)
    report = {"g_sel_s": g_sel, "g_sel_layers_s": per_layer_g,
              "g_sel_level1_s": spec.selector.g_on_s if spec.cell == "1t1r" else None,
              "reads": int(sum(len(t.v) for ts in sampled.values() for t in ts)),
              "held_out": per_layer, "simulator": backend, "seconds": time.perf_counter() - t0}
    return cal, report


def _held_out_report(sampled, layers, index, test, pred, spice) -> list[dict[str, Any]]:
    """Per layer: relative RMS/max error of the held-out array currents, and the max/RMS error
    of the differential current in ADC steps of the layer's calibrated converters."""
    out = []
    for name in sampled:
        ks = [k for k in test if index[k][0] == name]
        if not ks:
            continue
        layer = layers[name]
        cfg, cal = layer.config, layer.calibration
        d = np.concatenate([pred[k] - spice[k] for k in ks])
        ref = np.concatenate([spice[k] for k in ks])
        lsb_err = []
        for k in ks:
            _, t, s = index[k]
            if s != 0:
                continue
            k_neg = next(j for j in ks if index[j][1] is t and index[j][2] == 1)
            C = cfg.tile_cols
            cols = slice(t.c * C, min((t.c + 1) * C, layer.array.c_out))
            n = cols.stop - cols.start
            diff_err = ((pred[k] - pred[k_neg]) - (spice[k] - spice[k_neg]))[:, :n]
            fs, steps = adc_yardstick(cal, cfg.adc_bits, t.r, cols,
                                      (spice[k] - spice[k_neg])[:, :n])
            lsb_err.append(np.abs(diff_err) / (fs / steps))
        e = np.concatenate([x.ravel() for x in lsb_err]) if lsb_err else np.zeros(1)
        out.append({"layer": name, "held_out_reads": int(sum(len(index[k][1].v) for k in ks) // 2),
                    "rel_rms": float(np.sqrt(np.mean(d ** 2)) / np.sqrt(np.mean(ref ** 2))),
                    "rel_max": float(np.abs(d).max() / np.abs(ref).max()),
                    "max_err_lsb": float(e.max()), "rms_err_lsb": float(np.sqrt(np.mean(e ** 2)))})
    return out


__all__ = ["calibrate_from_model"]
