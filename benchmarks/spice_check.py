"""The cost of the SPICE error bar: ``infer`` on the same images with and without
``--spice-check K``, in one run, as the wall-time ratio (target: ≤ 1.25 for 10 000 MNIST images
with K = 32), and the check's own numbers (max error in ADC steps, share of reads within 1 step).

    .venv/bin/python benchmarks/spice_check.py --data ../shared/data              # 0T1R and 1T1R
    .venv/bin/python benchmarks/spice_check.py --data ../shared/data --cells 1t1r --reads 32 \\
        --calibration cal_1t1r.h5

The SPICE cache is a fresh temporary directory, so every check solves its reads for real.
Check ``uptime`` first: other heavy jobs on the 2 cores distort every time here.

``--solve-only``: no inference; the check's reads are sampled as ``infer`` samples them and its
VACASK decks are solved one after another, the variants in the same run: ``before`` (8 vectors
per tile, one gate source per row of selectors, repeated vectors solved again), ``own gates``,
``+ distinct`` (repeated vectors solved once) and ``now`` (16 vectors per tile, the shipped
path). Reported: simulator runs, sweep points, the VACASK CPU time (user + system of the
simulator processes; other jobs on the machine still inflate it by tens of %), the Python CPU
time emitting the decks and, with ``--callgrind``, the instructions VACASK executes
(deterministic), with ratios against the first variant.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_s, header, load_str, table  # noqa: E402

from spicecross.nn.inference import infer  # noqa: E402
from spicecross.surrogate.config import AnalogConfig  # noqa: E402


def children_cpu_s() -> float:
    """CPU seconds (user + system) of this process's finished child processes."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def solve_costs(cell: str, args) -> None:
    """Solve the check's decks for each variant (see module doc) and print their costs."""
    import numpy as np

    from spicecross.calibration.network_check import sample_tile_reads
    from spicecross.circuit.reads_netlist import vacask_reads_netlist
    from spicecross.nn.analog import analog_layers, patch_model
    from spicecross.nn.inference import SPICE_CHECK_IMAGES, load_eval_data, load_network
    from spicecross.spice.simulators import VACASK
    from spicecross.spice.solve import distinct_rows

    cfg = AnalogConfig.build(cell=cell)
    data = load_eval_data("mnist", args.data, SPICE_CHECK_IMAGES, cfg.calibration_images)
    analog = patch_model(load_network("mnist"), cfg, data.calibration)
    layers = dict(analog_layers(analog))
    images = data.test.tensors[0][:SPICE_CHECK_IMAGES]

    def jobs(per_tile: int) -> list[tuple]:
        sampled = sample_tile_reads(analog, images, args.reads, cfg.seed, per_tile)
        return [(layers[n].array.spec.for_solvers(), layers[n].array.g_dev[s, t.r, t.c], t.v)
                for n, tiles in sampled.items() for t in tiles for s in (0, 1)]

    settings = {"before": (8, False, False), "own gates": (8, True, False),
                "+ distinct": (8, True, True), "now": (16, True, True)}
    variants = {k: (jobs(settings[k][0]), *settings[k][1:]) for k in args.variants}
    rows, base = [], None
    for name, (js, own, distinct) in variants.items():
        emit_s = cpu_s = 0.0
        points = instructions = 0
        for spec, g, v in js:
            v = distinct_rows(v)[0] if distinct else v
            t0 = time.process_time()
            text = vacask_reads_netlist(spec, g, v, own_gates=own)
            emit_s += time.process_time() - t0
            c0 = children_cpu_s()
            VACASK.read_tiles(text, len(v))
            cpu_s += children_cpu_s() - c0
            points += len(v)
            if args.callgrind:
                from spice_deck_cost import callgrind_parts
                instructions += callgrind_parts(text)["total"]
        base = base or (cpu_s, emit_s, instructions)
        rows.append([cell, name, str(len(js)), str(points), f"{cpu_s:.1f}",
                     f"{base[0] / cpu_s:.2f}×", f"{emit_s:.2f}", f"{base[1] / emit_s:.2f}×",
                     *([f"{instructions / 1e9:.1f}", f"{base[2] / instructions:.2f}×"]
                       if args.callgrind else [])])
        print(f"  {cell} {name}: {cpu_s:.1f} s VACASK CPU; {load_str()}", flush=True)
    print(table(["cell", "variant", "runs", "sweep points", "VACASK CPU (s)", "ratio",
                 "emitting, Python CPU (s)", "ratio",
                 *(["VACASK instructions (G)", "ratio"] if args.callgrind else [])], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="data root (default: the bundled sample)")
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--reads", type=int, default=32, help="SPICE-check reads per layer")
    ap.add_argument("--cells", nargs="+", default=["0t1r", "1t1r"])
    ap.add_argument("--calibration", default=None, help="1T1R calibration (from-model) to apply")
    ap.add_argument("--solve-only", action="store_true",
                    help="instead: the VACASK cost of the check's decks, per variant")
    ap.add_argument("--variants", nargs="+", default=["before", "own gates", "+ distinct", "now"],
                    choices=["before", "own gates", "+ distinct", "now"],
                    help="--solve-only: the variants to compare (the first is the baseline)")
    ap.add_argument("--callgrind", action="store_true",
                    help="--solve-only: also count VACASK's instructions (valgrind; slow)")
    args = ap.parse_args()
    if args.solve_only:
        print(header("SPICE check: VACASK cost of its decks, per variant"))
        for cell in args.cells:
            solve_costs(cell, args)
        print(f"\nat end: {load_str()}")
        return
    print(header("SPICE check cost: infer with and without --spice-check"))
    rows = []
    for cell in args.cells:
        cfg = AnalogConfig.build(cell=cell)
        if cell == "1t1r" and args.calibration:
            from spicecross.calibration.calibrate import apply_calibration, load_calibration
            cfg = apply_calibration(cfg, load_calibration(args.calibration))
        with tempfile.TemporaryDirectory() as cache:
            os.environ["SPICECROSS_CACHE"] = cache
            t0 = time.perf_counter()
            plain = infer("mnist", args.data, cfg, limit=args.images)
            t_plain = time.perf_counter() - t0
            t0 = time.perf_counter()
            checked = infer("mnist", args.data, cfg, limit=args.images, spice_check_reads=args.reads)
            t_checked = time.perf_counter() - t0
        chk = checked["spice_check"]
        rows.append([cell, str(checked["images"]), f"{plain['accuracy']:.2f} %", fmt_s(t_plain),
                     fmt_s(t_checked), f"{t_checked / t_plain:.2f}×", str(chk["reads"]),
                     f"{chk['max_err_lsb']:.3g}", f"{100 * chk['share_within_1_lsb']:.1f} %",
                     f"{chk['max_rel_err']:.2g}"])
        print(f"  {cell}: done; {load_str()}", flush=True)
    print(table(["cell", "images", "accuracy", "infer", f"infer + check ({args.reads}/layer)",
                 "ratio", "reads", "max err (ADC steps)", "reads ≤ 1 step", "max rel. err"], rows))
    print(f"at end: {load_str()}")


if __name__ == "__main__":
    main()
