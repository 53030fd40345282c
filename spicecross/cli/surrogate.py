"""``spicecross surrogate``: one batched surrogate read of a tile."""
from __future__ import annotations

import argparse
import json

from ..surrogate.modes import MODES
from .args import existing_file
from .circuit import add_tile_arguments, load_array, tile_spec_from_args


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
    out = TileSurrogate(spec, g, args.mode, g_sel_s=g_sel).read(v)
    print(json.dumps({"sense_currents": out.tolist()}) if args.json
          else "\n".join(" ".join(f"{x:.6e}" for x in row) for row in out.reshape(-1, spec.cols)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("surrogate", help="read a tile with the surrogate (ideal|linear|nonlinear)",
                       description="Sense currents (A) of a tile with conductances G (S) for "
                                   "inputs V (V), shape (rows,) or (batch, rows).")
    add_tile_arguments(p)
    p.add_argument("--conductances", type=existing_file, required=True, metavar="G.npy")
    p.add_argument("--inputs", type=existing_file, required=True, metavar="V.npy")
    p.add_argument("--mode", choices=MODES, default="linear")
    p.add_argument("--calibration", type=existing_file, metavar="FILE",
                   help="calibration HDF5 (fitted selector)")
    p.add_argument("--json", action="store_true", help='print {"sense_currents": [...]}')
    p.set_defaults(func=_cmd_surrogate)
