"""Nonlinear (exact 1T1R) reads: input vectors per second of the nonlinear solver with its two
linear parts, measured in the same run: the dense block solve (``linear="block"``) and the
chains' explicit wire voltages with Chebyshev steps (``linear="chains"``, see
``spicecross/surrogate/nonlinear_chains.py``), which one ``linear="auto"`` takes, against the
former sparse-LU fixed point (``TileSurrogate(..., method="sparse_lu")``), and their agreement.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/nonlinear.py
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/nonlinear.py --quick
    ... --sizes 64 --batches 20 200 2048 --r-wire 2.5 0.1

Tiles: 1T1R, default level-1 selector (V_G 1.8 V), device conductances U(1/2.5 kΩ, 1/100 Ω),
uniform wire segments (``--r-wire``, Ω), inputs U(0, 0.2 V). Each time is the median wall time
of ``--repeats`` calls after one untimed warm-up call (the block and chain solvers' calls
alternate, so both see the same load; ``A_lin`` is factored or bounded before the warm-up: its
time is printed separately). The sparse-LU solver is timed at batches up to
``--old-max-batch`` only (it needs minutes beyond); its vectors/s at larger batches is not
extrapolated. Agreement: max |ΔI| / max |I| over the batch. A last table reads ``--tiles``
tiles of 20 vectors each with ``nonlinear.read_many`` against one by one. Threads: torch's,
as the environment sets them (``OMP_NUM_THREADS``/``MKL_NUM_THREADS``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (PT_HF_TI_G_RANGE_S, fmt_rate, fmt_s, header, load_str,  # noqa: E402
                     max_rel_diff, median, table, timed)

from spicecross.circuit.tile import TileSpec  # noqa: E402
from spicecross.surrogate.mapping import effective_cell_conductance  # noqa: E402
from spicecross.surrogate.nonlinear import BlockSolver, linear_network, read_many  # noqa: E402
from spicecross.surrogate.tile_model import TileSurrogate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--batches", type=int, nargs="+", default=[20, 200, 2048])
    p.add_argument("--r-wire", type=float, nargs="+", default=[2.5, 0.1], metavar="OHMS")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--old-max-batch", type=int, default=200)
    p.add_argument("--quick", action="store_true", help="one repeat, batches 20 and 200")
    p.add_argument("--tiles", type=int, default=8,
                   help="tiles read together by read_many (batch 20 each) against one by one")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.batches = 1, [b for b in args.batches if b <= 200] or [20]
    print(header("Nonlinear 1T1R reads: block solve vs chains vs sparse-LU fixed point"))
    rows = []
    for r_wire in args.r_wire:
        for n in args.sizes:
            spec = TileSpec.uniform_wires(n, n, r_wire, cell="1t1r")
            rng = np.random.default_rng(args.seed + n)
            g = rng.uniform(*PT_HF_TI_G_RANGE_S, (n, n))
            v_all = rng.uniform(0.0, 0.2, (max(args.batches), n))
            g_lin = effective_cell_conductance(spec, g)[None]
            solvers, t_build = {}, {}
            for lin in ("block", "chains"):
                t_build[lin], solvers[lin] = timed(
                    lambda: BlockSolver(spec, g[None], g_lin, linear=lin))
            auto = type(linear_network(spec, g_lin)).__name__.replace("Network", "").lower()
            for batch in args.batches:
                v = v_all[None, :batch]
                times = {lin: [] for lin in solvers}
                for s_ in solvers.values():
                    s_.read(v)
                for _ in range(args.repeats):
                    for lin, s_ in solvers.items():
                        times[lin].append(timed(lambda: s_.read(v))[0])
                out = {lin: s_.read(v)[0].numpy() for lin, s_ in solvers.items()}
                t_b, t_c = median(times["block"]), median(times["chains"])
                row = [f"{n}×{n}", f"{r_wire:g}", batch, auto, fmt_rate(batch / t_b),
                       solvers["block"].stats.iterations, fmt_rate(batch / t_c),
                       f"{solvers['chains'].stats.iterations} × {solvers['chains'].net.steps}",
                       f"{solvers['chains'].net.mu:.2g}", f"{t_b / t_c:.2f}",
                       f"{max_rel_diff(out['chains'], out['block']):.1e}"]
                if batch <= args.old_max_batch:
                    old = TileSurrogate(spec, g, "nonlinear", method="sparse_lu")
                    old.read(v[0, :2])
                    t_old = median([timed(lambda: old.read(v[0]))[0]
                                    for _ in range(max(1, args.repeats if n < 64 else 1))])
                    ref = old.read(v[0])
                    row += [fmt_rate(batch / t_old), old.stats.iterations,
                            f"{max_rel_diff(out['block'], ref):.1e}",
                            f"{max_rel_diff(out['chains'], ref):.1e}"]
                else:
                    row += ["—", "—", "—", "—"]
                rows.append(row + [f"{fmt_s(t_build['block'])} / {fmt_s(t_build['chains'])}"])
                print(" | ".join(str(x) for x in row) + f"  [{load_str()}]", flush=True)
    print("\n## Vectors per second, one tile, same run\n")
    print(table(["tile", "r_wire (Ω)", "batch", "auto takes", "block vectors/s",
                 "block iterations", "chains vectors/s", "chains iterations × Chebyshev steps",
                 "contraction bound μ", "chains / block speed", "max |ΔI|/max |I| chains vs block",
                 "sparse-LU vectors/s", "sparse-LU iterations", "block vs sparse LU",
                 "chains vs sparse LU", "A_lin factored / chains bounded"], rows))
    many_rows = []
    for n in args.sizes:
        spec = TileSpec.uniform_wires(n, n, args.r_wire[-1], cell="1t1r")
        rng = np.random.default_rng(args.seed + 7 * n)
        g = rng.uniform(*PT_HF_TI_G_RANGE_S, (args.tiles, n, n))
        v = rng.uniform(0.0, 0.2, (args.tiles, 20, n))
        sur = [TileSurrogate(spec, g[k], "nonlinear") for k in range(args.tiles)]
        for s_, vv in zip(sur, v):
            s_.read(vv)
        t_one = median([timed(lambda: [s_.read(vv) for s_, vv in zip(sur, v)])[0]
                        for _ in range(args.repeats)])
        ref = np.stack([s_.read(vv) for s_, vv in zip(sur, v)])
        read_many(spec, g, v)
        t_many = median([timed(lambda: read_many(spec, g, v))[0] for _ in range(args.repeats)])
        many_rows.append([f"{n}×{n}", f"{args.r_wire[-1]:g}", args.tiles, 20,
                          fmt_rate(args.tiles * 20 / t_one), fmt_rate(args.tiles * 20 / t_many),
                          f"{max_rel_diff(read_many(spec, g, v), ref):.1e}"])
    print(f"\n## Several tiles: read_many (A_lin factored in the call) vs TileSurrogate per tile\n")
    print(table(["tile", "r_wire (Ω)", "tiles", "vectors per tile", "per tile vectors/s",
                 "read_many vectors/s", "max |ΔI|/max |I|"], many_rows))
    print(f"\nthreads: torch {torch.get_num_threads()}; at end: {load_str()}")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
