"""The whole network in SPICE for many images through one dask ``LocalCluster``: every array
read of every image solved in VACASK on the cluster's workers, beside the surrogate, resumable
(stop it at any time; the same command continues from the last finished batch of images).

    .venv/bin/python benchmarks/spice_loop_cluster.py --data ../shared/data --cell 1t1r \\
        --images 100 --out runs/verify_1t1r_100.h5 --plot docs/spice_loop_1t1r.png

Method. One ``dask.distributed.LocalCluster`` (``--workers`` processes, one thread each) serves
the whole run (:func:`~spicecross.nn.spice_verify.verify_network` starts it when the dask
backend has no scheduler; ``spicecross verify-network --backend dask`` does the same), so every
layer call of every image sends its simulator runs to the same workers. The network is the shipped MNIST CNN with
the default ``AnalogConfig`` for ``--cell`` (64×64 tiles, 8-bit DAC/ADC, 0.1 Ω wires, 0.2 V
two-phase reads, ``polynomial`` mode). Results go to the HDF5 file ``--out`` after every batch
of ``--batch`` images (:func:`~spicecross.nn.spice_verify.verify_network`); the summary printed
at the end covers every image in the file: accuracy of SPICE, surrogate and digital network,
the share of images whose class differs, the largest logit difference and the per-layer read
error in ADC steps. Target (SPICE-in-the-loop issue, 1T1R, 100 images): SPICE and surrogate
accuracies within 0.5 point.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, load_str  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="data root (default: the bundled sample)")
    p.add_argument("--cell", choices=["0t1r", "1t1r"], default="1t1r")
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--tile", type=int, default=64, metavar="N", help="N×N tiles (default 64)")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    p.add_argument("--batch", type=int, default=2, help="images per resumable batch")
    p.add_argument("--out", required=True, help="HDF5 results (created or resumed)")
    p.add_argument("--plot", default=None, help="PNG of the per-layer read errors")
    p.add_argument("--max-batches", type=int, default=None,
                   help="stop after this many new batches (the next run continues)")
    args = p.parse_args(argv)
    if min(args.images, args.workers, args.batch, args.tile) < 1:
        p.error("--images, --workers, --batch and --tile must be ≥ 1")

    from spicecross.cli.verify import config_line, json_report, print_report
    from spicecross.nn.spice_loop import SpiceLoopSettings
    from spicecross.nn.spice_verify import plot_layer_errors, verify_network
    from spicecross.surrogate.config import AnalogConfig
    from spicecross.threads import limited_threads

    print(header(f"SPICE loop on a dask LocalCluster: {args.cell.upper()}, {args.images} images"))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    config = AnalogConfig.build(cell=args.cell, tile_rows=args.tile, tile_cols=args.tile)
    # dask without a scheduler: verify_network starts one LocalCluster for the whole run
    settings = SpiceLoopSettings(n_jobs=args.workers, parallel_backend="dask", progress=True)
    t0 = time.perf_counter()
    with limited_threads(1):
        res = verify_network("mnist", args.data, config, args.out, limit=args.images,
                             settings=settings, batch_images=args.batch,
                             max_batches=args.max_batches, log=print)
    wall = time.perf_counter() - t0
    if args.plot:
        from spicecross.nn.spice_loop_store import load_results

        plot_layer_errors(load_results(args.out), args.plot)
    print_report(res, config_line(res))
    gap = abs(res["accuracy_spice"] - res["accuracy_surrogate"])
    print(f"  SPICE vs surrogate accuracy: {gap:.2f} point apart (target ≤ 0.5)")
    print(json.dumps(json_report(res)))
    print(f"this run: {wall:.0f} s; {load_str()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
