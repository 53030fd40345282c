"""``spicecross program``: write-verify a VTEAM tile to target conductances with a half-select
(V/2, V/3, 0T1R) or gate-selected (1T1R) write scheme, in the dynamic surrogate, ngspice or
VACASK; JSON with the final ``"states"`` (rows × cols), conductance errors, disturb, pulses and
programmed time."""
from __future__ import annotations

import argparse
import json
import sys

from ..devices.vteam import PARAMETER_SETS
from ..spice.programming import BACKENDS, SCHEMES
from .args import existing_file, finite_float, integer
from .circuit import add_tile_arguments, load_array, tile_spec_from_args

CELL_SETS = ("all", "diagonal", "checkerboard")


def targeted_cells(rows: int, cols: int, which: str):
    """Boolean (rows, cols) mask of the cells ``which`` names (all|diagonal|checkerboard)."""
    import numpy as np

    i, j = np.indices((rows, cols))
    return {"all": np.ones((rows, cols), bool), "diagonal": i == j,
            "checkerboard": (i + j) % 2 == 0}[which]


def random_targets(p, rows: int, cols: int, seed: int):
    """Targets (S) at states drawn uniformly from [0.1, 0.9] of the range (both polarities
    needed from a random start), and initial states uniform in [0.2, 0.8], seeded."""
    import numpy as np

    from ..devices.vteam import conductance_at_state_s

    rng = np.random.default_rng(seed)
    w_t = rng.uniform(0.1, 0.9, (rows, cols))
    w0 = rng.uniform(0.2, 0.8, (rows, cols))
    return conductance_at_state_s(p, w_t), w0


def _cmd_program(args: argparse.Namespace) -> int:
    import numpy as np

    from ..devices.vteam import get_parameter_set
    from ..spice.programming import program_tile
    from ..spice.solve import default_cache_dir
    from ..store import check_output_path, write_text_atomic

    if args.out:
        check_output_path(args.out, "--out")
    if args.plot:
        check_output_path(args.plot, "--plot")
    spec = tile_spec_from_args(args).with_(device_set=args.device_set)
    p = get_parameter_set(spec.device_set)
    targets, w0 = random_targets(p, spec.rows, spec.cols, args.seed)
    if args.targets:
        targets = load_array(args.targets, "--targets")
        if targets.shape != (spec.rows, spec.cols):
            raise ValueError(f"--targets {args.targets} has shape {targets.shape}, the tile "
                             f"({spec.rows}, {spec.cols})")
    if args.initial_w is not None:
        w0 = np.full((spec.rows, spec.cols), args.initial_w)
    targets = np.where(targeted_cells(spec.rows, spec.cols, args.cells), targets, np.nan)

    def progress(done: int, total: int) -> None:
        print(f"\rprogrammed {done}/{total} cells", end="\n" if done == total else "",
              file=sys.stderr, flush=True)

    res = program_tile(spec, targets, scheme=args.scheme, backend=args.backend, w_initial=w0,
                       tolerance=args.tolerance, max_pulses=args.max_pulses,
                       v_set_v=args.v_set, v_reset_v=args.v_reset, v_read_v=args.v_read,
                       v_gate_v=args.v_gate_write,
                       cache_dir=None if args.no_cache else default_cache_dir(),
                       c2c_sigma=args.c2c_sigma, seed=args.seed,
                       progress=None if args.quiet else progress)
    out = {"rows": spec.rows, "cols": spec.cols, "cell": spec.cell, "device_set": spec.device_set,
           "cells": args.cells, "seed": args.seed, "c2c_sigma": args.c2c_sigma,
           **res.to_json()}
    if args.plot:
        from ..spice.programming_plot import write_verify_figure

        write_verify_figure(res, args.plot, f"write-verify of a {spec.rows}×{spec.cols} "
                                            f"{spec.cell} {spec.device_set} tile")
        out["plot"] = str(args.plot)
    text = json.dumps(out, indent=1) + "\n"
    if args.out:
        write_text_atomic(args.out, text)
        print(f"written: {args.out}  (max |error| {out['max_abs_error_rel_range']:.3g} of the "
              f"range, {out['total_pulses']} pulses, {out['total_time_s']:.3g} s programmed)")
    else:
        print(text, end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("program", help="write-verify a VTEAM tile (V/2, V/3 or gate scheme)",
                       description=__doc__.split("\n\n")[0].replace("\n", " "))
    add_tile_arguments(p, rows_required=True)
    p.add_argument("--device-set", choices=sorted(PARAMETER_SETS), default="pt_hf_ti",
                   help="VTEAM parameter set")
    p.add_argument("--scheme", choices=SCHEMES, required=True,
                   help="v2, v3 (0t1r half-select) or gate (1t1r)")
    p.add_argument("--backend", choices=BACKENDS, default="surrogate")
    p.add_argument("--targets", type=existing_file, metavar="G.npy",
                   help="target conductances (S), shape (rows, cols), within [1/r_off, 1/r_on] "
                        "(default: random, seeded)")
    p.add_argument("--cells", choices=CELL_SETS, default="all",
                   help="which cells to program; the others are never targeted (their state "
                        "change is pure disturb)")
    p.add_argument("--initial-w", type=finite_float(0.0, 1.0), metavar="W",
                   help="initial normalised state of every cell (default: random in [0.2, 0.8])")
    p.add_argument("--seed", type=integer(0), default=0, help="targets, initial states, c2c")
    p.add_argument("--tolerance", type=finite_float(0.0, 1.0, lo_open=True), default=0.01,
                   help="allowed |G - G_target| as a fraction of 1/r_on - 1/r_off")
    p.add_argument("--max-pulses", type=integer(1, 10000), default=10,
                   help="pulse budget per cell")
    p.add_argument("--v-set", type=finite_float(hi=0.0), default=-1.4, metavar="V",
                   help="SET pulse amplitude (V, < 0)")
    p.add_argument("--v-reset", type=finite_float(lo=0.0, lo_open=True), default=1.4,
                   metavar="V", help="RESET pulse amplitude (V, > 0)")
    p.add_argument("--v-read", type=finite_float(), default=0.2, metavar="V",
                   help="verify-read voltage (V, below both thresholds)")
    p.add_argument("--v-gate-write", type=finite_float(), metavar="V",
                   help="gate scheme: the selected row's gate voltage during writes (V; "
                        "default --v-gate, the read gate voltage)")
    p.add_argument("--c2c-sigma", type=finite_float(0.0), default=0.0,
                   help="cycle-to-cycle variability: relative spread of every pulse's state "
                        "change (surrogate only)")
    p.add_argument("--no-cache", action="store_true", help="do not use the SPICE solve cache")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--out", metavar="FILE.json", help="write the JSON atomically here")
    p.add_argument("--plot", metavar="FILE.png",
                   help="the error histogram and the disturb map as a PNG")
    p.set_defaults(func=_cmd_program)
