"""Programming VTEAM tiles: write pulses per second of the dynamic surrogate against ngspice
(behavioural VTEAM) and VACASK (Verilog-A VTEAM) on the same tile, with their ratio, in one run.

    .venv/bin/python benchmarks/programming.py [--sizes 4,8] [--batch 16]

Per tile size (0T1R, pt_hf_ti, default 0.1 Ω wires) and polarity (RESET 1.4 V × 10 ms, SET
−1.4 V × 3 ps, V/2 scheme): one pulse to each diagonal cell, as

* one train (one SPICE run for all pulses; SPICE time is the simulator process alone),
* one run per pulse (as write-verify runs them: the simulator started per pulse; wall time of
  ``run_tile_transient``, deck writing and parsing included),
* the surrogate on the tile alone and on ``--batch`` tiles at once (tile-pulses per second),

and the surrogate's state error against VACASK (RMS, in units of the state range). Last, one
write-verify (V/3, diagonal targets, tolerance 1 %) per backend with its wall time per pulse.
States the machine load (``uptime``) first: do not quote timings from a loaded machine
without it.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, load_str, table  # noqa: E402

from spicecross.circuit.tile import TileSpec  # noqa: E402
from spicecross.devices.vteam import get_parameter_set, resistance_at_state_ohm  # noqa: E402
from spicecross.spice.programming import open_loop_train, program_tile  # noqa: E402
from spicecross.spice.tile_transient import run_tile_transient  # noqa: E402
from spicecross.surrogate.dynamic import DynamicTileSurrogate  # noqa: E402
from spicecross.surrogate.programming import WRITE_STEPPING  # noqa: E402

P = get_parameter_set("pt_hf_ti")
PULSES = {"RESET": (1.4, 10e-3), "SET": (-1.4, 3e-12)}


def conductance(w):
    return 1.0 / resistance_at_state_ohm(w, P.r_on_ohm, P.r_off_ohm)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="4,8", help="tile sizes n (n×n), comma-separated")
    ap.add_argument("--batch", type=int, default=16, help="tiles per batched surrogate call")
    args = ap.parse_args()
    print(header("VTEAM tile programming: write pulses per second"))
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        spec = TileSpec(rows=n, cols=n)
        rng = np.random.default_rng(n)
        w0 = rng.uniform(0.3, 0.7, (n, n))
        g = conductance(w0)
        cells = [(i, i) for i in range(n)]
        for kind, (v, width) in PULSES.items():
            train = open_loop_train(spec, "v2", cells, v, width)
            spice = {s: run_tile_transient(s, spec, g, train) for s in ("ngspice", "vacask")}
            per_pulse = {}
            for s in ("ngspice", "vacask"):
                t0 = time.perf_counter()
                w = w0
                for c in cells:
                    w = run_tile_transient(s, spec, conductance(w),
                                           open_loop_train(spec, "v2", [c], v, width)).w_final
                per_pulse[s] = n / (time.perf_counter() - t0)
            sur = DynamicTileSurrogate(spec, **WRITE_STEPPING)
            t0 = time.perf_counter()
            one = sur.run_pulses(g, train)
            sur_one = n / (time.perf_counter() - t0)
            gs = conductance(rng.uniform(0.3, 0.7, (args.batch, n, n)))
            t0 = time.perf_counter()
            sur.run_pulses(gs, [train] * args.batch)
            sur_batch = args.batch * n / (time.perf_counter() - t0)
            rms = float(np.sqrt(np.mean((one.w_final - spice["vacask"].w_final) ** 2)))
            ng_train = n / spice["ngspice"].sim_s
            va_train = n / spice["vacask"].sim_s
            rows.append([f"{n}×{n}", kind, f"{ng_train:.3g}", f"{va_train:.3g}",
                         f"{per_pulse['ngspice']:.3g}", f"{per_pulse['vacask']:.3g}",
                         f"{sur_one:.3g}", f"{sur_batch:.3g}",
                         f"{sur_one / ng_train:.2g} / {sur_batch / ng_train:.2g}",
                         f"{rms:.1e}"])
            print(f"{n}×{n} {kind} done; {load_str()}", flush=True)
    print(table(["tile", "pulse", "ngspice pulses/s (train)", "VACASK pulses/s (train)",
                 "ngspice pulses/s (run per pulse)", "VACASK pulses/s (run per pulse)",
                 "surrogate pulses/s (1 tile)", f"surrogate tile-pulses/s (batch {args.batch})",
                 "surrogate ÷ ngspice train (1 tile / batch)", "state RMS vs VACASK"], rows))
    wv = []
    spec = TileSpec(rows=4, cols=4)
    rng = np.random.default_rng(0)
    w0 = rng.uniform(0.3, 0.7, (4, 4))
    t = np.where(np.eye(4, dtype=bool), conductance(rng.uniform(0.05, 0.6, (4, 4))), np.nan)
    for backend in ("surrogate", "ngspice", "vacask"):
        r = program_tile(spec, t, scheme="v3", backend=backend, w_initial=w0, tolerance=0.01,
                         max_pulses=12)
        wv.append([backend, int(r.pulses.sum()), r.reads, f"{r.wall_s:.3g}",
                   f"{r.pulses.sum() / r.wall_s:.3g}",
                   f"{np.nanmax(np.abs(r.g_error_s)) / r.g_range_s:.2e}"])
    print(table(["write-verify 4×4 V/3 (diagonal)", "pulses", "reads", "wall s",
                 "pulses/s (with reads)", "max |error| / G range"], wv))
    print(load_str())
    return 0


if __name__ == "__main__":
    sys.exit(main())
