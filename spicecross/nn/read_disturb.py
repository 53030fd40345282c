"""Network-level read disturb: the test set streams through tiles whose VTEAM devices move
with every read (``spicecross infer --read-disturb``).

The test images are taken in chunks of ``chunk`` images. Each chunk is inferred with the
devices' present conductances (its accuracy is recorded); then, per analog layer and row tile,
the read pulses that chunk applied — every word-line vector of every read, both phases of
two-phase reads (all first-phase reads of the chunk, then all second-phase ones), at the DAC's
voltages (full scale ``--v-read``), each a rectangular pulse of ``pulse.width_s`` — advance
every cell of the row tile's G⁺ and G⁻ arrays with its exact cell voltage
(:func:`~spicecross.surrogate.read_disturb_update.advance_arrays`); the read matrices
of the row tiles that moved are then rebuilt by the array's own path
(:meth:`~spicecross.surrogate.array.ProgrammedArray.refresh_row_tiles`; the transfer-matrix
disk cache bypassed: evolving arrays would only fill it) before the next chunk. The converters
keep the calibration made on the programmed network (a chip calibrates once). A layer whose
DAC range itself stays within the thresholds (every read's span is at most the range's) is
skipped whole.

Only the reads a threshold can see are unfolded (:func:`candidate_reads`: the passive bound
of each whole vector, from its patch's extremes in float32, decides first; 8–17 % of the MNIST
network's reads at 0.7–1 V), as float64 (reads × inputs) arrays per layer and chunk; each row
tile gets the same live reads, in the same order, as from every vector
(tests/test_read_disturb_fast.py).

1T1R tiles: every read's memristor voltages come from the exact nonlinear solve with the
selectors (gates at their DC voltage), the passive bound counting the selectors' bulk voltage
as applied (:mod:`~spicecross.surrogate.read_disturb_update`).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ..surrogate import transfer_cache
from ..surrogate.read_disturb_update import (DisturbStats, ReadPulse, TransferCache,
                                             advance_arrays, inert_reads)

__all__ = ["candidate_reads", "check_disturb_config", "disturb_network", "read_disturb_infer",
           "plot_read_disturb"]


def check_disturb_config(config) -> None:
    """One-line ValueError for configurations read disturb does not model."""
    if config.compat != "physical":
        raise ValueError(f"--read-disturb needs the physical read path, got --compat "
                         f"{config.compat}")
    nid = config.nonideal
    if nid.stuck_hrs_p or nid.stuck_lrs_p:
        raise ValueError(f"--read-disturb would move stuck devices (the programmed arrays keep "
                         f"no stuck-at mask): drop --stuck-hrs {nid.stuck_hrs_p:g} / --stuck-lrs "
                         f"{nid.stuck_lrs_p:g}")


def _infer_chunk(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits of ``x`` and every analog layer's input, from one forward pass."""
    from .calibrator import run_with_layer_inputs

    seen: dict[str, torch.Tensor] = {}
    out: list[torch.Tensor] = []
    hook = model.register_forward_hook(lambda m, i, o: out.append(o))
    try:
        run_with_layer_inputs(model, x, lambda name, layer, xin: seen.__setitem__(name, xin))
    finally:
        hook.remove()
    return out[0], seen


def _patches(v: torch.Tensor, layer, idx: np.ndarray, n_pos: int) -> torch.Tensor:
    """The unfolded inputs (m, C·kh·kw) of the convolution reads ``idx`` (flat indices
    image·``n_pos`` + output position) of word-line voltages ``v`` (N, C, H, W) in V: the rows
    ``F.unfold`` gives them, in its order (channel, kernel row, kernel column), gathered
    without unfolding the other reads (per kernel offset, the reads' input pixels with all
    their channels, from a channels-last copy)."""
    import torch.nn.functional as F

    (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
    (ph, pw), (dh, dw) = layer.padding, layer.dilation
    wo = layer._output_size(v.shape[2], v.shape[3])[1]
    pixels = F.pad(v, (pw, pw, ph, ph)).permute(0, 2, 3, 1).contiguous()   # (N, Hp, Wp, C)
    i = torch.from_numpy(idx)
    img, pos = i // n_pos, i % n_pos
    y0, x0 = pos // wo * sh, pos % wo * sw
    out = torch.stack([pixels[img, y0 + dh * a, x0 + dw * b]                # (m, C) each
                       for a in range(kh) for b in range(kw)], dim=2)       # (m, C, kh·kw)
    return out.reshape(len(idx), v.shape[1] * kh * kw)


def candidate_reads(layer, x: torch.Tensor, v_bulk_v: float = 0.0) -> tuple[int, np.ndarray]:
    """All reads ``x`` puts on the layer (every phase, the order of
    :func:`~spicecross.calibration.network_check._word_line_vectors`): their number and the
    word-line vectors (m, K) in V, float64, of those the passive bound over the whole vector
    (:func:`~spicecross.surrogate.read_disturb_update.inert_reads` of its largest and smallest
    voltage) does not prove inert, in read order. Every other read is inert in every row tile
    (a row tile's span is at most the whole vector's), so the row tiles' live reads are the
    same as from all vectors; the spans come from the float32 DAC voltages (max and min are
    exact in float32) and only the candidates are unfolded and promoted to float64."""
    import torch.nn.functional as F

    p = layer.config.device_params()
    total, out = 0, []
    for _, v in layer._dac(x, layer.calibration):
        if v.dim() == 4:                 # per read: extremes of its patch (padding zeros too)
            (ph, pw), pad = layer.padding, lambda m: F.pad(m, (pw, pw, ph, ph))
            geo = (layer.kernel_size, layer.stride, 0, layer.dilation)
            hi = F.max_pool2d(pad(v.amax(1, keepdim=True)), *geo).reshape(-1)
            lo = -F.max_pool2d(pad(-v.amin(1, keepdim=True)), *geo).reshape(-1)
        else:
            hi, lo = v.amax(1), v.amin(1)
        ext = torch.stack([hi, lo], 1).to(torch.float64).numpy()
        idx = np.flatnonzero(~inert_reads(ext, p, v_bulk_v))
        total += len(ext)
        if v.dim() == 4:
            out.append(_patches(v, layer, idx, len(ext) // v.shape[0]))
        else:
            out.append(v[torch.from_numpy(idx)].reshape(len(idx), layer.array.k_in))
    return total, torch.cat(out).to(torch.float64).numpy()


def _live_row_reads(layer, x: torch.Tensor, stats: DisturbStats) -> list[tuple[int, np.ndarray]]:
    """The reads of inputs ``x`` on one analog layer that a threshold can see, per row tile:
    ``(row tile, word-line voltages (m, rows used) in V)`` for the row tiles with any; the
    inert reads only counted in ``stats``."""
    arr = layer.array
    p = layer.config.device_params()
    v_bulk = arr.spec.selector.v_bulk_v if arr.spec.cell == "1t1r" else 0.0
    dac_range = np.array([arr.read_range_v()])  # bounds every read of the layer (passive bound)
    if inert_reads(dac_range, p, v_bulk)[0]:
        n = candidate_reads(layer, x[:1], v_bulk)[0] * x.shape[0]   # reads per image × images
        stats.reads += n
        stats.inert_reads += n
        return []
    M, vecs = candidate_reads(layer, x, v_bulk)                       # M reads; (m, K) V
    out = []
    for r in range(arr.n_row_tiles):
        part = vecs[:, arr.tile_rows_of(r)]
        # the passive-network bound per row tile first, so inert reads are never copied
        idx = np.flatnonzero(~inert_reads(part, p, v_bulk))
        stats.reads += M - len(idx)
        stats.inert_reads += M - len(idx)
        if len(idx):
            out.append((r, np.ascontiguousarray(part[idx])))   # other word lines: 0 V
    return out


def _disturb_layers(layers: list, inputs: list[torch.Tensor], pulse: ReadPulse, dw_max: float,
                    caches: dict, stats: DisturbStats) -> bool:
    """Advance the arrays of the analog ``layers`` by the reads of their ``inputs``; True if
    any conductance changed. Every (layer, row tile) is advanced on its own (its G⁺ and G⁻
    arrays share its reads), and the read matrices of the row tiles that moved are rebuilt:
    layers and row tiles shared among single-threaded workers (one per torch thread),
    results applied in order, so the answer does not depend on the worker count."""
    from .analog_base import map_single_threaded, torch_threads

    def live(layer_x):
        st = DisturbStats()
        return _live_row_reads(*layer_x, st), st

    workers = torch_threads()
    parts = map_single_threaded(live, zip(layers, inputs), workers)
    jobs = []
    for layer, (rows, st) in zip(layers, parts):
        stats.add(st)
        jobs += [(layer, r, v) for r, v in rows]

    def advance(job):
        layer, r, v = job
        cfg, arr = layer.config, layer.array
        g = arr.g_dev[:, r].reshape(-1, cfg.tile_rows, cfg.tile_cols)     # (2·nc, R, C)
        return advance_arrays(arr.spec, cfg.device_params(), g, v, pulse, dw_max=dw_max,
                              wires=cfg.wires,
                              cache=caches.setdefault((id(layer), r), TransferCache()))

    changed: dict[int, tuple] = {}
    for (layer, r, _), (g_new, st) in zip(jobs, map_single_threaded(advance, jobs, workers)):
        stats.add(st)
        arr = layer.array
        if not np.array_equal(g_new, arr.g_dev[:, r].reshape(g_new.shape)):
            arr.g_dev[:, r] = g_new.reshape(arr.g_dev[:, r].shape)
            changed.setdefault(id(layer), (arr, []))[1].append(r)
    with transfer_cache.disabled():                # evolving arrays would only fill it
        map_single_threaded(lambda item: item[0].refresh_row_tiles(item[1]), changed.values(),
                            workers)
    return bool(changed)


def _state_change(model: nn.Module, start: dict[str, np.ndarray]) -> tuple[float, float, float]:
    """Share of cells whose state moved, mean and largest |Δstate| (of the state range) since
    the stream began (conductances ``start`` per layer), over every array of every layer."""
    from ..devices.vteam import state_at_conductance
    from .analog import analog_layers

    moved = total = 0
    dsum = dmax = 0.0
    for name, layer in analog_layers(model):
        arr = layer.array
        p = layer.config.device_params()
        d = np.abs(state_at_conductance(p, arr.g_dev) - state_at_conductance(p, start[name]))
        moved += int((arr.g_dev != start[name]).sum())
        total += d.size
        dsum += float(d.sum())
        dmax = max(dmax, float(d.max()))
    return moved / total, dsum / total, dmax


def disturb_network(model: nn.Module, test: TensorDataset, pulse: ReadPulse, chunk: int = 100,
                    dw_max: float = 0.01, progress: bool = False) -> dict[str, Any]:
    """Stream ``test`` through the calibrated patched ``model`` in chunks, disturbing its
    arrays after each (module doc). Returns per chunk ``images`` (processed so far),
    ``accuracy`` (% of that chunk), ``moved_share``, ``mean_abs_dw`` and ``max_abs_dw`` (of the
    state range, since the stream began) after the chunk's update; the overall ``accuracy``,
    ``stats`` (:class:`DisturbStats` summed) and ``seconds`` (inference plus updates)."""
    from .analog import analog_layers

    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"disturb chunk must be a positive number of images, got {chunk!r}")
    start = {}
    for name, layer in analog_layers(model):
        check_disturb_config(layer.config)
        start[name] = layer.array.g_dev
        layer.array.g_dev = layer.array.g_dev.copy()       # the stream writes its own copy
    x_all, y_all = test.tensors
    caches: dict = {}
    stats = DisturbStats()
    rows: list[dict[str, float]] = []
    correct = 0
    t0 = time.perf_counter()
    for lo in range(0, len(y_all), chunk):
        x, y = x_all[lo:lo + chunk], y_all[lo:lo + chunk]
        logits, inputs = _infer_chunk(model, x)
        ok = int((logits.argmax(1) == y).sum())
        correct += ok
        with torch.no_grad():
            layers = list(analog_layers(model))
            changed = _disturb_layers([m for _, m in layers], [inputs[n] for n, _ in layers],
                                      pulse, dw_max, caches, stats)
        share, mean_dw, max_dw = _state_change(model, start) if changed or not rows else \
            (rows[-1]["moved_share"], rows[-1]["mean_abs_dw"], rows[-1]["max_abs_dw"])
        rows.append({"images": lo + len(y), "accuracy": 100.0 * ok / len(y),
                     "moved_share": share, "mean_abs_dw": mean_dw, "max_abs_dw": max_dw})
        if progress:
            print(f"read disturb: {lo + len(y)}/{len(y_all)} images, chunk accuracy "
                  f"{rows[-1]['accuracy']:.2f} %, cells moved {100 * share:.3g} %, mean |Δw| "
                  f"{mean_dw:.3g}", file=sys.stderr, flush=True)
    return {"chunks": rows, "accuracy": 100.0 * correct / max(1, len(y_all)),
            "stats": stats, "seconds": time.perf_counter() - t0}


def read_disturb_infer(model_name: str, data_root, config, *, pulse_width_s: float,
                       chunk: int = 100, limit: int | None = None, weights=None,
                       dw_max: float = 0.01, batch_size: int = 500,
                       progress: bool = False) -> dict[str, Any]:
    """``infer --read-disturb``: program and calibrate the network as ``infer`` does, measure
    the undisturbed accuracy on the test images, then stream them through the disturbed
    network (:func:`disturb_network`, rectangular read pulses of ``pulse_width_s``)."""
    from .analog import patch_model
    from .inference import _accuracy, load_eval_data, load_network

    check_disturb_config(config)
    pulse = ReadPulse(float(pulse_width_s))
    model = load_network(model_name, weights)
    data = load_eval_data(model_name, data_root, limit, config.calibration_images)
    digital_acc, _ = _accuracy(model, data.test, batch_size)
    analog = patch_model(model, config, data.calibration)
    frozen_acc, frozen_s = _accuracy(analog, data.test, batch_size)
    res = disturb_network(analog, data.test, pulse, chunk, dw_max, progress)
    res.update(model=model_name, data=data.source, images=len(data.test.tensors[1]),
               digital_accuracy=digital_acc, no_disturb_accuracy=frozen_acc,
               no_disturb_seconds=frozen_s, read_voltage_v=config.read_voltage_v,
               read_scheme=config.read_scheme, pulse_width_s=pulse.width_s, chunk=chunk,
               device_set=config.device_set, tile=f"{config.tile_rows}x{config.tile_cols}",
               cell=config.cell)
    return res


def json_report(res: dict[str, Any]) -> dict[str, Any]:
    """The ``"read_disturb"`` object of ``infer --read-disturb --json``."""
    st = res["stats"]
    return {"images": [c["images"] for c in res["chunks"]],
            "accuracy": [round(c["accuracy"], 4) for c in res["chunks"]],
            "moved_share": [c["moved_share"] for c in res["chunks"]],
            "mean_abs_dw": [c["mean_abs_dw"] for c in res["chunks"]],
            "max_abs_dw": [c["max_abs_dw"] for c in res["chunks"]],
            "read_voltage_v": res["read_voltage_v"], "pulse_width_s": res["pulse_width_s"],
            "chunk": res["chunk"], "seconds": round(res["seconds"], 3),
            "reads": st.reads, "inert_reads": st.inert_reads, "rows_exact": st.rows_exact,
            "rows_aggregated": st.rows_aggregated, "rows_skipped": st.rows_skipped,
            "transfer_builds": st.transfer_builds}


def plot_read_disturb(runs: list[dict[str, Any]], path: str | Path) -> Path:
    """Chunk accuracy against images read, one line per run (labelled by its read voltage
    and pulse width), the undisturbed accuracy dashed; written atomically as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..store import save_figure_atomic

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for k, res in enumerate(runs):
        color = f"C{k}"
        xs = [c["images"] for c in res["chunks"]]
        ax.plot(xs, [c["accuracy"] for c in res["chunks"]], "o-", ms=3, color=color,
                label=f"{res['read_voltage_v']:g} V reads, {1e9 * res['pulse_width_s']:g} ns "
                      f"(cells moved {100 * res['chunks'][-1]['moved_share']:.3g} %)")
        ax.axhline(res["no_disturb_accuracy"], color=color, ls="--", lw=0.8)
    r0 = runs[0]
    ax.set_xlabel("test images read")
    ax.set_ylabel(f"accuracy of each chunk of {r0['chunk']} images (%)")
    ax.set_title(f"read disturb: {r0['model']}, {r0['tile']} {r0['cell'].upper()} "
                 f"{r0['device_set']} "
                 f"(dashed: undisturbed)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = save_figure_atomic(fig, path)
    plt.close(fig)
    return out


def print_report(res: dict[str, Any]) -> None:
    """The text report of ``infer --read-disturb``."""
    st = res["stats"]
    print(f"{res['model']}: {res['images']} images ({res['data']})")
    print(f"  digital      {res['digital_accuracy']:.2f} %")
    print(f"  undisturbed  {res['no_disturb_accuracy']:.2f} %  ({res['no_disturb_seconds']:.2f} s)")
    print(f"  read disturb {res['accuracy']:.2f} %  ({res['seconds']:.2f} s; reads at "
          f"{res['read_voltage_v']:g} V {res['read_scheme']}, pulses of "
          f"{1e9 * res['pulse_width_s']:g} ns, {res['tile']} {res['cell'].upper()} "
          f"{res['device_set']}, "
          f"chunks of {res['chunk']})")
    print(f"  reads {st.reads}: {st.inert_reads} provably below threshold; (read, row) pairs "
          f"solved {st.rows_exact}, aggregated {st.rows_aggregated}; {st.transfer_builds} "
          f"transfer builds")
    print(f"  {'images':>8} {'accuracy %':>10} {'cells moved %':>14} {'mean |dw|':>10} "
          f"{'max |dw|':>10}")
    for c in res["chunks"]:
        print(f"  {c['images']:>8} {c['accuracy']:>10.2f} {100 * c['moved_share']:>14.4g} "
              f"{c['mean_abs_dw']:>10.3g} {c['max_abs_dw']:>10.3g}")


def cmd_read_disturb(args, config) -> int:
    """``spicecross infer --read-disturb``: the run, its text or JSON report and the PNG."""
    import json

    from ..store import check_output_path

    if getattr(args, "program", None) is not None:
        raise ValueError(f"--read-disturb streams the network as programmed; it cannot be "
                         f"combined with --program {args.program}")
    if args.plot is not None:
        check_output_path(args.plot, "--plot")
    res = read_disturb_infer(args.model, args.data, config, pulse_width_s=1e-9 * args.read_pulse_ns,
                             chunk=args.disturb_chunk, limit=args.limit, weights=args.weights,
                             batch_size=args.batch_size, progress=not args.json)
    if args.plot is not None:
        plot_read_disturb([res], args.plot)
    if args.json:
        print(json.dumps({"accuracy": round(res["accuracy"], 4),
                          "no_disturb_accuracy": round(res["no_disturb_accuracy"], 4),
                          "digital_accuracy": round(res["digital_accuracy"], 4),
                          "images": res["images"], "read_voltage_v": res["read_voltage_v"],
                          "read_scheme": res["read_scheme"],
                          "read_disturb": json_report(res)}))
    else:
        print_report(res)
        if args.plot is not None:
            print(f"  plot: {args.plot}")
    sys.stdout.flush()
    return 0
