"""How far each fast 1T1R read mode is from the exact ``nonlinear`` mode (the level-1 selector
with the wires, which matches SPICE to ≤ 1e-6), on reads sampled from the MNIST network itself:
per layer, the largest error and the share of reads within 1 ADC step, and each mode's
inference time on the same images relative to the ``linear`` mode (ratio measured in one run).

    .venv/bin/python benchmarks/cell_poly.py --data ../shared/data
    .venv/bin/python benchmarks/cell_poly.py --data ../shared/data --tile 128x128 --v-read 0.4

Check ``uptime`` first: other heavy jobs on the 2 cores distort the times (not the errors).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, table  # noqa: E402

from spicecross.calibration.network_check import sample_tile_reads  # noqa: E402
from spicecross.nn.analog import analog_layers, patch_model  # noqa: E402
from spicecross.nn.calibrator import adc_yardstick  # noqa: E402
from spicecross.nn.inference import load_eval_data, load_network  # noqa: E402
from spicecross.surrogate.config import AnalogConfig  # noqa: E402


def mode_errors_lsb(model, images, reads: int, modes: tuple[str, ...]) -> dict[str, dict[str, np.ndarray]]:
    """Per layer and mode: each sampled read's largest column error in ADC steps against the
    exact ``nonlinear`` read of the same programmed array."""
    sampled = sample_tile_reads(model, images, reads)
    layers = dict(analog_layers(model))
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, tiles in sampled.items():
        layer = layers[name]
        arr, cfg, cal = layer.array, layer.config, layer.calibration
        errs: dict[str, list] = {m: [] for m in modes}
        for t in tiles:
            cols = slice(t.c * cfg.tile_cols, min((t.c + 1) * cfg.tile_cols, arr.c_out))
            n = cols.stop - cols.start
            ip, im = arr.read_tile(t.r, t.c, t.v, mode="nonlinear")
            ref = (ip - im)[:, :n]
            fs, steps = adc_yardstick(cal, cfg.adc_bits, t.r, cols, ref)
            lsb = np.broadcast_to(fs, ref.shape) / steps
            for m in modes:
                ip, im = arr.read_tile(t.r, t.c, t.v, mode=m)
                errs[m].append((np.abs((ip - im)[:, :n] - ref) / lsb).max(axis=1))
        out[name] = {m: np.concatenate(e) for m, e in errs.items() if e}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="data root (default: the bundled sample)")
    ap.add_argument("--tile", default="64x64")
    ap.add_argument("--v-read", type=float, default=None, help="full-scale read voltage (V)")
    ap.add_argument("--reads", type=int, default=64, help="sampled reads per layer")
    ap.add_argument("--images", type=int, default=1000, help="test images for the timing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows, cols = (int(x) for x in args.tile.lower().split("x"))
    model = load_network("mnist")
    modes = ("linear", "polynomial")
    print(header(f"1T1R read modes vs the exact nonlinear mode, {args.tile}, MNIST"))
    results, times = {}, {}
    for mode in modes:
        cfg = AnalogConfig.build(cell="1t1r", tile_rows=rows, tile_cols=cols, mode=mode, v_read_v=args.v_read)
        data = load_eval_data("mnist", args.data, args.images, cfg.calibration_images)
        an = patch_model(model, cfg, data.calibration)
        x = data.test.tensors[0]
        t0 = time.perf_counter()
        with torch.no_grad():
            for lo in range(0, len(x), 500):
                an(x[lo:lo + 500])
        times[mode] = time.perf_counter() - t0
        results[mode] = mode_errors_lsb(an, x[:64], args.reads, (mode,))
    table_rows = []
    for name in results[modes[0]]:
        row = [name]
        for m in modes:
            e = results[m][name][m]
            row += [f"{e.max():.3f}", f"{100 * np.mean(e <= 1):.1f} %"]
        table_rows.append(row)
    print(table(["layer"] + [f"{m} {k}" for m in modes for k in ("max LSB", "≤1 LSB")], table_rows))
    print(f"inference of {args.images} images: " + ", ".join(
        f"{m} {times[m]:.2f} s ({times[m] / times['linear']:.2f}× linear)" for m in modes))


if __name__ == "__main__":
    main()
