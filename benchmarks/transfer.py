"""Transfer-matrix build time, single-threaded: the former O(n⁴) row recursion (a verbatim copy
kept here only for the ratio) against ``spicecross.surrogate.transfer.transfer_matrices``
(nested dissection, O(n³)), on one square tile each of 64, 128, 256 (and 512 with ``--big``),
with the maximal relative difference max|ΔT| / max|T|.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/transfer.py [--big] [--repeats N]

Thread counts are fixed by the environment at start (no ``torch.set_num_threads`` call, see
``spicecross/threads.py``). Old and new are timed in interleaved repeats; the table shows the
minimum of the repeats (512: one repeat each). Tiles: cells U(1, 1000) µS with 10 % open cells,
0.1 Ω segments, 0 Ω driver and sense. The on-disk cache of transfer matrices is not used
(``cache=False``): every repeat builds (until the ninth session the repeats after the first of 128×128
and larger tiles read the first one's cache entry back, and the minimum timed that read).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_str, table  # noqa: E402

from spicecross.circuit.tile import TileSpec  # noqa: E402
from spicecross.surrogate.transfer import transfer_matrices  # noqa: E402


def old_transfer_matrices(spec: TileSpec, g_cell_s) -> torch.Tensor:
    """The row recursion that ``transfer_matrices`` used before (O(R·C³ + R²·C²)), for reference."""
    g = torch.as_tensor(g_cell_s, dtype=torch.float64)
    R, C = spec.rows, spec.cols
    g_w = 1.0 / spec.r_wire_wl_ohm
    g_b = 1.0 / spec.r_wire_bl_ohm
    g_in = 1.0 / (spec.r_driver_ohm + spec.r_wire_wl_ohm)
    g_out = 1.0 / (spec.r_wire_bl_ohm + spec.r_sense_ohm)
    batch = g.shape[:-2]
    lap = torch.zeros(C, C, dtype=torch.float64)
    k = torch.arange(C)
    lap[k[:-1], k[:-1]] += g_w
    lap[k[1:], k[1:]] += g_w
    lap[k[:-1], k[1:]] -= g_w
    lap[k[1:], k[:-1]] -= g_w
    lap[0, 0] += g_in
    L = lap.expand(*batch, R, C, C).clone()
    L.diagonal(dim1=-2, dim2=-1).add_(g)
    rhs = torch.cat([torch.diag_embed(g), torch.zeros(*batch, R, C, 1, dtype=torch.float64)], dim=-1)
    rhs[..., 0, C] = g_in
    sol = torch.linalg.solve(L, rhs)
    y_cell = torch.diag_embed(g) - g.unsqueeze(-1) * sol[..., :C]
    p = g * sol[..., C]
    eye = torch.eye(C, dtype=torch.float64)
    qs: list = [None] * R
    ss: list = [None] * R
    M = y_cell[..., R - 1, :, :] + g_out * eye
    s = torch.zeros(*batch, C, R, dtype=torch.float64)
    s[..., :, R - 1] = p[..., R - 1, :]
    for i in range(R - 2, -1, -1):
        Q = torch.linalg.inv(M + g_b * eye)
        qs[i + 1], ss[i + 1] = Q, s
        M = y_cell[..., i, :, :] + g_b * eye - (g_b * g_b) * Q
        s = g_b * (Q @ s)
        s[..., :, i] += p[..., i, :]
    U = torch.linalg.solve(M, s)
    for i in range(1, R):
        U = qs[i] @ (g_b * U + ss[i])
    return g_out * U


def timed(fn) -> tuple[float, torch.Tensor]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--big", action="store_true", help="also 512×512 (one repeat; old ≈ 30 s)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats per size (min taken)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[64, 128, 256])
    args = ap.parse_args(argv)
    sizes = list(args.sizes) + ([512] if args.big else [])
    print(f"# transfer-matrix build, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"at start: {load_str()}")
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        spec = TileSpec.uniform_wires(n, n, 0.1)
        g = rng.uniform(1e-6, 1e-3, (n, n))
        g[rng.random((n, n)) < 0.1] = 0.0
        transfer_matrices(TileSpec.uniform_wires(8, 8, 0.1), g[:8, :8])  # warm-up (imports)
        reps = 1 if n >= 512 else args.repeats
        t_old, t_new = [], []
        for _ in range(reps):
            dt, T_old = timed(lambda: old_transfer_matrices(spec, g))
            t_old.append(dt)
            dt, T_new = timed(lambda: transfer_matrices(spec, g, cache=False))
            t_new.append(dt)
        diff = float((T_new - T_old).abs().max() / T_old.abs().max())
        rows.append([f"{n}×{n}", f"{min(t_old):.3f} s", f"{min(t_new):.3f} s",
                     f"{min(t_old) / min(t_new):.1f}×", f"{diff:.1e}"])
        print(f"{n}: old {min(t_old):.3f} s, new {min(t_new):.3f} s, rel diff {diff:.1e}", flush=True)
    print()
    print(table(["tile", "old recursion", "nested dissection", "speed-up", "max|ΔT|/max|T|"], rows))
    print(f"at end: {load_str()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
