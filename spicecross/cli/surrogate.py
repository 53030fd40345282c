"""``spicecross surrogate``: one batched surrogate read of a tile."""
from __future__ import annotations

import argparse
import json

from ..surrogate.modes import MODES
from .args import existing_file
from .circuit import (add_pulse_arguments, add_tile_arguments, load_array, pulse_amplitude_v,
                      tile_spec_from_args)


def _cmd_surrogate(args: argparse.Namespace) -> int:
    from ..surrogate.tile_model import TileSurrogate

    g = load_array(args.conductances, "--conductances")
    v = load_array(args.inputs, "--inputs")
    if g.ndim != 2:
        raise ValueError(f"--conductances must be a (rows, cols) array in S, got shape {g.shape}")
    g_sel = None
    if args.calibration:
        from ..calibration import load_calibration

        cal = load_calibration(args.calibration)
        g_sel = cal.g_sel_s
        if args.cell != cal.spec.cell:
            raise ValueError(f"--cell {args.cell} does not match the calibration's cell {cal.spec.cell}")
    spec = tile_spec_from_args(args, g.shape[0], g.shape[1])
    if args.mode == "dynamic":
        return _dynamic(args, spec, g, v)
    out = TileSurrogate(spec, g, args.mode, g_sel_s=g_sel).read(v)
    print(json.dumps({"sense_currents": out.tolist()}) if args.json
          else "\n".join(" ".join(f"{x:.6e}" for x in row) for row in out.reshape(-1, spec.cols)))
    return 0


def _dynamic(args: argparse.Namespace, spec, g, v) -> int:
    """Read pulses on a VTEAM tile (the dynamic surrogate): the same train as ``spicecross
    netlist --devices vteam --pulse-v V --pulse-ns T --pulses N`` emits for SPICE."""
    from ..spice.tile_transient import pulse_train_from_read
    from ..surrogate.dynamic import DynamicTileSurrogate

    if v.ndim != 1:
        raise ValueError(f"--mode dynamic reads one input vector (rows,), got shape {v.shape}")
    pulse_v = pulse_amplitude_v(args, v)
    train = pulse_train_from_read(v, pulse_v, args.pulse_ns * 1e-9, args.pulses)
    res = DynamicTileSurrogate(spec).run_pulses(g, train)
    out = {"states": res.w_final.tolist(), "conductances_s": res.g_final_s.tolist(),
           "sense_currents": res.currents_a.tolist(), "charges_c": res.charge_c.tolist(),
           "pulse_v": pulse_v, "pulse_ns": args.pulse_ns, "pulses": args.pulses}
    if args.json:
        print(json.dumps(out))
    else:
        print("\n".join(" ".join(f"{x:.6e}" for x in row) for row in res.currents_a))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("surrogate", help="read a tile with the surrogate (ideal|linear|polynomial|nonlinear|dynamic)",
                       description="Sense currents (A) of a tile with conductances G (S) for "
                                   "inputs V (V), shape (rows,) or (batch, rows).")
    add_tile_arguments(p)
    p.add_argument("--conductances", type=existing_file, required=True, metavar="G.npy")
    p.add_argument("--inputs", type=existing_file, required=True, metavar="V.npy")
    p.add_argument("--mode", choices=MODES + ("dynamic",), default="linear",
                   help="read model (default linear); dynamic: VTEAM devices under read pulses "
                        "(--pulse-v, --pulse-ns, --pulses), states and currents per pulse")
    add_pulse_arguments(p, "--mode dynamic")
    p.add_argument("--calibration", type=existing_file, metavar="FILE",
                   help="calibration HDF5 (fitted selector)")
    p.add_argument("--json", action="store_true", help='print {"sense_currents": [...]}')
    p.set_defaults(func=_cmd_surrogate)
