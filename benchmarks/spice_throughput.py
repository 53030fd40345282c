"""SPICE throughput: tiles per second for passive tiles with each backend (ngspice, VACASK),
serial (n_jobs=1) vs 2 workers (n_jobs=2), cache disabled; the share of each solve's wall time
spent outside the simulator process (netlist generation, file I/O, raw-file parsing); and how far ngspice's and VACASK's sense currents are apart on the same tiles.

    .venv/bin/python benchmarks/spice_throughput.py                  # 32, 64, 128 (ngspice 128×128 once, ≈100 s+)
    .venv/bin/python benchmarks/spice_throughput.py --quick          # no ngspice 128×128, fewer reads
    .venv/bin/python benchmarks/spice_throughput.py --sizes 8 16 32 --reads 10

Tiles: cells uniform in 1–100 µS, 2.5 Ω word- and bit-line segments, inputs uniform in 0–0.2 V
(DESIGN.md's simulator table). Each tile read is a different random tile, so nothing could be
cached even if the cache were on.

Method. Throughput: ``solve_many(spec, Gs, Vs, backend, n_jobs, cache_dir=None)`` over N reads,
wall time of the call (the loky pool is started once beforehand, so worker start-up is not
counted), in ``--rounds`` rounds of a serial and a 2-worker pass (serial first in even rounds,
last in odd ones); the speed-up is the median of the rounds' own ratios (this VM's speed moves
by ±20 % between minutes: a ratio of two passes a minute apart carries that), tiles/s the
totals over the rounds. The ceiling: the same reads' netlists run as bare simulator processes
(the command spicecross runs, one thread each, in their own run directories), one at a time and
two at a time, in the same rounds: the speed-up two processes reach on this machine without any
Python around them (they share the memory bus and the last-level cache). Breakdown: the steps ``solve_tile`` performs, through the same package calls
(``Simulator.emit`` for the netlist text; ``Simulator.run`` with its ``timings`` for the
temporary deck file, the simulator subprocess and the raw file read; ``Simulator.sense_currents``:
``solve_text`` reads the node voltages only when they are first asked for), timed
one by one on the first few tiles (the median per step; a VACASK tile shape's first read also
makes the netlist template the later reads are filled into, so its generation is printed apart);
"outside the simulator" is everything but the subprocess, the median of its share per read. ngspice's Sparse 1.3 needs ≈100 s for one
128×128 tile here, so ngspice above 64×64 runs once (serial, one read, breakdown only) and
only without ``--quick``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (PASSIVE_G_RANGE_S, R_WIRE_OHM, fmt_rate, fmt_s, header, load_str,  # noqa: E402
                     max_rel_diff, random_tiles, table, timed)

from spicecross.circuit.tile import TileSpec  # noqa: E402
from spicecross.spice.executables import simulator_env  # noqa: E402
from spicecross.spice.simulators import SIMULATOR_NAMES, get_simulator  # noqa: E402
from spicecross.spice.solve import AUTO_NGSPICE_MAX_CELLS, solve_many  # noqa: E402
from spicecross.surrogate.transfer import transfer_matrices  # noqa: E402

BACKENDS = SIMULATOR_NAMES
NGSPICE_FULL_MAX = 64          # above this size ngspice runs once, serial, one read


def instrumented_solve(spec: TileSpec, g: np.ndarray, v: np.ndarray, sim: str) -> tuple[dict, np.ndarray]:
    """One tile read, step by step as solve_tile does it, each step timed (s)."""
    simulator = get_simulator(sim)
    t0 = time.perf_counter()
    text = simulator.emit(spec, g, v)
    t1 = time.perf_counter()
    run: dict[str, float] = {}      # write / sim / parse, filled by Simulator.run
    plots = simulator.run(text, timings=run)
    t2 = time.perf_counter()
    cur = simulator.sense_currents(plots[0])   # as solve_text: node voltages when first asked
    t3 = time.perf_counter()
    steps = {"gen": t1 - t0, "write": run["write"], "sim": run["sim"],
             "parse": run["parse"] + (t3 - t2),
             "cleanup": (t2 - t1) - (run["write"] + run["sim"] + run["parse"]),
             "total": t3 - t0, "netlist_bytes": len(text)}
    return steps, cur


def round_speedups(serial_s: list[float], parallel_s: list[float]) -> tuple[float, list[float]]:
    """The median and [min, max] of the rounds' own speed-ups (serial / parallel wall time)."""
    ratios = [a / b for a, b in zip(serial_s, parallel_s)]
    return float(np.median(ratios)), [float(min(ratios)), float(max(ratios))]


def solve_pass(spec: TileSpec, gs: np.ndarray, vs: np.ndarray, sim: str, n_jobs: int,
               **parallel) -> tuple[float, np.ndarray]:
    """Wall time (s) of one ``solve_many`` pass over the reads (cache off; ``parallel``:
    its ``parallel_backend``/``scheduler``) and the sense currents (reads, cols) in A;
    RuntimeError naming the first failure."""
    wall, out = timed(lambda: solve_many(spec, list(gs), list(vs), backend=sim, n_jobs=n_jobs,
                                         cache_dir=None, progress=False, **parallel))
    bad = [r.error for r in out if not r.ok]
    if bad:
        raise RuntimeError(f"{sim} {spec.rows}x{spec.cols}, {n_jobs} job(s): {len(bad)} failed "
                           f"solves: {bad[0]}")
    return wall, np.array([r.sense_currents_a for r in out])


def raw_processes(simulator, decks: list[Path], at_once: int) -> float:
    """Wall time (s) of running ``decks`` as bare simulator processes (the command and
    environment spicecross uses), ``at_once`` at a time, each in a new run directory."""
    def one(deck: Path) -> None:
        with tempfile.TemporaryDirectory() as run:
            subprocess.run(simulator._command(simulator.executable(), deck, Path(run)),
                           cwd=run, env=simulator_env(), capture_output=True, check=True)

    with ThreadPoolExecutor(at_once) as pool:
        return timed(lambda: list(pool.map(one, decks)))[0]


def dask_speedups(spec: TileSpec, gs: np.ndarray, vs: np.ndarray, sim: str,
                  workers: list[int], rounds: int) -> dict[int, dict]:
    """Per worker count ``w``: one ``LocalCluster`` of ``w`` single-threaded worker processes
    (:func:`~spicecross.spice.cluster.local_cluster`, started and warmed up untimed), then
    ``rounds`` alternating rounds of a serial pass and ``solve_many(..., parallel_backend=
    "dask", scheduler=<its address>, n_jobs=w)`` (each call connects a client, as a user's
    call to a running cluster does). Speed-up: the median of the rounds' own ratios;
    efficiency: speed-up / min(w, cores)."""
    from spicecross.spice.cluster import local_cluster

    out = {}
    cores = os.cpu_count() or 1
    for w in workers:
        cluster = local_cluster(w)
        try:

            on_dask = dict(parallel_backend="dask", scheduler=cluster.scheduler_address)
            solve_pass(spec, gs, vs, sim, w, **on_dask)     # workers import spicecross
            walls: dict[int, list[float]] = {1: [], w: []}
            for rnd in range(rounds):
                for jobs in ((1, w) if rnd % 2 == 0 else (w, 1)):
                    walls[jobs].append(solve_pass(spec, gs, vs, sim, jobs,
                                                  **(on_dask if jobs == w else {}))[0])
            ser, par = walls[1], walls[w]
        finally:
            cluster.close()
        sp, span = round_speedups(ser, par)
        out[w] = {"tps": len(gs) * len(par) / sum(par), "speedup": sp, "range": span,
                  "efficiency": sp / min(w, cores)}
    return out


def run_backend(spec: TileSpec, gs: np.ndarray, vs: np.ndarray, sim: str, full: bool,
                n_breakdown: int, rounds: int = 1) -> dict:
    """Breakdown on the first tiles, then serial and 2-worker throughput (if ``full``) in
    ``rounds`` alternating rounds, with the bare simulator processes' own speed-up."""
    n = len(gs)
    res: dict = {"backend": sim, "size": spec.rows, "reads": n if full else 1}
    steps, currents = [], {}
    for k in range(min(n_breakdown, n) if full else 1):
        st, cur = instrumented_solve(spec, gs[k], vs[k], sim)
        steps.append(st)
        currents[k] = cur
    # median per step: a tile shape's first VACASK read also makes its netlist template
    # (spicecross/circuit/netlist_template.py), reported apart as first_gen
    med = {key: float(np.median([s[key] for s in steps])) for key in steps[0]}
    res["breakdown"] = med
    res["breakdown_reads"] = len(steps)
    res["first_gen"] = steps[0]["gen"]
    res["outside_share"] = float(np.median([1.0 - s["sim"] / s["total"] for s in steps]))
    if full:
        walls: dict[int, list[float]] = {1: [], 2: []}
        raw_walls: dict[int, list[float]] = {1: [], 2: []}
        simulator = get_simulator(sim)
        with tempfile.TemporaryDirectory() as d:
            decks = []
            for k in range(n):
                decks.append(Path(d) / f"read{k}{simulator.suffix}")
                decks[-1].write_text(simulator.emit(spec, gs[k], vs[k]))
            for rnd in range(rounds):
                for jobs in ((1, 2) if rnd % 2 == 0 else (2, 1)):
                    wall, arr = solve_pass(spec, gs, vs, sim, jobs)
                    walls[jobs].append(wall)
                    if jobs == 1:
                        serial = arr
                    else:
                        res["parallel_equals_serial"] = (res.get("parallel_equals_serial", True)
                                                         and bool(np.array_equal(arr, serial)))
                    raw_walls[jobs].append(raw_processes(simulator, decks, jobs))
        for jobs in (1, 2):
            res[f"tps_{jobs}"] = n * len(walls[jobs]) / sum(walls[jobs])
            res[f"wall_{jobs}"] = sum(walls[jobs]) / len(walls[jobs])
        res["speedup"], res["speedup_range"] = round_speedups(walls[1], walls[2])
        res["raw_speedup"] = round_speedups(raw_walls[1], raw_walls[2])[0]
        res["rounds"] = rounds
        for k in range(n):
            currents[k] = serial[k]
    else:   # the single instrumented read is the serial measurement
        res["tps_1"] = 1.0 / mean["total"]
        res["wall_1"] = mean["total"]
    res["_currents"] = currents
    return res


def recommend(results: dict[tuple[int, str], dict]) -> str:
    """Text on the 'auto' threshold from the serial times measured."""
    sizes = sorted({s for s, _ in results})
    lines = [f"'auto' uses ngspice up to AUTO_NGSPICE_MAX_CELLS = {AUTO_NGSPICE_MAX_CELLS} cells "
             f"({int(AUTO_NGSPICE_MAX_CELLS ** 0.5)}×{int(AUTO_NGSPICE_MAX_CELLS ** 0.5)}), VACASK above."]
    faster_va, faster_ng = [], []
    for s in sizes:
        ng, va = results.get((s, "ngspice")), results.get((s, "vacask"))
        if not ng or not va:
            continue
        t_ng, t_va = 1 / ng["tps_1"], 1 / va["tps_1"]
        (faster_va if t_va < t_ng else faster_ng).append(s)
        lines.append(f"  {s}×{s}: ngspice {fmt_s(t_ng)}/tile, VACASK {fmt_s(t_va)}/tile serial "
                     f"-> VACASK {t_ng / t_va:.1f}× faster" if t_va < t_ng else
                     f"  {s}×{s}: ngspice {fmt_s(t_ng)}/tile, VACASK {fmt_s(t_va)}/tile serial "
                     f"-> ngspice {t_va / t_ng:.1f}× faster")
    limit = int(AUTO_NGSPICE_MAX_CELLS ** 0.5)
    measured = sorted(faster_ng + faster_va)
    if not measured:
        lines.append("Inconclusive: no size was measured with both backends.")
        return "\n".join(lines)
    # the largest size up to which ngspice is faster at every measured size
    ng_upto = 0
    for s in measured:
        if s in faster_ng:
            ng_upto = s
        else:
            break
    below = [s for s in measured if s <= limit]
    above = [s for s in measured if s > limit]
    ok_below = all(s in faster_ng for s in below)
    ok_above = all(s in faster_va for s in above)
    if ok_below and ok_above and below and above:
        lines.append(f"Supported: ngspice is faster at every measured size up to {limit}×{limit}, "
                     f"VACASK at every measured size above.")
    elif ok_below and ok_above:
        lines.append("Consistent with the measurement, but the sizes measured lie on one side of the "
                     "threshold only (add sizes on the other side to test it).")
    else:
        cross = (f"ngspice is faster only up to {ng_upto}×{ng_upto}" if ng_upto
                 else "VACASK is faster at every size measured")
        lines.append(f"Not supported on speed: {cross}; VACASK wins at "
                     + ", ".join(f"{s}×{s}" for s in faster_va) + ". "
                     f"On speed alone 'auto' would use ngspice up to {ng_upto * ng_upto} cells "
                     f"(AUTO_NGSPICE_MAX_CELLS = {ng_upto * ng_upto}). Keeping ngspice up to "
                     f"{limit}×{limit} is defensible only as a choice for the reference simulator users "
                     "know, at the per-tile cost shown above.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128], help="tile sizes N (N×N)")
    ap.add_argument("--reads", type=int, default=None,
                    help="reads (tiles) per size and backend (default 20 up to 32×32, else 6; "
                         "--quick: 6 and 2)")
    ap.add_argument("--breakdown-reads", type=int, default=5,
                    help="tiles timed step by step per size and backend (default 5)")
    ap.add_argument("--quick", action="store_true",
                    help="fewer reads; skip ngspice above 64×64 (its 128×128 solve takes ≈100 s)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternating rounds of the serial and 2-worker passes (default 3)")
    ap.add_argument("--dask-workers", type=int, nargs="*", default=[], metavar="W",
                    help="also measure a dask LocalCluster of W single-threaded workers per W "
                         "(e.g. 1 2 4; VACASK only), alternating with serial passes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    ap.add_argument("--backends", nargs="+", default=list(SIMULATOR_NAMES),
                    choices=SIMULATOR_NAMES, help="simulators to measure (default both)")
    args = ap.parse_args(argv)
    global BACKENDS
    BACKENDS = tuple(args.backends)
    if args.reads is not None and args.reads < 2:
        ap.error("--reads must be ≥ 2 (two workers need two tiles)")
    if args.rounds < 1:
        ap.error(f"--rounds must be ≥ 1, got {args.rounds}")
    bad_w = [w for w in args.dask_workers if w < 1]
    if bad_w:
        ap.error(f"--dask-workers must be ≥ 1, got {bad_w[0]}")

    print(header("SPICE throughput (passive tiles, cache disabled)"))
    print(f"tiles: cells U(1 µS, 100 µS), {R_WIRE_OHM} Ω segments, inputs U(0, 0.2 V)\n")

    # warm up: simulator binaries in the page cache, loky pool of 2 workers started
    warm = TileSpec.uniform_wires(4, 4, R_WIRE_OHM)
    wg, wv = random_tiles(4, 4, 2, PASSIVE_G_RANGE_S, 99)
    for sim in BACKENDS:
        solve_many(warm, list(wg), list(wv), backend=sim, n_jobs=1, cache_dir=None, progress=False)
        solve_many(warm, list(wg), list(wv), backend=sim, n_jobs=2, cache_dir=None, progress=False)
    fixed = {sim: min(instrumented_solve(warm, wg[0], wv[0], sim)[0]["sim"] for _ in range(3))
             for sim in BACKENDS}
    print("fixed cost of one simulator process (4×4 tile, best of 3): "
          + ", ".join(f"{s} {fmt_s(t)}" for s, t in fixed.items()) + "\n")

    results: dict[tuple[int, str], dict] = {}
    agreement: list[list[str]] = []
    for n in args.sizes:
        spec = TileSpec.uniform_wires(n, n, R_WIRE_OHM)
        reads = args.reads or ((6 if n <= 32 else 2) if args.quick else (20 if n <= 32 else 6))
        gs, vs = random_tiles(n, n, reads, PASSIVE_G_RANGE_S, args.seed + n)
        for sim in BACKENDS:
            full = sim == "vacask" or n <= NGSPICE_FULL_MAX
            if not full and args.quick:
                print(f"{n}×{n} ngspice: skipped (--quick)", flush=True)
                continue
            t0 = time.perf_counter()
            r = run_backend(spec, gs, vs, sim, full, args.breakdown_reads, args.rounds)
            results[(n, sim)] = r
            print(f"{n}×{n} {sim}: {r['reads']} reads, {fmt_rate(r['tps_1'])} tiles/s serial"
                  + (f", {fmt_rate(r['tps_2'])} with 2 workers" if "tps_2" in r else "")
                  + f", outside the simulator {100 * r['outside_share']:.1f} %"
                  + f"  [{time.perf_counter() - t0:.1f} s; {load_str()}]", flush=True)
            if args.dask_workers and sim == "vacask":
                t0 = time.perf_counter()
                r["dask"] = dask_speedups(spec, gs, vs, sim, args.dask_workers, args.rounds)
                print(f"{n}×{n} {sim} on dask: " + ", ".join(
                    f"{w} workers {d['speedup']:.2f}×" for w, d in r["dask"].items())
                      + f"  [{time.perf_counter() - t0:.1f} s; {load_str()}]", flush=True)
        # agreement on the tiles both backends solved, and against the exact transfer matrix
        T = transfer_matrices(spec, gs).numpy()
        exact = np.einsum("kcr,kr->kc", T, vs)
        row = [f"{n}×{n}"]
        ng, va = results.get((n, "ngspice")), results.get((n, "vacask"))
        common = sorted(set(ng["_currents"]) & set(va["_currents"])) if ng and va else []
        row.append(f"{max(max_rel_diff(ng['_currents'][k], va['_currents'][k]) for k in common):.1e}"
                   if common else "—")
        for r in (ng, va):
            row.append(f"{max(max_rel_diff(c, exact[k]) for k, c in r['_currents'].items()):.1e}"
                       if r else "—")
        row.append(str(len(common)))
        agreement.append(row)

    rows = []
    for (n, sim), r in results.items():
        b = r["breakdown"]
        rows.append([f"{n}×{n}", sim, r["reads"], fmt_s(1 / r["tps_1"]), fmt_rate(r["tps_1"]),
                     fmt_rate(r.get("tps_2")),
                     (f"{r['speedup']:.2f}× ({r['speedup_range'][0]:.2f}–"
                      f"{r['speedup_range'][1]:.2f})" if "speedup" in r else "—"),
                     f"{r['raw_speedup']:.2f}×" if "raw_speedup" in r else "—",
                     fmt_s(b["gen"]), fmt_s(b["write"] + b["cleanup"]), fmt_s(b["sim"]),
                     fmt_s(b["parse"]), f"{100 * r['outside_share']:.1f} %"])
    print("\n## Throughput and where the time goes\n")
    print(table(["tile", "backend", "reads", "s/tile serial", "tiles/s serial", "tiles/s 2 workers",
                 "speed-up, median of rounds (range)", "bare processes' speed-up",
                 "netlist gen", "file I/O", "simulator process", "raw parse",
                 "outside simulator"], rows))
    print("\n(breakdown columns: median of the first "
          f"{args.breakdown_reads} reads, 1 for ngspice above {NGSPICE_FULL_MAX}×{NGSPICE_FULL_MAX}; "
          "ngspice netlists are built through PySpice's Circuit, VACASK netlists filled into a "
          "template made at a tile shape's first read: netlist gen of the first read "
          + ", ".join(f"{n}×{n} {sim} {fmt_s(r['first_gen'])}" for (n, sim), r in results.items())
          + ")")
    dask_rows = [[f"{n}×{n}", sim, w, fmt_rate(d["tps"]), f"{d['speedup']:.2f}× "
                  f"({d['range'][0]:.2f}–{d['range'][1]:.2f})", f"{100 * d['efficiency']:.0f} %"]
                 for (n, sim), r in results.items() for w, d in r.get("dask", {}).items()]
    if dask_rows:
        print(f"\n## dask LocalCluster (single-threaded worker processes, {os.cpu_count()} cores)\n")
        print(table(["tile", "backend", "workers", "tiles/s", "speed-up over serial, median of "
                     "rounds (range)", "efficiency (speed-up / min(workers, cores))"], dask_rows))
    par = [f"{n}×{n} {s}" for (n, s), r in results.items() if r.get("parallel_equals_serial") is False]
    print("2-worker results identical to serial: " + ("yes, every tile" if not par else f"NO for {par}"))
    print("\n## Sense currents: ngspice vs VACASK on the same tiles (max |ΔI| / max |I|)\n")
    print(table(["tile", "ngspice vs VACASK", "ngspice vs exact T", "VACASK vs exact T", "tiles compared"],
                agreement))
    print("(exact T: spicecross.surrogate.transfer.transfer_matrices, float64)")
    print("\n## 'auto' backend threshold\n")
    print(recommend(results))
    print(f"\nat end: {load_str()}")
    if args.json:
        clean = {f"{n}x{n}/{s}": {k: v for k, v in r.items() if not k.startswith("_")}
                 for (n, s), r in results.items()}
        args.json.write_text(json.dumps({"results": clean, "agreement": agreement,
                                         "fixed_process_s": fixed}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
