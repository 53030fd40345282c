"""Many reads of one programmed tile per simulator run: the per-read cost of one ``.op`` per
input vector (``solve_tile``) against the batched path (``solve_reads``: one sweep, a point per
vector), as a ratio measured in the same run, and the largest relative difference between them.

    .venv/bin/python benchmarks/spice_reads.py                 # VACASK 64×64, ngspice 16/32, 64 vectors
    .venv/bin/python benchmarks/spice_reads.py --vectors 16 --repeats 1 --single 2
    .venv/bin/python benchmarks/spice_reads.py --chunks 16 64 256   # VACASK 64×64 0T1R per chunk size
    .venv/bin/python benchmarks/spice_reads.py --decks --vectors 32   # VACASK deck settings, 64×64
    .venv/bin/python benchmarks/spice_reads.py --cases vacask     # only the VACASK rows

Tiles: 0T1R cells uniform in 1–100 µS, 1T1R cells in 1/2.5 kΩ … 1/100 Ω (level-1 NMOS selectors,
TileSpec defaults), 2.5 Ω wire segments, inputs uniform in ±0.2 V (signed, some zeros).

Method. Per repeat, interleaved: the batched path solves all ``--vectors`` vectors of one tile
(``solve_reads``, cache off, one chunk), then ``--single`` of the same vectors are solved one
``.op`` each (``solve_tile``, cache off). Both include netlist emission, the simulator process
and raw-file parsing. The per-read cost is wall time / reads; the table shows the minimum over
repeats and the ratio of the minima. No timing is asserted anywhere.

``--decks``: VACASK 64×64 reads decks of the same vectors with the settings of before
(every point from scratch, every node saved: ``warm_start=False, save_nodes=True``) and of now
(warm start for 1T1R, only the sense currents saved), interleaved, one chunk each, with the
largest relative difference of each against one ``.op`` per vector for ``--single`` vectors.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (PASSIVE_G_RANGE_S, PT_HF_TI_G_RANGE_S, R_WIRE_OHM, V_READ_MAX_V,  # noqa: E402
                     header, load_str)

from spicecross.circuit.tile import TileSpec  # noqa: E402
from spicecross.circuit.reads_netlist import vacask_reads_netlist  # noqa: E402
from spicecross.spice.simulators import VACASK  # noqa: E402
from spicecross.spice.solve import solve_reads, solve_tile  # noqa: E402

CASES = [("vacask", "0t1r", 64), ("vacask", "1t1r", 64), ("ngspice", "0t1r", 16),
         ("ngspice", "1t1r", 16), ("ngspice", "0t1r", 32), ("ngspice", "1t1r", 32)]


def make_tile(cell: str, n: int, vectors: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    spec = TileSpec.uniform_wires(n, n, R_WIRE_OHM, cell=cell)
    g_range = PT_HF_TI_G_RANGE_S if cell == "1t1r" else PASSIVE_G_RANGE_S
    g = rng.uniform(*g_range, (n, n))
    v = rng.uniform(-V_READ_MAX_V, V_READ_MAX_V, (vectors, n))
    v[rng.random(v.shape) < 0.1] = 0.0
    return spec, g, v


def measure(backend: str, cell: str, n: int, vectors: int, single: int, repeats: int,
            chunk: int | None = None) -> dict:
    spec, g, v = make_tile(cell, n, vectors)
    batched, per_op, diff = [], [], 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = solve_reads(spec, g, v, backend=backend, cache_dir=None, chunk=chunk or vectors)
        batched.append((time.perf_counter() - t0) / vectors)
        if not res.ok:
            raise RuntimeError(res.error)
        t0 = time.perf_counter()
        ones = [solve_tile(spec, g, vec, backend=backend, cache_dir=None) for vec in v[:single]]
        per_op.append((time.perf_counter() - t0) / single)
        diff = max(diff, rel_diff(res.currents_a, np.array([o.sense_currents_a for o in ones])))
    return {"backend": backend, "cell": cell, "n": n, "per_op_s": min(per_op),
            "batched_s": min(batched), "ratio": min(per_op) / min(batched), "rel_diff": diff}


def rel_diff(cur: np.ndarray, ref: np.ndarray) -> float:
    """Largest per-vector difference relative to that vector's largest current."""
    scale = np.maximum(np.abs(ref).max(axis=1), 1e-12)
    return float((np.abs(cur[:len(ref)] - ref).max(axis=1) / scale).max())


def compare_decks(cell: str, vectors: int, single: int, repeats: int) -> dict:
    """Per-read wall time of VACASK reads decks with the old and the current settings."""
    spec, g, v = make_tile(cell, 64, vectors)
    if cell == "1t1r":
        v = np.abs(v)   # the default two-phase reads never apply negative word-line voltages
    decks = {"before": vacask_reads_netlist(spec, g, v, warm_start=False, save_nodes=True),
             "now": vacask_reads_netlist(spec, g, v)}
    ref = np.array([solve_tile(spec, g, x, backend="vacask", cache_dir=None).sense_currents_a
                    for x in v[:single]])
    best, cpu, diff = ({k: np.inf for k in decks}, {k: np.inf for k in decks},
                       {k: 0.0 for k in decks})
    for _ in range(repeats):
        for name, text in decks.items():
            t0, c0 = time.perf_counter(), children_cpu_s()
            cur = VACASK.read_tiles(text, vectors)
            best[name] = min(best[name], (time.perf_counter() - t0) / vectors)
            cpu[name] = min(cpu[name], (children_cpu_s() - c0) / vectors)
            diff[name] = max(diff[name], rel_diff(cur, ref))
    return {"cell": cell, **{f"{k}_s": x for k, x in best.items()},
            **{f"{k}_cpu_s": x for k, x in cpu.items()},
            **{f"{k}_diff": x for k, x in diff.items()}}


def children_cpu_s() -> float:
    """CPU seconds (user + system) of this process's finished child processes (the simulator
    runs): unlike wall time, hardly affected by other jobs on a loaded machine."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=64, help="input vectors per batched run")
    ap.add_argument("--single", type=int, default=4, help="vectors solved one .op each per repeat")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--chunks", type=int, nargs="*", default=None,
                    help="instead: VACASK 64×64 0T1R per-read cost per chunk size (vectors)")
    ap.add_argument("--decks", action="store_true",
                    help="instead: VACASK 64×64 deck settings of before vs now, per cell")
    ap.add_argument("--cases", nargs="+", choices=["vacask", "ngspice"],
                    default=["vacask", "ngspice"], help="simulators of the main table")
    args = ap.parse_args()
    print(header("SPICE reads: one .op per read vs one sweep per programmed tile"))
    if args.decks:
        print(f"\nVACASK 64×64, {args.vectors} vectors per deck, min of {args.repeats}; max rel "
              f"diff against one .op per vector for {args.single} vectors\n")
        print("| cell | wall per read, before (s) | now (s) | ratio | VACASK CPU per read, before "
              "(s) | now (s) | ratio | max rel diff before | now |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for cell in ("0t1r", "1t1r"):
            r = compare_decks(cell, args.vectors, args.single, args.repeats)
            print(f"| {cell} | {r['before_s']:.4f} | {r['now_s']:.4f} | "
                  f"{r['before_s'] / r['now_s']:.2f}× | {r['before_cpu_s']:.4f} | "
                  f"{r['now_cpu_s']:.4f} | {r['before_cpu_s'] / r['now_cpu_s']:.2f}× | "
                  f"{r['before_diff']:.1e} | {r['now_diff']:.1e} |", flush=True)
        print(f"\nat end: {load_str()}")
        return
    if args.chunks:
        spec, g, v = make_tile("0t1r", 64, max(args.chunks))
        print("\n| chunk (vectors) | per read (s) |\n|---:|---:|")
        for chunk in args.chunks:
            best = min(_timed(lambda: solve_reads(spec, g, v[:chunk], backend="vacask",
                                                  cache_dir=None, chunk=chunk)) / chunk
                       for _ in range(args.repeats))
            print(f"| {chunk} | {best:.4f} |", flush=True)
        print(f"\nat end: {load_str()}")
        return
    print(f"\n{args.vectors} vectors per batched run, {args.single} single .op reads per repeat, "
          f"min of {args.repeats} repeats\n")
    print("| simulator | cell | size | per read, one .op (s) | per read, batched (s) | ratio | "
          "max rel diff |\n|---|---|---:|---:|---:|---:|---:|")
    for backend, cell, n in (c for c in CASES if c[0] in args.cases):
        r = measure(backend, cell, n, args.vectors, args.single, args.repeats)
        print(f"| {backend} | {cell} | {n}×{n} | {r['per_op_s']:.4f} | {r['batched_s']:.4f} | "
              f"{r['ratio']:.1f}× | {r['rel_diff']:.1e} |", flush=True)
    print(f"\nat end: {load_str()}")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    res = fn()
    if not res.ok:
        raise RuntimeError(res.error)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
