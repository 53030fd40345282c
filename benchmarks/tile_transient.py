"""Read-pulse transients of VTEAM tiles: wall time of ngspice (behavioural subcircuit) and
VACASK (Verilog-A) on one 32×32 tile (and 64×64 with ``--big``), and the dynamic surrogate's
pulses per second for a batch of tiles, with the surrogate's error against VACASK.

    .venv/bin/python benchmarks/tile_transient.py [--big] [--pulses N] [--batch B]

Tiles: pt_hf_ti conductances U(1/2000, 1/120) S, default wires (0.1 Ω), 0 Ω driver and sense;
``--pulses`` reset pulses of U(0.6, 0.8) V per input, 20 ms plateaus, 1 ms ramps, 5 ms gaps
(the states move by ~0.03 of their range per pulse). SPICE time: the simulator process only
(deck writing and raw-file parsing excluded); surrogate time: ``run_pulses`` on ``--batch``
tiles at once, each with its own pulses.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, load_str, table  # noqa: E402

from spicecross.circuit.tile import TileSpec  # noqa: E402
from spicecross.spice.tile_transient import PulseTrain, run_tile_transient  # noqa: E402
from spicecross.surrogate.dynamic import DynamicTileSurrogate  # noqa: E402


def tile(n: int, seed: int) -> tuple[np.ndarray, PulseTrain]:
    rng = np.random.default_rng(seed)
    g = 1.0 / rng.uniform(120.0, 2000.0, (n, n))
    return g, PulseTrain(rng.uniform(0.6, 0.8, (N_PULSES, n)), 20e-3, 1e-3, 1e-3, 5e-3)


def main() -> int:
    global N_PULSES
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big", action="store_true", help="also 64×64")
    ap.add_argument("--pulses", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16, help="tiles per surrogate call")
    args = ap.parse_args()
    N_PULSES = args.pulses
    print(header("VTEAM tile read-pulse transients"))
    rows = []
    for n in (32, 64) if args.big else (32,):
        spec = TileSpec(rows=n, cols=n)
        g, train = tile(n, n)
        spice = {s: run_tile_transient(s, spec, g, train) for s in ("ngspice", "vacask")}
        sur = DynamicTileSurrogate(spec)
        t0 = time.perf_counter()
        one = sur.run_pulses(g, train)
        t_one = time.perf_counter() - t0
        batch = [tile(n, 1000 + b) for b in range(args.batch)]
        t0 = time.perf_counter()
        sur.run_pulses(np.stack([b[0] for b in batch]), [b[1] for b in batch])
        t_batch = time.perf_counter() - t0
        ref = spice["vacask"]
        rms_w = float(np.sqrt(np.mean((one.w_final - ref.w_final) ** 2)))
        err_i = float(np.max(np.abs(one.currents_a - ref.currents_a)) / np.max(np.abs(ref.currents_a)))
        rows.append([f"{n}×{n}", f"{spice['ngspice'].sim_s / N_PULSES:.3g}",
                     f"{spice['vacask'].sim_s / N_PULSES:.3g}", f"{t_one / N_PULSES:.3g}",
                     f"{args.batch * N_PULSES / t_batch:.3g}",
                     f"{rms_w:.2e}", f"{err_i:.2e}"])
        print(f"{n}×{n} done; {load_str()}", flush=True)
    print(table(["tile", "ngspice s/pulse", "VACASK s/pulse", "surrogate s/pulse (1 tile)",
                 f"surrogate tile-pulses/s (batch {args.batch})", "state RMS vs VACASK",
                 "max |ΔI|/max I vs VACASK"], rows))
    return 0


N_PULSES = 5

if __name__ == "__main__":
    sys.exit(main())
