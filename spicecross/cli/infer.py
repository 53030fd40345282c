"""``spicecross infer``: one network on crossbars, accuracy beside the digital network.

Also the option set that builds an ``AnalogConfig`` (:func:`add_config_options`,
:func:`config_from_args`), shared with ``spicecross sweep``. Values are converted and
range-checked by the ``type=`` helpers (a bad value is one line naming it, ``bad --tile
'64y64': ...``); the rest is AnalogConfig's and NonIdealityConfig's own validation.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

from ..circuit.tile import CELL_TYPES, DEFAULT_R_WIRE_OHM
from ..nn.model_names import MODEL_NAMES
from ..spice.simulators import DEFAULT_CHECK_BACKEND, SIMULATOR_NAMES
from ..surrogate.modes import MODES, PROGRAM_METHODS, READ_SCHEMES
from .args import existing_file, finite_float, integer, positive_int, tile_size

_NONNEG = finite_float(0.0)
_POSITIVE = finite_float(0.0, lo_open=True)
_PROBABILITY = finite_float(0.0, 1.0)
_BITS = integer(1, 32, none_ok=True)


def add_config_options(p: argparse.ArgumentParser, compat_both: bool = False) -> None:
    """The options that build an AnalogConfig (defaults: the AnalogConfig defaults);
    ``compat_both`` lets ``--compat`` take ``both`` (sweeps run every point in each setting)."""
    p.add_argument("--model", default="mnist", choices=MODEL_NAMES, metavar="NAME",
                   help=f"network: {', '.join(MODEL_NAMES)} (default mnist)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="data root in torchvision layout (default $SPICECROSS_DATA; MNIST falls back "
                        "to the bundled 1000-image sample)")
    p.add_argument("--weights", type=existing_file, default=None, metavar="FILE",
                   help="checkpoint from `spicecross train` (required for cifar10/cifar100)")
    p.add_argument("--tile", type=tile_size, default="64x64", metavar="RxC",
                   help="tile rows x cols (default 64x64)")
    p.add_argument("--cell", default="0t1r", choices=CELL_TYPES, metavar="|".join(CELL_TYPES),
                   help="cell type (default 0t1r)")
    p.add_argument("--mode", default="polynomial", choices=MODES, metavar="|".join(MODES),
                   help="tile read model (default polynomial: exact wire IR drop; 1T1R cells "
                        "with their selector's I-V as a cubic in the read voltage)")
    p.add_argument("--r-wire", type=_NONNEG, default=None, metavar="OHMS",
                   help=f"wire segment resistance per cell (default {DEFAULT_R_WIRE_OHM:g} Ω; 0 = ideal wires)")
    p.add_argument("--adc-bits", type=_BITS, default="8", metavar="N", help="ADC bits, or 'none' (default 8)")
    p.add_argument("--dac-bits", type=_BITS, default="8", metavar="N", help="DAC bits, or 'none' (default 8)")
    p.add_argument("--v-read", type=_POSITIVE, default=None, metavar="VOLTS",
                   help="DAC full-scale read voltage on the word lines (default 0.4 × the device "
                        "set's switching threshold: 0.2 V for pt_hf_ti)")
    p.add_argument("--read-scheme", default="two-phase", choices=READ_SCHEMES,
                   metavar="|".join(READ_SCHEMES),
                   help="signed inputs: two reads of non-negative voltages, x+ then x- "
                        "(default), or one read with negative word-line voltages")
    p.add_argument("--miv", type=_POSITIVE, default="9", metavar="VOLTS",
                   help="the seed paper's max input voltage: MemTorch's input mapping scale, not "
                        "used by the physical read path (reads are at --v-read) (default 9)")
    compat = ("physical", "memtorch") + (("both",) if compat_both else ())
    p.add_argument("--compat", default="physical", choices=compat, metavar="|".join(compat),
                   help="physical: the read path a chip would use (default); memtorch: what "
                        "MemTorch 1.1.6 did (naive input scaling at --miv, tune_() fit, "
                        "per-vector ADC range, clip-only programming, its endurance split)"
                        + ("; both: every point in each setting" if compat_both else ""))
    p.add_argument("--recalibrate-after", type=_POSITIVE, default=None, metavar="S",
                   help="re-calibrate every layer's ADC range and gain every S seconds of "
                        "drift (physical path; default never)")
    p.add_argument("--adc-overflow", type=finite_float(0.0, 99.999), default=None, metavar="PCT",
                   help="percentage of calibration currents allowed to overflow the ADC (default 0)")
    p.add_argument("--states", type=integer(2, 1 << 20), default=None, metavar="N",
                   help="finite conductance states (default continuous)")
    p.add_argument("--sigma", type=_NONNEG, default=None, metavar="OHMS",
                   help="device-to-device σ of both R_on and R_off (Ω)")
    p.add_argument("--sigma-on", type=_NONNEG, default=None, metavar="OHMS", help="σ of R_on only (Ω)")
    p.add_argument("--sigma-off", type=_NONNEG, default=None, metavar="OHMS", help="σ of R_off only (Ω)")
    p.add_argument("--stuck-hrs", type=_PROBABILITY, default=None, metavar="P",
                   help="probability a device is stuck at HRS")
    p.add_argument("--stuck-lrs", type=_PROBABILITY, default=None, metavar="P",
                   help="probability a device is stuck at LRS")
    p.add_argument("--endurance-cycles", type=_NONNEG, default=None, metavar="N",
                   help="SET/RESET cycles endured")
    p.add_argument("--endurance-model", default=None, metavar="NAME",
                   help="lammie2021_gradual (default) or memtorch_tutorial_sudden")
    p.add_argument("--temperature", type=_POSITIVE, default=None, metavar="K",
                   help="operating temperature (K) of the endurance model")
    p.add_argument("--retention-s", type=_NONNEG, default=None, metavar="T", help="time since programming (s)")
    p.add_argument("--drift", type=_PROBABILITY, default=None, metavar="NU",
                   help="conductance drift coefficient ν (default 0.1)")
    p.add_argument("--device-set", default="pt_hf_ti", metavar="NAME", help="VTEAM parameter set (default pt_hf_ti)")
    p.add_argument("--g-sel", type=_POSITIVE, default=None, metavar="S",
                   help="1T1R selector conductance (S) for the linear mode")
    p.add_argument("--calibration", type=existing_file, default=None, metavar="FILE",
                   help="HDF5 from `spicecross calibrate`: use its fitted g_sel")
    comp = p.add_mutually_exclusive_group()
    comp.add_argument("--compensate", dest="compensate", action="store_true", default=None,
                      help="program conductances against the known wire network (IR-drop compensation)")
    comp.add_argument("--no-compensate", dest="compensate", action="store_false",
                      help="program the plain linear mapping (IR drop uncorrected)")
    p.add_argument("--selector-naive", action="store_true",
                   help="1T1R: map weights onto the device conductance, ignoring the selector (MemTorch's way)")
    p.add_argument("--calibration-images", type=positive_int, default=None, metavar="N",
                   help="images that set the DAC/ADC ranges (default 256; the nonlinear mode "
                        "reads every one of them through the slow per-tile solver)")
    p.add_argument("--seed", type=integer(0), default="0", metavar="S", help="random seed (default 0)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="evaluate only the first N test images")
    p.add_argument("--batch-size", type=positive_int, default="500", metavar="N",
                   help="images per batch (default 500)")
    p.add_argument("--spice-check", type=integer(0, 100000), default="32", metavar="K",
                   help="tile reads per analog layer solved in SPICE and compared with the "
                        "surrogate, for every answer (default 32; 0 turns the check off)")
    p.add_argument("--spice-backend", default=DEFAULT_CHECK_BACKEND, choices=SIMULATOR_NAMES,
                   help=f"simulator of the SPICE check (default {DEFAULT_CHECK_BACKEND})")


def config_from_args(args: argparse.Namespace):
    """The AnalogConfig the (already converted) options describe; the config classes check
    the combination."""
    from ..surrogate.config import AnalogConfig
    from ..surrogate.nonidealities import NonIdealityConfig

    rows, cols = args.tile
    kw: dict[str, Any] = dict(tile_rows=rows, tile_cols=cols, cell=args.cell, mode=args.mode,
                              device_set=args.device_set, adc_bits=args.adc_bits,
                              dac_bits=args.dac_bits, max_input_voltage_v=args.miv,
                              v_read_v=args.v_read, read_scheme=args.read_scheme,
                              conductance_states=args.states, seed=args.seed,
                              compat="physical" if args.compat == "both" else args.compat,
                              recalibrate_after_s=args.recalibrate_after)
    optional = {"r_wire_ohm": args.r_wire, "adc_overflow_pct": args.adc_overflow,
                "calibration_images": args.calibration_images}
    kw.update({k: v for k, v in optional.items() if v is not None})
    if args.compensate is not None:
        kw["ir_compensation"] = bool(args.compensate)
    if args.selector_naive:
        kw["selector_aware"] = False
        kw.setdefault("ir_compensation", False)
    if args.g_sel is not None:
        kw["g_sel_s"] = args.g_sel

    nid: dict[str, Any] = {}
    if args.sigma is not None:
        nid["sigma_r_on_ohm"] = nid["sigma_r_off_ohm"] = args.sigma
    optional = {"sigma_r_on_ohm": args.sigma_on, "sigma_r_off_ohm": args.sigma_off,
                "endurance_cycles": args.endurance_cycles, "retention_s": args.retention_s,
                "stuck_hrs_p": args.stuck_hrs, "stuck_lrs_p": args.stuck_lrs,
                "temperature_k": args.temperature, "drift_coefficient": args.drift,
                "endurance_model": args.endurance_model}
    nid.update({k: v for k, v in optional.items() if v is not None})
    config = AnalogConfig.build(**kw).with_(nonideal=NonIdealityConfig(**nid))
    if args.calibration is not None:
        from ..calibration.calibrate import apply_calibration, load_calibration
        try:
            config = apply_calibration(config, load_calibration(args.calibration),
                                       keep_g_sel=args.g_sel is not None)
        except ValueError as exc:
            raise ValueError(f"bad --calibration {args.calibration!r}: {exc}") from None
    return config


def _cmd_infer_spice_loop(args: argparse.Namespace) -> int:
    """``infer --spice-loop``: every read of the test images in SPICE (spicecross.cli.verify)."""
    from .verify import config_line, json_report, print_report, run_spice_loop_from_args

    res = run_spice_loop_from_args(args)
    if args.json:
        print(json.dumps({"accuracy": round(res["accuracy_spice"], 4),
                          "surrogate_accuracy": round(res["accuracy_surrogate"], 4),
                          "digital_accuracy": (None if res["accuracy_digital"] is None
                                               else round(res["accuracy_digital"], 4)),
                          "spice_loop": json_report(res)}))
    else:
        print_report(res, config_line(res))
    sys.stdout.flush()
    return 0


def _programming_request(args: argparse.Namespace, config) -> dict | None:
    """The keyword arguments of ``program_network`` for ``--program`` (None without it);
    combinations the programming model does not cover are refused in one line."""
    if args.program is None:
        return None
    if args.spice_loop:
        raise ValueError("--program cannot be combined with --spice-loop")
    if config.cell != "0t1r":
        raise ValueError(f"--program writes 0t1r tiles (V/3 in the dynamic surrogate); "
                         f"--cell {config.cell} is not supported")
    nid = config.nonideal
    if nid.sigma_r_on_ohm or nid.sigma_r_off_ohm or nid.stuck_hrs_p or nid.stuck_lrs_p:
        raise ValueError("--program replaces the programmed conductances; it cannot be "
                         "combined with --sigma/--sigma-on/--sigma-off/--stuck-hrs/--stuck-lrs")
    cells = args.tile[0] * args.tile[1]
    if args.program_cells > cells:
        raise ValueError(f"--program-cells {args.program_cells} exceeds the {cells} cells of a "
                         f"{args.tile[0]}x{args.tile[1]} tile")
    if not 0 < args.program_tolerance < 1:
        raise ValueError(f"--program-tolerance must be in (0, 1), got {args.program_tolerance!r}")
    from tqdm.auto import tqdm

    from ..spice.solve import default_cache_dir

    bar = tqdm(total=args.program_cells, desc=f"programming model ({args.program})",
               file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.n = done
        bar.refresh()

    return {"method": args.program, "cells": args.program_cells,
            "tolerance": args.program_tolerance, "cache_dir": default_cache_dir(),
            "progress": progress}


def _print_programming(p: dict) -> None:
    print(f"  programmed  {p['method']} ({p['scheme']}, model calibrated on "
          f"{p['calibration_cells']} cells of a {p['calibration_tile']} tile): "
          f"{p['written_cells']} cells written, conductance error rms "
          f"{100 * p['g_error_rms_of_range']:.3g} % / max {100 * p['g_error_max_of_range']:.3g} % "
          f"of the range, {p['pulses']} pulses, {p['programmed_time_s']:.3g} s of pulses")


def _check_read_disturb_options(args: argparse.Namespace) -> None:
    """--read-disturb's own options are refused without it (one line); with it, their
    defaults (100 ns pulses, chunks of 100 images) are filled in."""
    own = {"--read-pulse-ns": args.read_pulse_ns, "--disturb-chunk": args.disturb_chunk,
           "--plot": args.plot}
    if not args.read_disturb:
        given = [k for k, v in own.items() if v is not None]
        if given:
            raise ValueError(f"{given[0]} applies to --read-disturb only")
        return
    if args.spice_loop:
        raise ValueError("--read-disturb cannot be combined with --spice-loop")
    args.read_pulse_ns = 100.0 if args.read_pulse_ns is None else args.read_pulse_ns
    args.disturb_chunk = 100 if args.disturb_chunk is None else args.disturb_chunk


def _cmd_infer(args: argparse.Namespace) -> int:
    from ..nn.inference import infer

    _check_read_disturb_options(args)
    if args.spice_loop:
        return _cmd_infer_spice_loop(args)
    config = config_from_args(args)
    if args.read_disturb:
        from ..nn.read_disturb_report import cmd_read_disturb
        return cmd_read_disturb(args, config)
    msg = config.read_disturb_warning()
    if msg and config.mode == "nonlinear":
        print(f"spicecross infer: warning: {msg}", file=sys.stderr)
    programming = _programming_request(args, config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        res = infer(args.model, args.data, config, limit=args.limit, batch_size=args.batch_size,
                    weights=args.weights, spice_check_reads=args.spice_check,
                    spice_backend=args.spice_backend, programming=programming)
    for w in {str(w.message) for w in caught}:
        print(f"spicecross infer: warning: {w}", file=sys.stderr)
    check = res.get("spice_check")
    if args.json:
        print(json.dumps({"accuracy": round(res["accuracy"], 4),
                          "digital_accuracy": round(res["digital_accuracy"], 4),
                          "seconds": round(res["seconds"], 3), "images": res["images"],
                          "digital_seconds": round(res["digital_seconds"], 3),
                          "program_seconds": round(res["program_seconds"], 3),
                          "read_voltage_v": res["read_voltage_v"],
                          "read_scheme": res["read_scheme"], "compat": config.compat,
                          "recalibrate_after_s": config.recalibrate_after_s,
                          "peak_rss_mib": round(res["peak_rss_mib"], 1),
                          **({"spice_check": check} if check is not None else {}),
                          **({"programming": res["programming"]} if programming else {})}))
    else:
        print(f"{args.model}: {res['images']} images ({res['data']})")
        print(f"  digital     {res['digital_accuracy']:.2f} %  ({res['digital_seconds']:.2f} s)")
        print(f"  memristive  {res['accuracy']:.2f} %  ({res['seconds']:.2f} s inference, "
              f"{res['program_seconds']:.2f} s programming, {res['tiles']} arrays of "
              f"{config.tile_rows}x{config.tile_cols} {config.cell}, {config.mode} mode, "
              f"wires {config.r_wire_ohm:g} Ω, reads at {res['read_voltage_v']:g} V "
              f"{res['read_scheme']})")
        print(f"  peak memory {res['peak_rss_mib']:.0f} MiB RSS (this process, getrusage)")
        if config.compat != "physical" or config.recalibrate_after_s is not None:
            from ..nn.calibrator import last_recalibration_s
            t_last = last_recalibration_s(config)
            print(f"  compat {config.compat}" + (
                "" if config.recalibrate_after_s is None else
                f", drift re-calibration every {config.recalibrate_after_s:g} s (last at "
                + ("never" if t_last is None else f"{t_last:g} s") + ")"))
        if programming:
            _print_programming(res["programming"])
        if check is not None:
            print(f"  SPICE check {check['reads']} reads ({check['simulator']}): max error "
                  f"{check['max_err_lsb']:.3g} ADC steps, max relative {check['max_rel_err']:.3g}, "
                  f"{100 * check['share_within_1_lsb']:.2f} % of reads within 1 step")
            for p in check["per_layer"]:
                print(f"    {p['layer']:<16} {p['reads']:>4} reads  max {p['max_err_lsb']:.3g} "
                      f"steps  rms {p['rms_err_lsb']:.3g} steps  rel {p['max_rel_err']:.3g}")
    sys.stdout.flush()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "infer", help="run a CNN on memristive crossbar tiles; accuracy vs digital",
        description="Patch a trained CNN onto crossbar tiles (double column, DAC/ADC, wires, "
                    "non-idealities), calibrate the converters, and report accuracy beside the "
                    "digital network on the same test images.")
    add_config_options(p)
    p.add_argument("--json", action="store_true",
                   help='print {"accuracy", "digital_accuracy", "seconds", "images", '
                        '"peak_rss_mib", …} as JSON')
    from .verify import add_spice_loop_options

    p.add_argument("--spice-loop", action="store_true",
                   help="solve every array read of the test images in SPICE (--spice-backend, "
                        "VACASK by default), with the surrogate's calibration; per-image SPICE and "
                        "surrogate logits go to --spice-out (resumable); replaces --spice-check")
    add_spice_loop_options(p, "spice_loop.h5")
    p.add_argument("--program", default=None, choices=PROGRAM_METHODS,
                   metavar="|".join(PROGRAM_METHODS),
                   help="0T1R: program the arrays through the programming model (V/3 writes in "
                        "the dynamic surrogate, calibrated on the network's own tile) instead "
                        "of setting the target conductances exactly")
    p.add_argument("--program-cells", type=integer(1, 1 << 20), default="16", metavar="N",
                   help="cells written on the calibration tile of --program (default 16)")
    p.add_argument("--program-tolerance", type=finite_float(0.0, 1.0), default="0.02",
                   metavar="F", help="write-verify tolerance, fraction of the conductance range "
                                     "(default 0.02)")
    p.add_argument("--read-disturb", action="store_true",
                   help="stream the test images through VTEAM devices that every read moves "
                        "(exact cell voltages of the wire network; 0t1r); accuracy per chunk")
    p.add_argument("--read-pulse-ns", type=_POSITIVE, default=None, metavar="NS",
                   help="--read-disturb: width of every read pulse (ns, default 100)")
    p.add_argument("--disturb-chunk", type=positive_int, default=None, metavar="N",
                   help="--read-disturb: images inferred between device updates (default 100)")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="--read-disturb: write accuracy against images read as a PNG")
    p.set_defaults(func=_cmd_infer)
