"""The cost of the SPICE error bar: ``infer`` on the same images with and without
``--spice-check K``, in one run, as the wall-time ratio (target: ≤ 1.25 for 10 000 MNIST images
with K = 32), and the check's own numbers (max error in ADC steps, share of reads within 1 step).

    .venv/bin/python benchmarks/spice_check.py --data ../shared/data              # 0T1R and 1T1R
    .venv/bin/python benchmarks/spice_check.py --data ../shared/data --cells 1t1r --reads 32 \\
        --calibration cal_1t1r.h5

The SPICE cache is a fresh temporary directory, so every check solves its reads for real.
Check ``uptime`` first: other heavy jobs on the 2 cores distort every time here.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_s, header, load_str, table  # noqa: E402

from spicecross.nn.inference import infer  # noqa: E402
from spicecross.surrogate.config import AnalogConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="data root (default: the bundled sample)")
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--reads", type=int, default=32, help="SPICE-check reads per layer")
    ap.add_argument("--cells", nargs="+", default=["0t1r", "1t1r"])
    ap.add_argument("--calibration", default=None, help="1T1R calibration (from-model) to apply")
    args = ap.parse_args()
    print(header("SPICE check cost: infer with and without --spice-check"))
    rows = []
    for cell in args.cells:
        cfg = AnalogConfig.build(cell=cell)
        if cell == "1t1r" and args.calibration:
            from spicecross.calibration.calibrate import apply_calibration, load_calibration
            cfg = apply_calibration(cfg, load_calibration(args.calibration))
        with tempfile.TemporaryDirectory() as cache:
            os.environ["SPICECROSS_CACHE"] = cache
            t0 = time.perf_counter()
            plain = infer("mnist", args.data, cfg, limit=args.images)
            t_plain = time.perf_counter() - t0
            t0 = time.perf_counter()
            checked = infer("mnist", args.data, cfg, limit=args.images, spice_check_reads=args.reads)
            t_checked = time.perf_counter() - t0
        chk = checked["spice_check"]
        rows.append([cell, str(checked["images"]), f"{plain['accuracy']:.2f} %", fmt_s(t_plain),
                     fmt_s(t_checked), f"{t_checked / t_plain:.2f}×", str(chk["reads"]),
                     f"{chk['max_err_lsb']:.3g}", f"{100 * chk['share_within_1_lsb']:.1f} %",
                     f"{chk['max_rel_err']:.2g}"])
        print(f"  {cell}: done; {load_str()}", flush=True)
    print(table(["cell", "images", "accuracy", "infer", f"infer + check ({args.reads}/layer)",
                 "ratio", "reads", "max err (ADC steps)", "reads ≤ 1 step", "max rel. err"], rows))
    print(f"at end: {load_str()}")


if __name__ == "__main__":
    main()
