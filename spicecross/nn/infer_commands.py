"""CLI ``spicecross infer``: one network on crossbars, accuracy beside the digital network.

Also the shared option set and parsing (:func:`add_config_options`, :func:`config_from_args`)
that ``spicecross sweep`` uses, so both commands build their ``AnalogConfig`` the same way.
Option values are taken as text and checked here, so a bad value gives a one-line error that
names it (``bad --tile '64y64': ...``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from typing import Any

from .models import MODEL_NAMES


def _int(args: argparse.Namespace, opt: str, lo: int | None = None, hi: int | None = None,
         none_ok: bool = False) -> int | None:
    text = getattr(args, opt.lstrip("-").replace("-", "_"))
    if text is None:
        return None
    if none_ok and str(text).lower() == "none":
        return None
    try:
        value = int(str(text))
    except ValueError:
        raise ValueError(f"bad {opt} {text!r}: expected an integer") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f"≥ {lo}"
        raise ValueError(f"bad {opt} {text!r}: must be in {rng}")
    return value


def _float(args: argparse.Namespace, opt: str, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False) -> float | None:
    text = getattr(args, opt.lstrip("-").replace("-", "_"))
    if text is None:
        return None
    try:
        value = float(str(text))
    except ValueError:
        raise ValueError(f"bad {opt} {text!r}: expected a number") from None
    if not math.isfinite(value):
        raise ValueError(f"bad {opt} {text!r}: must be finite")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise ValueError(f"bad {opt} {text!r}: must be {'>' if lo_open else '≥'} {lo:g}")
    if hi is not None and value > hi:
        raise ValueError(f"bad {opt} {text!r}: must be ≤ {hi:g}")
    return value


def add_config_options(p: argparse.ArgumentParser) -> None:
    """The options that build an AnalogConfig (defaults: the AnalogConfig defaults)."""
    from ..circuit.tile import DEFAULT_R_WIRE_OHM
    p.add_argument("--model", default="mnist", help=f"network: {', '.join(MODEL_NAMES)} (default mnist)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="data root in torchvision layout (default $SPICECROSS_DATA; MNIST falls back "
                        "to the bundled 1000-image sample)")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="checkpoint from `spicecross train` (required for cifar10/cifar100)")
    p.add_argument("--tile", default="64x64", metavar="RxC", help="tile rows x cols (default 64x64)")
    p.add_argument("--cell", default="0t1r", metavar="0t1r|1t1r", help="cell type (default 0t1r)")
    p.add_argument("--mode", default="linear", metavar="ideal|linear|nonlinear",
                   help="tile read model (default linear: exact wire IR drop)")
    p.add_argument("--r-wire", default=None, metavar="OHMS",
                   help=f"wire segment resistance per cell (default {DEFAULT_R_WIRE_OHM:g} Ω; 0 = ideal wires)")
    p.add_argument("--adc-bits", default="8", metavar="N", help="ADC bits, or 'none' (default 8)")
    p.add_argument("--dac-bits", default="8", metavar="N", help="DAC bits, or 'none' (default 8)")
    p.add_argument("--miv", default="9", metavar="VOLTS", help="max input (DAC full-scale) voltage (default 9)")
    p.add_argument("--adc-overflow", default=None, metavar="PCT",
                   help="percentage of calibration currents allowed to overflow the ADC (default 0)")
    p.add_argument("--states", default=None, metavar="N", help="finite conductance states (default continuous)")
    p.add_argument("--sigma", default=None, metavar="OHMS",
                   help="device-to-device σ of both R_on and R_off (Ω)")
    p.add_argument("--sigma-on", default=None, metavar="OHMS", help="σ of R_on only (Ω)")
    p.add_argument("--sigma-off", default=None, metavar="OHMS", help="σ of R_off only (Ω)")
    p.add_argument("--stuck-hrs", default=None, metavar="P", help="probability a device is stuck at HRS")
    p.add_argument("--stuck-lrs", default=None, metavar="P", help="probability a device is stuck at LRS")
    p.add_argument("--endurance-cycles", default=None, metavar="N", help="SET/RESET cycles endured")
    p.add_argument("--endurance-model", default=None, metavar="NAME",
                   help="lammie2021_gradual (default) or memtorch_tutorial_sudden")
    p.add_argument("--temperature", default=None, metavar="K", help="operating temperature (K) of the endurance model")
    p.add_argument("--retention-s", default=None, metavar="T", help="time since programming (s)")
    p.add_argument("--drift", default=None, metavar="NU", help="conductance drift coefficient ν (default 0.1)")
    p.add_argument("--device-set", default="pt_hf_ti", metavar="NAME", help="VTEAM parameter set (default pt_hf_ti)")
    p.add_argument("--g-sel", default=None, metavar="S", help="1T1R selector conductance (S) for the linear mode")
    p.add_argument("--calibration", default=None, metavar="FILE",
                   help="HDF5 from `spicecross calibrate`: use its fitted g_sel")
    comp = p.add_mutually_exclusive_group()
    comp.add_argument("--compensate", dest="compensate", action="store_true", default=None,
                      help="program conductances against the known wire network (IR-drop compensation)")
    comp.add_argument("--no-compensate", dest="compensate", action="store_false",
                      help="program the plain linear mapping (IR drop uncorrected)")
    p.add_argument("--selector-naive", action="store_true",
                   help="1T1R: map weights onto the device conductance, ignoring the selector (MemTorch's way)")
    p.add_argument("--calibration-images", default=None, metavar="N",
                   help="images that set the DAC/ADC ranges (default 256; the nonlinear mode "
                        "reads every one of them through the slow per-tile solver)")
    p.add_argument("--seed", default="0", metavar="S", help="random seed (default 0)")
    p.add_argument("--limit", default=None, metavar="N", help="evaluate only the first N test images")
    p.add_argument("--batch-size", default="500", metavar="N", help="images per batch (default 500)")


def config_from_args(args: argparse.Namespace):
    """Build and validate the AnalogConfig; ValueError naming the bad option otherwise."""
    from ..surrogate.nonidealities import ENDURANCE_MODELS, NonIdealityConfig
    from ..surrogate.config import AnalogConfig
    from .tiles import parse_tile

    if args.model not in MODEL_NAMES:
        raise ValueError(f"bad --model {args.model!r}: expected one of {', '.join(MODEL_NAMES)}")
    try:
        rows, cols = parse_tile(args.tile)
    except ValueError:
        raise ValueError(f"bad --tile {args.tile!r}: expected ROWSxCOLS with positive integers, "
                         "e.g. 64x64") from None
    if args.cell not in ("0t1r", "1t1r"):
        raise ValueError(f"bad --cell {args.cell!r}: expected 0t1r or 1t1r")
    if args.mode not in ("ideal", "linear", "nonlinear"):
        raise ValueError(f"bad --mode {args.mode!r}: expected ideal, linear or nonlinear")
    kw: dict[str, Any] = dict(tile_rows=rows, tile_cols=cols, cell=args.cell, mode=args.mode,
                              device_set=args.device_set)
    kw["adc_bits"] = _int(args, "--adc-bits", 1, 32, none_ok=True)
    kw["dac_bits"] = _int(args, "--dac-bits", 1, 32, none_ok=True)
    kw["max_input_voltage_v"] = _float(args, "--miv", 0.0, lo_open=True)
    for opt, name in (("--r-wire", "r_wire_ohm"),):
        v = _float(args, opt, 0.0)
        if v is not None:
            kw[name] = v
    v = _float(args, "--adc-overflow", 0.0, 99.999)
    if v is not None:
        kw["adc_overflow_pct"] = v
    kw["conductance_states"] = _int(args, "--states", 2, 1 << 20)
    kw["seed"] = _int(args, "--seed", 0)
    n_cal = _int(args, "--calibration-images", 1)
    if n_cal is not None:
        kw["calibration_images"] = n_cal
    if args.compensate is not None:
        kw["ir_compensation"] = bool(args.compensate)
    if args.selector_naive:
        kw["selector_aware"] = False
        kw.setdefault("ir_compensation", False)
    g_sel = _float(args, "--g-sel", 0.0, lo_open=True)
    if args.calibration is not None:
        from ..calibration import load_calibration
        cal = load_calibration(args.calibration)
        if cal.g_sel_s is None:
            raise ValueError(f"bad --calibration {args.calibration!r}: it holds no fitted g_sel "
                             "(a 0T1R calibration?)")
        g_sel = cal.g_sel_s if g_sel is None else g_sel
    if g_sel is not None:
        kw["g_sel_s"] = g_sel

    nid: dict[str, Any] = {}
    sigma = _float(args, "--sigma", 0.0)
    if sigma is not None:
        nid["sigma_r_on_ohm"] = nid["sigma_r_off_ohm"] = sigma
    for opt, name in (("--sigma-on", "sigma_r_on_ohm"), ("--sigma-off", "sigma_r_off_ohm"),
                      ("--endurance-cycles", "endurance_cycles"), ("--retention-s", "retention_s")):
        v = _float(args, opt, 0.0)
        if v is not None:
            nid[name] = v
    for opt, name in (("--stuck-hrs", "stuck_hrs_p"), ("--stuck-lrs", "stuck_lrs_p")):
        v = _float(args, opt, 0.0, 1.0)
        if v is not None:
            nid[name] = v
    v = _float(args, "--temperature", 0.0, lo_open=True)
    if v is not None:
        nid["temperature_k"] = v
    v = _float(args, "--drift", 0.0, 1.0)
    if v is not None:
        nid["drift_coefficient"] = v
    if args.endurance_model is not None:
        if args.endurance_model not in ENDURANCE_MODELS:
            raise ValueError(f"bad --endurance-model {args.endurance_model!r}: expected one of "
                             f"{', '.join(sorted(ENDURANCE_MODELS))}")
        nid["endurance_model"] = args.endurance_model
    if nid.get("stuck_hrs_p", 0.0) + nid.get("stuck_lrs_p", 0.0) > 1.0:
        raise ValueError(f"bad --stuck-hrs/--stuck-lrs {args.stuck_hrs}/{args.stuck_lrs}: "
                         "their sum must be ≤ 1")
    return AnalogConfig.build(**kw).with_(nonideal=NonIdealityConfig(**nid))


def limit_and_batch(args: argparse.Namespace) -> tuple[int | None, int]:
    return _int(args, "--limit", 1), _int(args, "--batch-size", 1)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "infer", help="run a CNN on memristive crossbar tiles; accuracy vs digital",
        description="Patch a trained CNN onto crossbar tiles (double column, DAC/ADC, wires, "
                    "non-idealities), calibrate the converters, and report accuracy beside the "
                    "digital network on the same test images.")
    add_config_options(p)
    p.add_argument("--json", action="store_true",
                   help='print {"accuracy", "digital_accuracy", "seconds", "images"} as JSON')
    p.set_defaults(func=_cmd_infer)


def _cmd_infer(args: argparse.Namespace) -> int:
    from .inference import infer

    config = config_from_args(args)
    limit, batch = limit_and_batch(args)
    msg = config.read_disturb_warning()
    if msg and config.mode == "nonlinear":
        print(f"spicecross infer: warning: {msg}", file=sys.stderr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        res = infer(args.model, args.data, config, limit=limit, batch_size=batch,
                    weights=args.weights)
    for w in {str(w.message) for w in caught}:
        print(f"spicecross infer: warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps({"accuracy": round(res["accuracy"], 4),
                          "digital_accuracy": round(res["digital_accuracy"], 4),
                          "seconds": round(res["seconds"], 3), "images": res["images"],
                          "program_seconds": round(res["program_seconds"], 3)}))
    else:
        print(f"{args.model}: {res['images']} images ({res['data']})")
        print(f"  digital     {res['digital_accuracy']:.2f} %  ({res['digital_seconds']:.2f} s)")
        print(f"  memristive  {res['accuracy']:.2f} %  ({res['seconds']:.2f} s inference, "
              f"{res['program_seconds']:.2f} s programming, {res['tiles']} arrays of "
              f"{config.tile_rows}x{config.tile_cols} {config.cell}, {config.mode} mode, "
              f"wires {config.r_wire_ohm:g} Ω)")
    sys.stdout.flush()
    return 0
