"""One MNIST test image through the whole network with every array read in SPICE (the SPICE
loop, ``spicecross infer --spice-loop``), 0T1R and 1T1R, and in the same run the per-read cost
of the batched path (one simulator run per chunk of input vectors of one programmed array)
against one ``.op`` per read.

    .venv/bin/python benchmarks/spice_loop.py                       # 64×64, 0T1R and 1T1R, VACASK
    .venv/bin/python benchmarks/spice_loop.py --data ../shared/data  # a real MNIST test image
    .venv/bin/python benchmarks/spice_loop.py --cells 0t1r --tile 32 --single 2
    .venv/bin/python benchmarks/spice_loop.py --cells 0t1r --modes direct superposed

Method. Per cell type: the shipped MNIST CNN is patched with the default AnalogConfig (tile
``--tile``², linear surrogate, two-phase reads, 8-bit DAC/ADC, 256 calibration images), then
the first test image runs through the surrogate and through the SPICE loop (cache off,
``--jobs`` loky workers): the wall time of the SPICE forward pass is the per-image time
(targets: ≤ 60 s 0T1R, ≤ 3 min 1T1R). Then, on one programmed array of the second conv layer
with the word-line vectors that image puts on it, the batched path (``solve_reads``, one chunk
of ``--vectors`` vectors, serial) and ``--single`` of the same vectors one ``.op`` each
(``solve_tile``) are timed, interleaved, min of ``--repeats``; both include netlist emission,
the simulator process and parsing. No timing is asserted anywhere.

``--modes``: ``direct`` solves every distinct array read in SPICE; ``superposed`` solves, for
linear (0T1R) arrays read with more distinct vectors than rows, the unit vectors and takes the
reads by superposition (``SpiceLoopSettings.superpose_linear``); 1T1R is always direct.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, load_str  # noqa: E402

from spicecross.calibration.network_check import _layer_inputs, _word_line_vectors  # noqa: E402
from spicecross.nn.analog import analog_layers, patch_model  # noqa: E402
from spicecross.nn.inference import load_eval_data, load_network  # noqa: E402
from spicecross.nn.spice_loop import SpiceLoopSettings, forward_in_spice  # noqa: E402
from spicecross.spice.solve import solve_reads, solve_tile  # noqa: E402
from spicecross.surrogate.config import AnalogConfig  # noqa: E402


def per_read_costs(analog, x, simulator: str, vectors: int, single: int, repeats: int) -> dict:
    """Batched vs one-.op per-read cost on the G⁺ array of tile (0, 0) of the second analog
    layer, with distinct word-line vectors that ``x`` applies to it."""
    name, layer = analog_layers(analog)[1]
    vecs = _word_line_vectors(layer, _layer_inputs(analog, x)[name])
    R = layer.config.tile_rows
    rows = layer.array.tile_rows_of(0)
    block = np.zeros((len(vecs), R))
    block[:, :rows.stop - rows.start] = vecs[:, rows]
    block = np.unique(block[np.abs(block).max(axis=1) > 0], axis=0)
    v = block[np.random.default_rng(0).permutation(len(block))[:vectors]]
    spec, g = layer.array.spec.for_solvers(), layer.array.g_dev[0, 0, 0]
    batched, per_op, diff = [], [], 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = solve_reads(spec, g, v, backend=simulator, cache_dir=None, chunk=len(v))
        batched.append((time.perf_counter() - t0) / len(v))
        if not res.ok:
            raise RuntimeError(res.error)
        t0 = time.perf_counter()
        ones = [solve_tile(spec, g, vec, backend=simulator, cache_dir=None) for vec in v[:single]]
        per_op.append((time.perf_counter() - t0) / single)
        ref = np.array([o.sense_currents_a for o in ones])
        diff = max(diff, float((np.abs(res.currents_a[:single] - ref).max(axis=1)
                                / np.abs(ref).max(axis=1)).max()))
    return {"layer": name, "bench_vectors": len(v), "batched_s": min(batched), "per_op_s": min(per_op),
            "ratio": min(per_op) / min(batched), "rel_diff": diff}


def run_cell(cell: str, args, superpose: bool) -> dict:
    config = AnalogConfig.build(tile_rows=args.tile, tile_cols=args.tile, cell=cell)
    net = load_network("mnist")
    data = load_eval_data("mnist", args.data, 1, config.calibration_images)
    t0 = time.perf_counter()
    analog = patch_model(net, config, data.calibration)
    program_s = time.perf_counter() - t0
    x, y = data.test.tensors
    t0 = time.perf_counter()
    with torch.no_grad():
        sur = analog(x)
    sur_s = time.perf_counter() - t0
    settings = SpiceLoopSettings(simulator=args.simulator, n_jobs=args.jobs, cache_dir=None,
                                 progress=False, superpose_linear=superpose)
    t0 = time.perf_counter()
    spice, readers = forward_in_spice(analog, x, settings)
    spice_s = time.perf_counter() - t0
    reads = sum(r.reads for r in readers.values())
    superposed = sum(r.superposed for r in readers.values())
    vectors = sum(r.vectors for r in readers.values())
    costs = per_read_costs(analog, x, args.simulator, args.vectors, args.single, args.repeats)
    return {"cell": cell + (" superposed" if superpose else ""), "superposed": superposed,
            "program_s": program_s, "surrogate_s": sur_s, "spice_s": spice_s,
            "reads": reads, "vectors": vectors, "label": int(y[0]),
            "class_spice": int(spice.argmax(1)[0]), "class_surrogate": int(sur.argmax(1)[0]),
            "logit_rel_diff": float((spice - sur).abs().max() / spice.abs().max()),
            "max_err_lsb": max(float(r.errors.max_lsb.max()) for r in readers.values()),
            "layers": {n: (r.reads, round(r.seconds, 1), sorted(r.simulators))
                       for n, r in readers.items()}, **costs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="+", default=["0t1r", "1t1r"], choices=["0t1r", "1t1r"])
    ap.add_argument("--tile", type=int, default=64, help="tile rows = cols (default 64)")
    ap.add_argument("--simulator", default="vacask", choices=["vacask", "ngspice"])
    ap.add_argument("--data", default=None, help="data root (default: the bundled MNIST sample)")
    ap.add_argument("--jobs", type=int, default=2, help="parallel simulator runs (default 2)")
    ap.add_argument("--vectors", type=int, default=64, help="vectors of the batched per-read run")
    ap.add_argument("--single", type=int, default=4, help="vectors solved one .op each")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--modes", nargs="+", default=["direct"], choices=["direct", "superposed"],
                    help="0T1R: every read in SPICE, and/or unit vectors + superposition")
    args = ap.parse_args()
    print(header("SPICE loop: one MNIST image with every array read in SPICE"))
    print(f"\n{args.tile}×{args.tile} tiles, {args.simulator}, {args.jobs} workers, cache off, "
          "default AnalogConfig (linear surrogate, two-phase reads, 8-bit DAC/ADC)\n")
    rows = []
    runs = [(c, m == "superposed") for c in args.cells for m in args.modes
            if c == "0t1r" or m == "direct"]
    for cell, superpose in runs:
        r = run_cell(cell, args, superpose)
        rows.append(r)
        print(f"{r['cell']}: {r['superposed']} reads by superposition; per layer (array reads, s in the reader, simulators): {r['layers']}; "
              f"SPICE forward {r['spice_s']:.1f} s, {r['reads']} array reads; per read one .op "
              f"{r['per_op_s']:.4f} s vs batched {r['batched_s']:.4f} s ({r['ratio']:.1f}×)",
              flush=True)
    print("\n| cell | SPICE forward, 1 image (s) | array reads (distinct) | word-line vectors × "
          "col tiles | wall per array read (ms) | surrogate (s) | programming (s) | class "
          "SPICE / surrogate / label | max logit diff (rel) | max error (ADC steps) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r['cell']} | {r['spice_s']:.1f} | {r['reads']} | {r['vectors']} | "
              f"{1e3 * r['spice_s'] / r['reads']:.2f} | {r['surrogate_s']:.3f} | "
              f"{r['program_s']:.1f} | {r['class_spice']} / {r['class_surrogate']} / {r['label']} "
              f"| {r['logit_rel_diff']:.1e} | {r['max_err_lsb']:.3g} |")
    print("\nper-read cost on one programmed array of the second conv layer, same run "
          f"(batched: {args.vectors} vectors in one run; one .op: {args.single} reads; min of "
          f"{args.repeats}):\n")
    print("| cell | array | vectors | per read, one .op (s) | per read, batched (s) | ratio | "
          "max rel diff |\n|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['cell']} | {r['layer']} tile (0,0) G⁺ | {r['bench_vectors']} | {r['per_op_s']:.4f} "
              f"| {r['batched_s']:.4f} | {r['ratio']:.1f}× | {r['rel_diff']:.1e} |")
    print(f"\nat end: {load_str()}")


if __name__ == "__main__":
    main()
