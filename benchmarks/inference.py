"""Network inference on crossbars: speed on 10 000 MNIST test images, and the wire-resistance
table behind the default ``r_wire_ohm``.

    .venv/bin/python benchmarks/inference.py --data ../shared/data            # speed (default)
    .venv/bin/python benchmarks/inference.py --data ../shared/data --wire-table
    .venv/bin/python benchmarks/inference.py --data ../shared/data --compensate  # with IR-drop compensation
    .venv/bin/python benchmarks/inference.py --data ../shared/data --images 2000 --quick

Speed: digital inference time of the shipped MNIST CNN and our time at 64×64, 128×128 and
256×256 tiles (8-bit ADC and DAC, MIV 9 V, ``linear`` mode, default wires and programming), all
in the same run, with the ratio to digital; the one-time programming cost (transfer matrices T
of every array, IR-drop compensation, calibration) is reported separately and in the ratio
"programming included" ((programming + inference) / digital), and T-building alone too (the
time to rebuild every layer's T once). Each inference time is the best of ``--repeats`` passes
over the images, each analog pass followed by a digital pass: a size's ratios divide by the
best of the digital passes interleaved with its own (as many passes on each side: the best of
10 digital passes against the best of 3 analog ones favours digital by the noise alone, ±20 %
between runs minutes apart on this VM), so that a burst of load from other jobs does not decide
a ratio; the last column divides by the fastest digital pass of the whole run instead (the
conservative figure). CIFAR10/CIFAR100 networks (random initial
weights: no CIFAR data here) timed on synthetic images at 64×64 the same way.
MemTorch's published times (seed paper, GTX 1060, no IR drop): 196 s / 464 s / 1497 s for
10 000 MNIST images at 64×64 / 128×128 / 256×256.

Wire table: MNIST accuracy at 64×64, 8-bit ADC, MIV 9 V, linear mode, ideal devices, for wire
segments of 0, 0.1, 0.5, 1, 2.5 Ω, 0T1R and 1T1R cells, with and without IR-drop compensation,
and 1T1R with the selector-unaware (MemTorch-like) mapping.

Check ``uptime`` first: other heavy jobs on the 2 cores distort every time here (``--threads 1``
runs digital and analog on one thread each: the ratios that such jobs distort least).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_s, header, load_str, table  # noqa: E402

from spicecross.nn.analog import analog_layers, patch_model  # noqa: E402
from spicecross.surrogate.config import AnalogConfig  # noqa: E402
from spicecross.nn.inference import (_accuracy, load_eval_data, load_network,  # noqa: E402
                                     synthetic_data)
from spicecross.nn.models import build_model  # noqa: E402

MEMTORCH_S = {64: 196.0, 128: 464.0, 256: 1497.0}


def _t_build_seconds(model) -> float:
    t0 = time.perf_counter()
    for _, layer in analog_layers(model):
        layer.array._build_readout()
    return time.perf_counter() - t0


def _analog_run(model, cfg: AnalogConfig, data, batch: int, repeats: int = 1,
                digital: list[float] | None = None) -> dict:
    """Programme (timed once) and run ``model`` on ``data.test`` ``repeats`` times (best time),
    each pass followed by a digital pass whose time is appended to ``digital`` if given."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        t0 = time.perf_counter()
        pm = patch_model(model, cfg, data.calibration)
        prog = time.perf_counter() - t0
    best = None
    for _ in range(repeats):
        acc, secs = _accuracy(pm, data.test, batch)
        best = secs if best is None else min(best, secs)
        if digital is not None:
            digital.append(_accuracy(model, data.test, batch)[1])
    secs = best
    return {"acc": acc, "secs": secs, "prog": prog, "tbuild": _t_build_seconds(pm),
            "arrays": sum(2 * m.n_row_tiles * m.n_col_tiles for _, m in analog_layers(pm)),
            "headroom": [m.array.headroom for _, m in analog_layers(pm)],
            "warnings": len({str(w.message) for w in caught})}


def speed(args) -> None:
    model = load_network("mnist")
    data = load_eval_data("mnist", args.data, args.images)
    n = len(data.test.tensors[1])
    base = AnalogConfig(ir_compensation=args.compensate)
    print(f"\n## MNIST, {n} test images ({data.source}); batch {args.batch}, "
          f"{torch.get_num_threads()} torch threads, best of {args.repeats} passes")
    print(f"config: linear mode, {base.cell}, wires {base.r_wire_ohm:g} Ω, IR compensation "
          f"{base.ir_compensation}, ADC {base.adc_bits} bit, DAC {base.dac_bits} bit, MIV "
          f"{base.max_input_voltage_v:g} V, device set {base.device_set}\n")
    _accuracy(model, data.test, args.batch)                           # warm-up
    d_acc, d_s = _accuracy(model, data.test, args.batch)
    digital = [d_s]
    runs = []
    for size in (64,) if args.quick else (64, 128, 256):
        beside: list[float] = []           # the digital passes interleaved with this size's
        r = _analog_run(model, base.with_(tile_rows=size, tile_cols=size), data, args.batch,
                        args.repeats, beside)
        r["digital"] = min(beside)
        digital += beside
        runs.append((size, r))
        print(f"  {size}x{size}: {fmt_s(r['secs'])} + programming {fmt_s(r['prog'])}, "
              f"digital beside it {fmt_s(r['digital'])}, headroom per layer {r['headroom']}, "
              f"{r['warnings']} warnings; {load_str()}", flush=True)
    d_s = min(digital)
    rows = [["digital", f"{d_acc:.2f}", f"{fmt_s(d_s)} (fastest)", "1.0", "—", "—", "—", "—",
             "—", "—"]]
    for size, r in runs:
        mt = MEMTORCH_S[size] * n / 10000
        incl = r["secs"] + r["prog"]
        rows.append([f"{size}x{size} linear", f"{r['acc']:.2f}",
                     f"{fmt_s(r['secs'])} (digital {fmt_s(r['digital'])})",
                     f"{r['secs'] / r['digital']:.2f}", fmt_s(r["prog"]),
                     f"{incl / r['digital']:.2f}", f"{incl / d_s:.2f}", fmt_s(r["tbuild"]),
                     f"{r['arrays']}", f"{mt / r['secs']:.0f}x"])
    print()
    print(table(["run", "accuracy %", "inference (digital beside it)", "ratio to digital",
                 "programming (once)", "ratio, programming included",
                 "same, vs fastest digital of the run", "T build alone", "arrays",
                 "faster than MemTorch"], rows))
    if args.no_cifar:
        return

    print(f"\n## CIFAR models on synthetic data ({args.cifar_images} images, random initial "
          "weights: timing only)\n")
    rows = []
    for name in ("cifar10", "cifar100"):
        torch.manual_seed(0)
        net = build_model(name).eval()
        syn = synthetic_data(name, args.cifar_images)
        _accuracy(net, syn.test, args.batch)
        _, ds = _accuracy(net, syn.test, args.batch)
        r = _analog_run(net, base, syn, args.batch)
        rows.append([name, fmt_s(ds), fmt_s(r["secs"]), f"{r['secs'] / ds:.1f}", fmt_s(r["prog"]),
                     fmt_s(r["tbuild"]), f"{r['arrays']}"])
        print(f"  {name}: headroom per layer {r['headroom']}; {load_str()}", flush=True)
    print()
    print(table(["model (64x64)", "digital", "memristive", "ratio", "programming (once)",
                 "T build alone", "arrays"], rows))


def wire_table(args) -> None:
    model = load_network("mnist")
    data = load_eval_data("mnist", args.data, args.images)
    n = len(data.test.tensors[1])
    d_acc, _ = _accuracy(model, data.test, args.batch)
    print(f"\n## MNIST accuracy (%) vs wire segment resistance, {n} images ({data.source})")
    print(f"64x64 tiles, 8-bit ADC and DAC, MIV 9 V, linear mode, ideal devices; digital "
          f"{d_acc:.2f} %\n")
    columns = [("0T1R", dict(cell="0t1r", ir_compensation=False)),
               ("0T1R + comp.", dict(cell="0t1r", ir_compensation=True)),
               ("1T1R", dict(cell="1t1r", ir_compensation=False)),
               ("1T1R + comp.", dict(cell="1t1r", ir_compensation=True)),
               ("1T1R selector-unaware", dict(cell="1t1r", selector_aware=False,
                                              ir_compensation=False))]
    rows = []
    for r_wire in (0.0, 0.1, 0.2, 0.5, 1.0, 2.5):
        row = [f"{r_wire:g}"]
        for _, kw in columns:
            if r_wire == 0.0 and kw.get("ir_compensation"):
                row.append("(= no comp.)")
                continue
            cfg = AnalogConfig.build(tile_rows=64, tile_cols=64, r_wire_ohm=r_wire, mode="linear",
                               adc_bits=8, dac_bits=8, max_input_voltage_v=9.0, **kw)
            res = _analog_run(model, cfg, data, args.batch)
            cell = f"{res['acc']:.2f}"
            if kw.get("ir_compensation") and res["warnings"]:
                cell += " (not compensable)"
            row.append(cell)
            print(f"  r={r_wire:g} {kw}: {cell} ({fmt_s(res['prog'])} programming); {load_str()}",
                  flush=True)
        rows.append(row)
    print()
    print(table(["r_wire (Ω)"] + [c for c, _ in columns], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="data root with MNIST/raw (default: $SPICECROSS_DATA)")
    ap.add_argument("--images", type=int, default=10000, help="MNIST test images (default 10000)")
    ap.add_argument("--cifar-images", type=int, default=2000, help="synthetic CIFAR images (default 2000)")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=2,
                    help="inference passes per configuration, best time kept (default 2)")
    ap.add_argument("--no-cifar", action="store_true", help="skip the CIFAR timing table")
    ap.add_argument("--quick", action="store_true", help="64x64 only")
    ap.add_argument("--compensate", action="store_true",
                    help="speed run with IR-drop compensation (programming cost, accuracy at 128/256)")
    ap.add_argument("--wire-table", action="store_true", help="the wire-resistance accuracy table")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for digital and analog alike, at most the start-up count "
                         "(default: torch's; 1 gives ratios that other jobs on the machine "
                         "distort least)")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads is not None:
        if args.threads < 1:
            ap.error(f"--threads must be >= 1, got {args.threads}")
        if args.threads < torch.get_num_threads():   # only lowered: see spicecross.threads
            torch.set_num_threads(args.threads)
    print(header("spicecross network inference" + (" — wire table" if args.wire_table else "")))
    print("command: " + " ".join(["python"] + sys.argv))
    (wire_table if args.wire_table else speed)(args)
    print(f"\nat end: {load_str()}")


if __name__ == "__main__":
    main()
