"""Surrogate speed: time to build the transfer matrix T of one tile (64×64, 128×128, 256×256) by
the row recursion (``transfer_matrices``) and, for comparison, by sparse LU
(``sparse_transfer_matrix``); batched T for many tiles in one call; and input vectors per second
through a 64×64 1T1R tile in each mode (ideal, linear, nonlinear), against ngspice's and VACASK's
time for one read of the same tile measured in the same run.

    .venv/bin/python benchmarks/surrogate.py
    .venv/bin/python benchmarks/surrogate.py --quick       # fewer repeats, smaller batches
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/surrogate.py --threads 1
                                                          # everything single-threaded (torch and BLAS)

Targets on the 2-core machine (issue 3): T for 64×64 in ≤ 50 ms; ≥ 1e5 vectors/s in linear mode.

Tiles: 1T1R, default level-1 selector (V_G 1.8 V), device conductances U(1/2.5 kΩ, 1/100 Ω) (the
Pt/Hf/Ti range), 2.5 Ω segments, inputs U(0, 0.2 V). Times are wall times; medians of repeats
after one untimed warm-up call. ``linear`` vectors/s uses a T already built (its build time is
the first table); SPICE times are one ``solve_tile(..., cache_dir=None)`` each, netlist
generation included.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (PT_HF_TI_G_RANGE_S, R_WIRE_OHM, fmt_rate, fmt_s, header, load_str,  # noqa: E402
                     max_rel_diff, median, random_tiles, repeat_time, table, timed)

from spicecross.circuit.tile import TileSpec  # noqa: E402
from spicecross.spice.solve import solve_tile  # noqa: E402
from spicecross.surrogate.network import sparse_transfer_matrix  # noqa: E402
from spicecross.surrogate.mapping import effective_cell_conductance  # noqa: E402
from spicecross.surrogate.tile_model import TileSurrogate  # noqa: E402
from spicecross.surrogate.transfer import transfer_matrices  # noqa: E402

T_TARGET_S = 0.050


@contextlib.contextmanager
def torch_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
LINEAR_TARGET_VPS = 1e5


def fmt_ratio(x: float) -> str:
    return f"{x:.3g}×" if x < 1e4 else f"{x:.2e}×".replace("e+0", "e").replace("e+", "e")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256], help="T build sizes")
    ap.add_argument("--sparse-sizes", type=int, nargs="+", default=[64, 128],
                    help="sizes also timed with sparse LU")
    ap.add_argument("--read-size", type=int, default=64, help="tile for the vectors/s table")
    ap.add_argument("--batch", type=int, default=10000, help="vectors per call, ideal and linear")
    ap.add_argument("--nonlinear-batch", type=int, default=200, help="vectors per call, nonlinear")
    ap.add_argument("--tiles", type=int, default=32, help="tiles in one batched T call")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads for the main measurements (default: torch's, = cores); "
                         "T builds are also timed with 1 thread")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.nonlinear_batch = min(args.batch, 2000), min(args.nonlinear_batch, 20)
        args.tiles = min(args.tiles, 8)
    reps = (lambda n: 3 if n <= 64 else 1) if args.quick else (lambda n: 20 if n <= 64 else 5 if n <= 128 else 2)
    out: dict = {}
    if args.threads:
        torch.set_num_threads(args.threads)

    print(header("Surrogate speed (1T1R tiles, torch float64)"))
    print(f"tiles: 1T1R, default selector, G_dev U(1/2.5 kΩ, 1/100 Ω), {R_WIRE_OHM} Ω segments, "
          "inputs U(0, 0.2 V)\n")

    # ---- 1. T build, recursion vs sparse LU --------------------------------------------------
    nthr = torch.get_num_threads()
    thr = f"{nthr} thread" + ("s" if nthr > 1 else "")
    rows = []
    for n in args.sizes:
        spec = TileSpec.uniform_wires(n, n, R_WIRE_OHM, cell="1t1r")
        g, _ = random_tiles(n, n, 1, PT_HF_TI_G_RANGE_S, args.seed + n)
        gc = effective_cell_conductance(spec, g[0])
        times = repeat_time(lambda: transfer_matrices(spec, gc), reps(n))
        rec = {"recursion_s": median(times), "recursion_min_s": min(times), "repeats": len(times),
               "threads": nthr}
        if nthr > 1:
            with torch_threads(1):
                rec["recursion_1thread_s"] = median(repeat_time(lambda: transfer_matrices(spec, gc), reps(n)))
        best = min(rec["recursion_s"], rec.get("recursion_1thread_s", np.inf))
        sp_txt, diff = "—", "—"
        if n in args.sparse_sizes:
            st = repeat_time(lambda: sparse_transfer_matrix(spec, gc), reps(n))
            rec["sparse_lu_s"] = median(st)
            diff = f"{max_rel_diff(transfer_matrices(spec, gc).numpy(), sparse_transfer_matrix(spec, gc)):.1e}"
            sp_txt = fmt_s(median(st))
        out[f"T_{n}"] = rec
        rows.append([f"{n}×{n}", fmt_s(rec["recursion_s"]), fmt_s(rec["recursion_min_s"])]
                    + ([fmt_s(rec.get("recursion_1thread_s"))] if nthr > 1 else [])
                    + [len(times), sp_txt,
                       f"{rec['sparse_lu_s'] / best:.1f}×" if "sparse_lu_s" in rec else "—", diff])
        print(f"T {n}×{n}: recursion {fmt_s(rec['recursion_s'])} (median of {len(times)}, {thr})"
              + (f", {fmt_s(rec['recursion_1thread_s'])} (1 thread)" if "recursion_1thread_s" in rec else "")
              + (f", sparse LU {sp_txt}" if "sparse_lu_s" in rec else "") + f"  [{load_str()}]", flush=True)
    print("\n## Building T (one tile)\n")
    print(table(["tile", f"recursion, {thr} (median)", f"recursion, {thr} (best)"]
                + (["recursion, 1 thread (median)"] if nthr > 1 else [])
                + ["repeats", "sparse LU (median)", "sparse / faster recursion", "max |ΔT| / max |T|"], rows))
    print("(sparse LU: scipy SuperLU, one factorization, min(rows, cols) solves; its multi-RHS solve uses BLAS threads)")

    # ---- 2. batched T for many tiles ------------------------------------------------------------
    n = args.read_size
    spec = TileSpec.uniform_wires(n, n, R_WIRE_OHM, cell="1t1r")
    gs, _ = random_tiles(n, n, args.tiles, PT_HF_TI_G_RANGE_S, args.seed + 1000)
    gcs = effective_cell_conductance(spec, gs)
    tb = repeat_time(lambda: transfer_matrices(spec, gcs), 1 if args.quick else 3)
    tb1 = tb
    if nthr > 1:
        with torch_threads(1):
            tb1 = repeat_time(lambda: transfer_matrices(spec, gcs), 1 if args.quick else 3)
    t_loop, _ = timed(lambda: [transfer_matrices(spec, gcs[k]) for k in range(args.tiles)])
    t_sp, _ = timed(lambda: [sparse_transfer_matrix(spec, gcs[k]) for k in range(args.tiles)])
    out["T_batched"] = {"tiles": args.tiles, "size": n, "batched_s": median(tb),
                        "batched_1thread_s": median(tb1), "loop_s": t_loop, "sparse_loop_s": t_sp}
    print(f"\n## Batched T: {args.tiles} tiles of {n}×{n}\n")
    brows = [[f"transfer_matrices, one call ({args.tiles} tiles), {thr}", fmt_s(median(tb)),
              fmt_s(median(tb) / args.tiles), fmt_rate(args.tiles / median(tb))]]
    if nthr > 1:
        brows.append([f"transfer_matrices, one call ({args.tiles} tiles), 1 thread", fmt_s(median(tb1)),
                      fmt_s(median(tb1) / args.tiles), fmt_rate(args.tiles / median(tb1))])
    print(table(["method", "wall", "per tile", "tiles/s"], brows + [
        [f"transfer_matrices, one call per tile, {thr}", fmt_s(t_loop), fmt_s(t_loop / args.tiles),
         fmt_rate(args.tiles / t_loop)],
        ["sparse_transfer_matrix, one call per tile", fmt_s(t_sp), fmt_s(t_sp / args.tiles),
         fmt_rate(args.tiles / t_sp)]]))

    # ---- 3. vectors/s per mode vs SPICE --------------------------------------------------------
    g, _ = random_tiles(n, n, 1, PT_HF_TI_G_RANGE_S, args.seed + 2000)
    g = g[0]
    rng = np.random.default_rng(args.seed + 3000)
    v_big = rng.uniform(0.0, 0.2, (args.batch, n))
    v_nl = v_big[:args.nonlinear_batch]
    spice: dict[str, dict] = {}
    for sim in ("vacask", "ngspice"):
        t, res = timed(lambda: solve_tile(spec, g, v_big[0], backend=sim, cache_dir=None))
        if not res.ok:
            raise RuntimeError(f"{sim}: {res.error}")
        spice[sim] = {"wall_s": t, "sim_s": res.seconds, "currents": res.sense_currents_a}
        print(f"{sim} one read of the {n}×{n} 1T1R tile: {fmt_s(t)} ({fmt_s(res.seconds)} in "
              f"simulator + parse)  [{load_str()}]", flush=True)
    ref = spice["ngspice"]["currents"]
    mode_rows = []
    for mode, v in (("ideal", v_big), ("linear", v_big), ("nonlinear", v_nl)):
        s = TileSurrogate(spec, g, mode)
        s.read(v[:2])                       # warm-up; builds and caches T for linear
        r = 1 if mode == "nonlinear" else (2 if args.quick else 5)
        times = [timed(lambda: s.read(v))[0] for _ in range(r)]
        vps = len(v) / median(times)
        err_ng = max_rel_diff(s.read(v[0]), ref)
        extra = f"{s.stats.iterations} outer iterations" if mode == "nonlinear" else ""
        out[f"read_{mode}"] = {"batch": len(v), "vectors_per_s": vps, "rel_max_vs_ngspice": err_ng}
        row = [mode, len(v), fmt_s(median(times)), fmt_rate(vps)]
        for sim in ("ngspice", "vacask"):
            row.append(fmt_ratio(vps * spice[sim]['wall_s']))
        row += [f"{err_ng:.1e}", extra]
        mode_rows.append(row)
        print(f"{mode}: {fmt_rate(vps)} vectors/s  [{load_str()}]", flush=True)
    t_fresh = median([timed(lambda: TileSurrogate(spec, g, "linear").read(v_big))[0]
                      for _ in range(2 if args.quick else 3)])
    vps = len(v_big) / t_fresh
    out["read_linear_with_T_build"] = {"batch": len(v_big), "vectors_per_s": vps}
    mode_rows.insert(2, ["linear, T built in the call", len(v_big), fmt_s(t_fresh), fmt_rate(vps),
                         fmt_ratio(vps * spice["ngspice"]["wall_s"]), fmt_ratio(vps * spice["vacask"]["wall_s"]),
                         "", "fresh TileSurrogate per batch"])
    for sim in ("ngspice", "vacask"):
        mode_rows.append([f"{sim} (one read)", 1, fmt_s(spice[sim]["wall_s"]),
                          fmt_rate(1 / spice[sim]["wall_s"]), "1×" if sim == "ngspice" else
                          fmt_ratio(spice['ngspice']['wall_s'] / spice['vacask']['wall_s']),
                          "1×" if sim == "vacask" else
                          fmt_ratio(spice['vacask']['wall_s'] / spice['ngspice']['wall_s']),
                          "0" if sim == "ngspice" else f"{max_rel_diff(spice[sim]['currents'], ref):.1e}", ""])
    out["spice"] = {k: {"wall_s": d["wall_s"], "sim_s": d["sim_s"]} for k, d in spice.items()}
    print(f"\n## Input vectors per second through one {n}×{n} 1T1R tile\n")
    print(table(["mode", "batch", "wall per batch", "vectors/s", "× ngspice", "× VACASK",
                 "max |ΔI|/max |I| vs ngspice (1st vector)", "note"], mode_rows))
    print("('× ngspice' = vectors/s × ngspice's wall time for one read of the same tile; linear mode "
          "with T prebuilt and the uncalibrated selector conductance beta·(V_G − V_T))")

    # ---- targets ---------------------------------------------------------------------------------
    lin = out["read_linear"]["vectors_per_s"]
    print("\n## Targets\n")
    if "T_64" in out:
        for key, what in (("recursion_s", f"{thr}"), ("recursion_1thread_s", "1 thread")):
            t64 = out["T_64"].get(key)
            if t64 is not None:
                print(f"T for 64×64 ≤ 50 ms ({what}): {fmt_s(t64)} median -> "
                      f"{'MET' if t64 <= T_TARGET_S else 'NOT MET'}")
    print(f"linear mode ≥ 1e5 vectors/s: {fmt_rate(lin)} -> {'MET' if lin >= LINEAR_TARGET_VPS else 'NOT MET'}")
    print(f"\nat end: {load_str()}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
