"""``spicecross device iv``: drive one VTEAM device with a sine in the three forms (numpy
reference, ngspice behavioural subcircuit, Verilog-A in VACASK), plot the I–V loops and print how
far each SPICE form is from the reference (library: :mod:`spicecross.devices.iv`)."""
from __future__ import annotations

import argparse
import json
from ..devices.iv import FORMS
from ..devices.vteam import PARAMETER_SETS
from .args import comma_list, finite_float, integer


def _parse_x0(text: str, params) -> float:
    key = text.strip().lower()
    if key == "on":
        return params.x_on_m
    if key == "off":
        return params.x_off_m
    try:
        x0 = float(key)
    except ValueError:
        raise ValueError(f"--x0 must be 'on', 'off' or a state in metres, got {text!r}") from None
    if not params.x_on_m <= x0 <= params.x_off_m:
        raise ValueError(f"--x0 {x0!r} m lies outside [x_on, x_off] = "
                         f"[{params.x_on_m:g}, {params.x_off_m:g}] m")
    return x0


def _cmd_iv(args: argparse.Namespace) -> int:
    import numpy as np

    from ..devices.iv import check_iv_size, plot_iv, rms_difference_pct, run_forms
    from ..devices.vteam import get_parameter_set
    from ..devices.vteam_reference import SineDrive, full_switching_frequency_hz
    from ..store import check_output_path

    out = check_output_path(args.out, "--out")
    check_iv_size(args.cycles, args.points_per_cycle, args.forms)
    params = get_parameter_set(args.set)
    forms = args.forms
    frequency = (full_switching_frequency_hz(params, args.amplitude) if args.frequency is None
                 else args.frequency)
    x0 = _parse_x0(args.x0, params)
    drive = SineDrive(args.amplitude, frequency)
    t_stop = args.cycles / frequency
    results = run_forms(params, drive, t_stop, x0, forms, args.points_per_cycle)
    t_ref, _, i_ref, x_ref = results["reference"]
    shown = {f: results[f] for f in FORMS if f in results and (f in forms or f == "reference")}
    plot_iv(shown, params, args.set, drive, out)
    summary = {
        "set": args.set, "amplitude_v": drive.amplitude_v, "frequency_hz": drive.frequency_hz,
        "cycles": args.cycles, "x0_m": x0, "peak_current_a": float(np.max(np.abs(i_ref))),
        "state_range_visited": float((x_ref.max() - x_ref.min()) / params.x_span_m),
        "rms_diff_pct_of_peak": {f: round(rms_difference_pct(t_ref, i_ref, results[f][0],
                                                             results[f][2]), 5)
                                 for f in forms if f != "reference"},
        "out": str(out), "source": params.source,
    }
    print(json.dumps(summary))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    dev = sub.add_parser("device", help="memristor device models (VTEAM) in three forms",
                         description=__doc__.splitlines()[0])
    dsub = dev.add_subparsers(dest="device_command", metavar="<device command>")
    dsub.required = True
    iv = dsub.add_parser(
        "iv", help="sine-drive I–V loops of the reference, ngspice and Verilog-A forms",
        description="Drive one VTEAM device with v(t) = A sin(2π f t) in each form, plot the "
                    "I–V loops and the state to a PNG, print a one-line JSON summary with each "
                    "SPICE form's RMS current difference from the reference (% of peak).")
    positive = finite_float(0.0, lo_open=True)
    iv.add_argument("--set", default="pt_hf_ti", choices=sorted(PARAMETER_SETS),
                    help="VTEAM parameter set (default pt_hf_ti)")
    iv.add_argument("--amplitude", type=positive, default=1.0, metavar="V",
                    help="sine amplitude (V), default 1")
    iv.add_argument("--frequency", type=positive, default=None, metavar="HZ",
                    help="sine frequency (Hz); default: the highest at which every half cycle "
                         "switches the device fully (0.59 Hz for pt_hf_ti at 1 V, whose OFF "
                         "switching takes ~0.5 s; at 1 kHz it only switches ON)")
    iv.add_argument("--cycles", type=positive, default=2.0, help="drive periods (default 2)")
    iv.add_argument("--x0", default="off",
                    help="initial state: 'on' (x_on, r_on), 'off' (x_off, r_off; default) or "
                         "a value in metres")
    iv.add_argument("--forms", type=comma_list(FORMS, "form"), default=",".join(FORMS),
                    help=f"comma-separated subset of {','.join(FORMS)} (default all)")
    iv.add_argument("--points-per-cycle", type=integer(50, 1_000_000), default=4000,
                    help="reference output grid points per period (default 4000)")
    iv.add_argument("--out", default="iv.png", help="PNG to write (default iv.png)")
    iv.set_defaults(func=_cmd_iv)
