"""Read-disturb inference of the MNIST network (``spicecross infer --read-disturb``): images per
second against the undisturbed inference of the same images in the same run, and the README
figure (accuracy against images read at a few read voltages around threshold).

    .venv/bin/python benchmarks/read_disturb.py --data ../shared/data --images 2000 \\
        --v-read 0.45 0.55 0.7 --pulse-ns 1000 --chunk 250 --plot docs/read_disturb.png

Per read voltage: the network programmed on 64×64 (``--tile``) 0T1R or 1T1R (``--cell``)
pt_hf_ti tiles (default wires, no compensation, 8-bit converters, two-phase reads), calibrated
once, then (1) the undisturbed inference of the test images (batches of ``--chunk``), (2) the
read-disturb stream (chunks of ``--chunk``; every read a rectangular pulse of ``--pulse-ns``).
Images per second of both are wall time of this process (the digital network and the
programming excluded); their ratio, measured in the same run, is the load-independent figure.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, load_str, table  # noqa: E402

from spicecross.nn.read_disturb import read_disturb_infer  # noqa: E402
from spicecross.nn.read_disturb_report import plot_read_disturb  # noqa: E402
from spicecross.surrogate.config import AnalogConfig  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="data root (default: the bundled sample)")
    ap.add_argument("--images", type=int, default=1000, help="test images (default 1000)")
    ap.add_argument("--v-read", type=float, nargs="+", default=[0.45, 0.55, 0.7],
                    help="DAC full-scale read voltages (V)")
    ap.add_argument("--pulse-ns", type=float, default=1000.0, help="read pulse width (ns)")
    ap.add_argument("--chunk", type=int, default=250, help="images per chunk")
    ap.add_argument("--tile", type=int, default=64, help="square tile size")
    ap.add_argument("--cell", choices=["0t1r", "1t1r"], default="0t1r", help="cell kind")
    ap.add_argument("--plot", default=None, help="write the figure here (PNG)")
    ap.add_argument("--json", default=None, help="write the results here (JSON)")
    args = ap.parse_args()
    print(header("read-disturb inference, MNIST"))
    runs, rows = [], []
    for v in args.v_read:
        cfg = AnalogConfig.build(tile_rows=args.tile, tile_cols=args.tile, v_read_v=v,
                                 cell=args.cell)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # reads above threshold: the point
            res = read_disturb_infer("mnist", args.data, cfg, pulse_width_s=1e-9 * args.pulse_ns,
                                     chunk=args.chunk, limit=args.images,
                                     batch_size=args.chunk, progress=True)
        runs.append(res)
        n, st = res["images"], res["stats"]
        last = res["chunks"][-1]
        rows.append([f"{v:g}", n, f"{res['no_disturb_accuracy']:.2f}", f"{res['accuracy']:.2f}",
                     f"{last['accuracy']:.2f}", f"{100 * last['moved_share']:.3g}",
                     f"{last['mean_abs_dw']:.3g}", f"{last['max_abs_dw']:.3g}",
                     f"{n / res['no_disturb_seconds']:.0f}",
                     f"{n / res['seconds']:.1f}",
                     f"{res['seconds'] / res['no_disturb_seconds']:.1f}",
                     f"{100 * st.inert_reads / max(1, st.reads):.1f}", st.transfer_builds])
        print(f"  v_read {v:g} V done ({load_str()})", flush=True)
    print(f"\ntile {args.tile}x{args.tile} {args.cell.upper()} pt_hf_ti, pulses {args.pulse_ns:g} ns, chunks of "
          f"{args.chunk}, {runs[0]['data']}")
    print(table(["v_read V", "images", "undisturbed %", "disturbed %", "last chunk %",
                 "cells moved %", "mean |dw|", "max |dw|", "undisturbed img/s", "disturbed img/s",
                 "time ratio", "inert reads %", "T builds"], rows))
    print(f"at end: {load_str()}")
    if args.plot:
        print(f"figure: {plot_read_disturb(runs, args.plot)}")
    if args.json:
        Path(args.json).write_text(json.dumps([{k: v for k, v in r.items() if k != "stats"}
                                               | {"stats": vars(r["stats"])} for r in runs]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
