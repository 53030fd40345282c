"""Nonlinear (exact 1T1R) reads: input vectors per second of the nonlinear solver with its
linear parts, measured in the same run: the compiled line solver (``linear="lines"``, see
``spicecross/surrogate/nonlinear_lines.py``, what ``linear="auto"`` takes for 1T1R tiles with
lambda 0) on ``--lines-threads`` threads, the torch iteration with the dense block
solve (``linear="block"``, the solver before the line solver) and with the chains' explicit
wire voltages and Chebyshev steps (``linear="chains"``), against the former sparse-LU fixed
point (``TileSurrogate(..., method="sparse_lu")``), and their agreement.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/nonlinear.py
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/nonlinear.py --quick
    ... --sizes 64 --batches 20 200 2048 --r-wire 2.5 0.1

Tiles: 1T1R, default level-1 selector (V_G 1.8 V), device conductances U(1/2.5 kΩ, 1/100 Ω),
uniform wire segments (``--r-wire``, Ω), inputs U(0, 0.2 V). Each time is the median wall time
of ``--repeats`` calls after one untimed warm-up call (the block and chain solvers' calls
alternate, so both see the same load; ``A_lin`` is factored or bounded before the warm-up: its
time is printed separately; the line solver's first call, which compiles or loads its kernel,
is outside the timing). The sparse-LU solver is timed at batches up to
``--old-max-batch`` only (it needs minutes beyond); its vectors/s at larger batches is not
extrapolated. Agreement: max |ΔI| / max |I| over the batch. A last table reads ``--tiles``
tiles of 20 vectors each with ``nonlinear.read_many`` against one by one. ``--baseline REV``
adds the line solver as of git revision REV (its modules loaded beside the current ones),
timed alternately with the current one on the same threads, and their agreement. Threads: torch's,
as the environment sets them (``OMP_NUM_THREADS``/``MKL_NUM_THREADS``); the line solver's as
``--lines-threads`` says (each a column; its default elsewhere is torch's thread count).
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


def _factored(spec, g, g_lin, linear: str) -> BlockSolver:
    """A BlockSolver with its linear part factored (the torch iteration's ``A_lin`` is
    otherwise factored at its first read)."""
    s = BlockSolver(spec, g[None], g_lin, linear=linear)
    if s.lines is None:
        s.net
    return s


def _baseline_lines(rev: str):
    """The line solver's modules (``nonlinear_lines``, its kernel) as of git revision ``rev``,
    importable beside the current ones (a package in the temporary directory, one per
    revision, so numba's cache of its kernel is kept between runs)."""
    import importlib
    import subprocess
    import tempfile

    root = Path(__file__).resolve().parents[1]
    full = subprocess.run(["git", "-C", str(root), "rev-parse", rev], capture_output=True,
                          text=True, check=True).stdout.strip()
    pkg = Path(tempfile.gettempdir()) / f"spicecross_lines_{full[:12]}" / "lines_baseline"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    for name in ("nonlinear_lines", "nonlinear_kernel", "nonlinear_sweeps"):
        src = subprocess.run(["git", "-C", str(root), "show", f"{full}:spicecross/surrogate/"
                              f"{name}.py"], capture_output=True, text=True)
        if src.returncode:
            continue
        text = src.stdout.replace("from ..", "from spicecross.")
        for mod in ("nonlinear_chains", "nonlinear", "config", "mapping"):
            text = text.replace(f"from .{mod} import", f"from spicecross.surrogate.{mod} import")
        if not (pkg / f"{name}.py").exists() or (pkg / f"{name}.py").read_text() != text:
            (pkg / f"{name}.py").write_text(text)
    sys.path.insert(0, str(pkg.parent))
    return importlib.import_module("lines_baseline.nonlinear_lines")


def _with_threads(threads: int, solver: BlockSolver, v):
    """``solver.read(v)`` with the line solver on ``threads`` threads."""
    solver.threads = threads
    return solver.read(v)


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
    p.add_argument("--lines-threads", type=int, nargs="+", default=[1, 2],
                   help="threads of the line solver, one column each")
    p.add_argument("--baseline", metavar="REV",
                   help="also time the line solver as of this git revision (same run)")
    args = p.parse_args(argv)
    base_mod = _baseline_lines(args.baseline) if args.baseline else None
    if args.quick:
        args.repeats, args.batches = 1, [b for b in args.batches if b <= 200] or [20]
    print(header("Nonlinear 1T1R reads: line solver vs block solve vs chains vs sparse-LU"))
    rows = []
    for r_wire in args.r_wire:
        for n in args.sizes:
            spec = TileSpec.uniform_wires(n, n, r_wire, cell="1t1r")
            rng = np.random.default_rng(args.seed + n)
            g = rng.uniform(*PT_HF_TI_G_RANGE_S, (n, n))
            v_all = rng.uniform(0.0, 0.2, (max(args.batches), n))
            g_lin = effective_cell_conductance(spec, g)[None]
            solvers, t_build = {}, {}
            for lin in ("lines", "block", "chains"):
                t_build[lin], solvers[lin] = timed(lambda: _factored(spec, g, g_lin, lin))
            for th in args.lines_threads:
                solvers[f"lines{th}"] = solvers["lines"]
                if base_mod is not None:
                    if "base" not in solvers:
                        solvers["base"] = BlockSolver(spec, g[None], g_lin, linear="lines")
                        solvers["base"].lines = base_mod.LineSystem.build(spec, g[None], g_lin)
                    solvers[f"base{th}"] = solvers["base"]
            auto = type(linear_network(spec, g_lin)).__name__.replace("Network", "").lower()
            for batch in args.batches:
                v = v_all[None, :batch]
                names = [f"{kind}{th}" for th in args.lines_threads
                         for kind in (("lines", "base") if base_mod else ("lines",))]
                names += ["block", "chains"]
                times = {lin: [] for lin in names}
                read = {lin: (lambda s_=solvers[lin], lin=lin: s_.read(v) if lin in (
                    "block", "chains") else _with_threads(int(lin[4 + lin.startswith("lines"):]),
                                                         s_, v)) for lin in names}
                for lin in names:
                    read[lin]()
                for _ in range(args.repeats):
                    for lin in names:
                        times[lin].append(timed(read[lin])[0])
                out = {lin: read[lin]()[0].numpy() for lin in names}
                t_b, t_c = median(times["block"]), median(times["chains"])
                lines = solvers["lines"]
                row = [f"{n}×{n}", f"{r_wire:g}", batch, auto]
                for th in args.lines_threads:
                    t_l = median(times[f"lines{th}"])
                    row += [fmt_rate(batch / t_l), f"{t_b / t_l:.1f}"]
                    if base_mod:
                        t_0 = median(times[f"base{th}"])
                        row += [fmt_rate(batch / t_0), f"{t_0 / t_l:.2f}"]
                if base_mod:
                    row += [solvers["base"].stats.iterations,
                            f"{max_rel_diff(out[names[0]], out['base' + names[0][5:]]):.1e}"]
                row += [lines.stats.iterations, lines.stats.torch_vectors,
                        f"{max_rel_diff(out[names[0]], out['block']):.1e}",
                        fmt_rate(batch / t_b),
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
                            f"{max_rel_diff(out[names[0]], ref):.1e}",
                            f"{max_rel_diff(out['block'], ref):.1e}",
                            f"{max_rel_diff(out['chains'], ref):.1e}"]
                else:
                    row += ["—", "—", "—", "—", "—"]
                rows.append(row + [f"{fmt_s(t_build['lines'])} / {fmt_s(t_build['block'])} / "
                                   f"{fmt_s(t_build['chains'])}"])
                print(" | ".join(str(x) for x in row) + f"  [{load_str()}]", flush=True)
    print("\n## Vectors per second, one tile, same run\n")
    lines_cols = [c for th in args.lines_threads for c in
                  (f"lines vectors/s ({th} thread{'s' if th > 1 else ''})", "lines / block speed")
                  + ((f"baseline {args.baseline} vectors/s ({th})", "lines / baseline speed")
                     if base_mod else ())]
    if base_mod:
        lines_cols += ["baseline iterations", "max |ΔI|/max |I| lines vs baseline"]
    print(table(["tile", "r_wire (Ω)", "batch", "torch iteration's auto part"] + lines_cols + [
                 "lines iterations", "vectors left to torch",
                 "max |ΔI|/max |I| lines vs block", "block vectors/s",
                 "block iterations", "chains vectors/s", "chains iterations × Chebyshev steps",
                 "contraction bound μ", "chains / block speed", "max |ΔI|/max |I| chains vs block",
                 "sparse-LU vectors/s", "sparse-LU iterations", "lines vs sparse LU",
                 "block vs sparse LU", "chains vs sparse LU",
                 "lines factored / A_lin factored / chains bounded"], rows))
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
