"""``spicecross device iv``: drive one VTEAM device with a sine in the three forms (numpy
reference, ngspice behavioural subcircuit, Verilog-A in VACASK), plot the I–V loops and print how
far each SPICE form is from the reference."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from .vteam import PARAMETER_SETS, SineDrive, VTEAMParams, full_switching_frequency_hz, \
    get_parameter_set, simulate_sine

FORMS = ("reference", "ngspice", "vacask")


def _parse_forms(text: str) -> list[str]:
    forms = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in forms if f not in FORMS]
    if bad or not forms:
        raise ValueError(f"--forms: unknown form(s) {', '.join(bad) or '(none)'}; "
                         f"choose from {','.join(FORMS)}")
    return list(dict.fromkeys(forms))


def _parse_x0(text: str, params: VTEAMParams) -> float:
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


def rms_difference_pct(t_ref: np.ndarray, i_ref: np.ndarray, t: np.ndarray, i: np.ndarray) -> float:
    """RMS of (i − i_ref) on the reference grid (i interpolated linearly), in % of the peak
    |i_ref|."""
    peak = float(np.max(np.abs(i_ref)))
    diff = np.interp(t_ref, t, i) - i_ref
    return float(np.sqrt(np.mean(diff ** 2)) / peak * 100.0) if peak > 0 else float("nan")


def run_forms(params: VTEAMParams, drive: SineDrive, t_stop_s: float, x0_m: float,
              forms: list[str], points_per_cycle: int = 4000) -> dict[str, tuple]:
    """``{form: (t, v, i, x)}`` for the requested forms (the reference is always computed)."""
    from .behavioural import run_ngspice_transient
    from .verilog_a import run_vacask_transient

    n_points = int(round(t_stop_s * drive.frequency_hz * points_per_cycle)) + 1
    out = {"reference": simulate_sine(params, drive, t_stop_s, x0_m, n_points=max(n_points, 201))}
    if "ngspice" in forms:
        out["ngspice"] = run_ngspice_transient(params, t_stop_s, drive, x0_m)
    if "vacask" in forms:
        out["vacask"] = run_vacask_transient(params, t_stop_s, drive, x0_m)
    return out


def _si(value: float) -> str:
    """1.71e6 -> '1.71 M'."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}"
    return f"{value:.3g} "


def plot_iv(results: dict[str, tuple], params: VTEAMParams, set_name: str, drive: SineDrive,
            out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"reference": dict(color="k", lw=2.4, ls="-", alpha=0.45),
              "ngspice": dict(color="tab:blue", lw=1.2, ls="--"),
              "vacask": dict(color="tab:red", lw=1.0, ls=":")}
    fig, (ax_iv, ax_x) = plt.subplots(1, 2, figsize=(11, 4.3))
    for form, (t, v, i, x) in results.items():
        label = "numpy reference" if form == "reference" else \
            ("ngspice behavioural" if form == "ngspice" else "Verilog-A (VACASK)")
        ax_iv.plot(v, i * 1e3, label=label, **styles[form])
        ax_x.plot(t * drive.frequency_hz, (x - params.x_on_m) / params.x_span_m, label=label,
                  **styles[form])
    ax_iv.set_xlabel("voltage (V)")
    ax_iv.set_ylabel("current (mA)")
    ax_iv.axhline(0, color="0.7", lw=0.6)
    ax_iv.axvline(0, color="0.7", lw=0.6)
    ax_iv.set_title(f"VTEAM '{set_name}': {drive.amplitude_v:g} V, {_si(drive.frequency_hz)}Hz sine")
    ax_iv.legend(loc="upper left", fontsize=8)
    ax_x.set_xlabel("time (drive periods)")
    ax_x.set_ylabel("state (x − x_on)/(x_off − x_on)")
    ax_x.set_ylim(-0.05, 1.05)
    ax_x.set_title("state: 0 = ON (r_on), 1 = OFF (r_off)")
    for ax in (ax_iv, ax_x):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _cmd_iv(args: argparse.Namespace) -> int:
    params = get_parameter_set(args.set)
    forms = _parse_forms(args.forms)
    if not (math.isfinite(args.amplitude) and args.amplitude > 0):
        raise ValueError(f"--amplitude must be > 0 V, got {args.amplitude!r}")
    if args.frequency is None:
        frequency = full_switching_frequency_hz(params, args.amplitude)
    else:
        frequency = args.frequency
        if not (math.isfinite(frequency) and frequency > 0):
            raise ValueError(f"--frequency must be > 0 Hz, got {frequency!r}")
    if not (math.isfinite(args.cycles) and args.cycles > 0):
        raise ValueError(f"--cycles must be > 0, got {args.cycles!r}")
    if args.points_per_cycle < 50:
        raise ValueError(f"--points-per-cycle must be ≥ 50, got {args.points_per_cycle}")
    x0 = _parse_x0(args.x0, params)
    drive = SineDrive(args.amplitude, frequency)
    t_stop = args.cycles / frequency
    results = run_forms(params, drive, t_stop, x0, forms, args.points_per_cycle)
    t_ref, _, i_ref, x_ref = results["reference"]
    shown = {f: results[f] for f in FORMS if f in results and (f in forms or f == "reference")}
    out = Path(args.out)
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
    iv.add_argument("--set", default="pt_hf_ti", choices=sorted(PARAMETER_SETS),
                    help="VTEAM parameter set (default pt_hf_ti)")
    iv.add_argument("--amplitude", type=float, default=1.0, metavar="V",
                    help="sine amplitude (V), default 1")
    iv.add_argument("--frequency", type=float, default=None, metavar="HZ",
                    help="sine frequency (Hz); default: the highest at which every half cycle "
                         "switches the device fully (0.59 Hz for pt_hf_ti at 1 V, whose OFF "
                         "switching takes ~0.5 s; at 1 kHz it only switches ON)")
    iv.add_argument("--cycles", type=float, default=2.0, help="drive periods (default 2)")
    iv.add_argument("--x0", default="off",
                    help="initial state: 'on' (x_on, r_on), 'off' (x_off, r_off; default) or "
                         "a value in metres")
    iv.add_argument("--forms", default=",".join(FORMS),
                    help=f"comma-separated subset of {','.join(FORMS)} (default all)")
    iv.add_argument("--points-per-cycle", type=int, default=4000,
                    help="reference output grid points per period (default 4000)")
    iv.add_argument("--out", default="iv.png", help="PNG to write (default iv.png)")
    iv.set_defaults(func=_cmd_iv)
