"""``spicecross calibrate``: fit and verify the surrogate against SPICE on random tiles."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..spice.cluster import PARALLEL_BACKENDS
from ..spice.solve import BACKENDS
from ..nn.model_names import MODEL_NAMES
from ..surrogate.modes import READ_SCHEMES
from .args import existing_file, finite_float, integer, positive_int, tile_size
from .circuit import add_tile_arguments, tile_spec_from_args


def _cmd_calibrate_from_model(args: argparse.Namespace) -> int:
    from ..calibration.calibrate import save_calibration
    from ..calibration.from_model import calibrate_from_model
    from ..surrogate.config import AnalogConfig

    _check_outputs(args)
    rows, cols = args.tile
    spec = tile_spec_from_args(args, rows=rows, cols=cols)
    config = AnalogConfig.build(tile=spec, v_read_v=args.v_read, read_scheme=args.read_scheme,
                                calibration_images=max(args.images, 1), seed=args.seed)
    backend = "vacask" if args.simulator == "auto" else args.simulator
    cal, report = calibrate_from_model(args.from_model, args.data, config,
                                       reads_per_layer=args.reads_per_layer, images=args.images,
                                       backend=backend, n_jobs=args.jobs,
                                       parallel_backend=args.backend, scheduler=args.scheduler,
                                       weights=args.weights, progress=not args.quiet)
    save_calibration(args.out, cal, {"held_out_max_err_lsb": [p["max_err_lsb"] for p in report["held_out"]]})
    summary = {**cal.summary(), **report, "file": str(args.out),
               "v_read_v": config.read_voltage_v, "read_scheme": config.read_scheme}
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"calibration of {args.from_model} on its own {spec.rows}x{spec.cols} {spec.cell} tiles "
          f"against {backend}: {report['reads']} sampled reads at up to {config.read_voltage_v:g} V "
          f"({config.read_scheme}), {report['seconds']:.1f} s")
    if cal.g_sel_s is not None:
        print(f"  fitted selector conductance g_sel = {cal.g_sel_s:.6g} S for the network "
              f"(level-1 beta·Vov = {spec.selector.g_on_s:.6g} S); per layer below")
    g_layers = report.get("g_sel_layers_s") or [None] * len(report["held_out"])
    print(f"  {'layer (held out)':<24}{'g_sel (S)':>11}{'rel. RMS':>10}{'rel. max':>10}"
          f"{'max ADC steps':>15}")
    for p, g in zip(report["held_out"], g_layers):
        print(f"  {p['layer'] + ' (by ' + p['held_out_by'] + ')':<24}"
              f"{'-' if g is None else format(g, '.5g'):>11}{100 * p['rel_rms']:>9.3g}%"
              f"{100 * p['rel_max']:>9.3g}%{p['max_err_lsb']:>15.3g}")
    print(f"  written: {args.out}  (use it with: spicecross infer --cell {spec.cell} "
          f"--tile {spec.rows}x{spec.cols} --calibration {args.out})")
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse unwritable --out / --plots before any SPICE run."""
    from ..store import check_output_dir, check_output_path

    check_output_path(args.out, "--out")
    if args.from_model is None:
        check_output_dir(args.plots, "--plots")


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from ..calibration.calibrate import calibrate
    from ..calibration.plots import ir_drop_map, parity_plot
    from ..devices.vteam import get_parameter_set

    if args.from_model is not None:
        return _cmd_calibrate_from_model(args)
    _check_outputs(args)
    if args.g_min is not None and args.g_max is not None and args.g_min > args.g_max:
        raise ValueError(f"--g-min {args.g_min!r} is above --g-max {args.g_max!r}")
    if args.v_read is None:
        args.v_read = 0.2
    spec = tile_spec_from_args(args)
    dev = get_parameter_set(spec.device_set)
    g_min = 1.0 / dev.r_off_ohm if args.g_min is None else args.g_min
    g_max = 1.0 / dev.r_on_ohm if args.g_max is None else args.g_max
    cal, arrays = calibrate(spec, n_tiles=args.tiles, reads_per_tile=args.reads, v_read_max_v=args.v_read,
                            g_off_s=g_min, g_on_s=g_max, seed=args.seed, backend=args.simulator,
                            n_jobs=args.jobs, parallel_backend=args.backend, scheduler=args.scheduler,
                            out=args.out, progress=not args.quiet)
    plots = Path(args.plots)
    plots.mkdir(parents=True, exist_ok=True)
    stem = f"calibration_{spec.rows}x{spec.cols}_{spec.cell}"
    pp = parity_plot(cal, arrays, plots / f"{stem}_parity.png")
    ir = ir_drop_map(cal, arrays, plots / f"{stem}_irdrop.png")
    summary = {**cal.summary(), "file": str(args.out), "plots": [str(pp), str(ir)],
               "simulator": cal.provenance["simulator_version"],
               "spice_seconds": round(cal.provenance["spice_seconds"], 3)}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"calibration of a {spec.rows}x{spec.cols} {spec.cell} tile against "
              f"{summary['simulator']} ({args.tiles} tiles × {args.reads} reads, held-out tiles: "
              f"{len(cal.provenance['held_out_tiles'])})")
        if cal.g_sel_s is not None:
            print(f"  fitted selector conductance g_sel = {cal.g_sel_s:.6g} S "
                  f"(level-1 beta·Vov = {spec.selector.g_on_s:.6g} S)")
        print(f"  {'mode':<22}{'rel. RMS':>12}{'rel. max':>12}")
        for m, e in cal.errors.items():
            print(f"  {m:<22}{100 * e['rel_rms']:>11.4g}%{100 * e['rel_max']:>11.4g}%")
        print(f"  best mode: {cal.best_mode}; ideal is off by {100 * cal.errors['ideal']['rel_rms']:.3g} % RMS")
        print(f"  written: {args.out}, {pp}, {ir}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit the surrogate against SPICE and report held-out errors",
                       description="Draw random tiles and reads, solve them in SPICE (parallel, "
                                   "cached), fit the surrogate, report held-out errors per mode.")
    add_tile_arguments(p)
    p.add_argument("--from-model", choices=MODEL_NAMES, default=None, metavar="NAME",
                   help="draw the calibration set from this network patched onto tiles: its "
                        "programmed arrays and the inputs calibration images put on them "
                        "(instead of random tiles; --rows/--cols not used, see --tile)")
    p.add_argument("--tile", type=tile_size, default="64x64", metavar="RxC",
                   help="with --from-model: tile rows x cols (default 64x64)")
    p.add_argument("--read-scheme", choices=READ_SCHEMES, default="two-phase",
                   help="with --from-model: how signed inputs are read (default two-phase)")
    p.add_argument("--reads-per-layer", type=positive_int, default=64, metavar="K",
                   help="with --from-model: sampled tile reads per layer (default 64)")
    p.add_argument("--images", type=positive_int, default=64, metavar="N",
                   help="with --from-model: calibration images the reads are drawn from (default 64)")
    p.add_argument("--data", default=None, metavar="DIR", help="with --from-model: data root")
    p.add_argument("--weights", type=existing_file, default=None, metavar="FILE",
                   help="with --from-model: checkpoint (required for cifar10/cifar100)")
    p.add_argument("--tiles", type=positive_int, default=12, help="random tiles (about a third held out)")
    p.add_argument("--reads", type=positive_int, default=8, help="input vectors per tile")
    p.add_argument("--v-read", type=finite_float(0.0, lo_open=True), default=None, metavar="V",
                   help="highest read voltage (V); default 0.2, with --from-model the network's "
                        "full-scale read voltage (0.4 × the switching threshold)")
    p.add_argument("--g-min", type=finite_float(0.0, lo_open=True), default=None, metavar="S",
                   help="lowest conductance (S), default 1/R_off of the device set (pt_hf_ti: 1/2500)")
    p.add_argument("--g-max", type=finite_float(0.0, lo_open=True), default=None, metavar="S",
                   help="highest conductance (S), default 1/R_on of the device set (pt_hf_ti: 1/100)")
    p.add_argument("--seed", type=integer(), default=0)
    p.add_argument("--simulator", choices=BACKENDS, default="auto")
    p.add_argument("--jobs", type=integer(1, 1024), default=None, help="parallel workers (default: cores)")
    p.add_argument("--backend", choices=PARALLEL_BACKENDS, default="loky", help="joblib backend")
    p.add_argument("--scheduler", metavar="ADDRESS", help="running dask scheduler (or ray address)")
    p.add_argument("--out", default="calibration.h5", metavar="FILE")
    p.add_argument("--plots", default=".", metavar="DIR", help="where the PNGs go")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_calibrate)
