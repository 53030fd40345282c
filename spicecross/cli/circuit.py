"""``spicecross netlist``: emit a tile read as a netlist file; the tile options and helpers the
other tile commands share."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..circuit.tile import CELL_TYPES, DEFAULT_R_WIRE_OHM, SelectorSpec
from ..spice.solve import BACKENDS
from .args import existing_file, finite_float, integer, positive_int

SIMULATORS = tuple(b for b in BACKENDS if b != "auto")     # a netlist is for one simulator


def add_pulse_arguments(p: argparse.ArgumentParser, when: str) -> None:
    """The read-pulse options (``--pulse-v``, ``--pulse-ns``, ``--pulses``) of a command whose
    option ``when`` turns pulses on."""
    p.add_argument("--pulse-v", type=finite_float(0.0, lo_open=True), default=None, metavar="V",
                   help=f"{when}: amplitude of the largest input in each pulse "
                        "(default: the inputs as given)")
    p.add_argument("--pulse-ns", type=finite_float(0.0, lo_open=True), default=10.0, metavar="NS",
                   help=f"{when}: pulse width (ns, default 10)")
    p.add_argument("--pulses", type=integer(1, 100000), default=1, metavar="N",
                   help=f"{when}: number of read pulses (default 1)")


def pulse_amplitude_v(args: argparse.Namespace, v) -> float:
    """``--pulse-v``, or by default the largest input magnitude (V)."""
    return args.pulse_v if args.pulse_v is not None else float(max(abs(v).max(), 1e-12))


def add_tile_arguments(p: argparse.ArgumentParser, rows_required: bool = False) -> None:
    """The TileSpec options shared by every command that builds tiles."""
    number = finite_float()
    p.add_argument("--rows", type=positive_int, required=rows_required, help="word lines (inputs)")
    p.add_argument("--cols", type=positive_int, required=rows_required, help="bit lines (outputs)")
    p.add_argument("--cell", choices=CELL_TYPES, default="0t1r")
    p.add_argument("--r-wire", type=number, default=DEFAULT_R_WIRE_OHM, metavar="OHMS",
                   help=f"word- and bit-line segment resistance (Ω), default {DEFAULT_R_WIRE_OHM:g}")
    p.add_argument("--r-wire-wl", type=number, metavar="OHMS", help="word-line segment (Ω), overrides --r-wire")
    p.add_argument("--r-wire-bl", type=number, metavar="OHMS", help="bit-line segment (Ω), overrides --r-wire")
    p.add_argument("--r-driver", type=number, default=0.0, metavar="OHMS", help="input driver resistance (Ω)")
    p.add_argument("--r-sense", type=number, default=0.0, metavar="OHMS", help="sense resistance (Ω)")
    p.add_argument("--v-gate", type=number, default=SelectorSpec().v_gate_v, metavar="V",
                   help="1T1R selector gate voltage (V)")
    p.add_argument("--selector-w", type=number, default=SelectorSpec().w_m, metavar="M",
                   help="selector channel width (m)")


def tile_spec_from_args(args: argparse.Namespace, rows: int | None = None, cols: int | None = None):
    """The TileSpec the tile options describe (TileSpec checks the values)."""
    from ..circuit.tile import TileSpec

    rows = rows if rows is not None else args.rows
    cols = cols if cols is not None else args.cols
    if rows is None or cols is None:
        raise ValueError("give --rows and --cols (or --conductances G.npy)")
    sel = SelectorSpec(v_gate_v=args.v_gate, w_m=args.selector_w)
    return TileSpec(rows=rows, cols=cols, cell=args.cell,
                    r_wire_wl_ohm=args.r_wire if args.r_wire_wl is None else args.r_wire_wl,
                    r_wire_bl_ohm=args.r_wire if args.r_wire_bl is None else args.r_wire_bl,
                    r_driver_ohm=args.r_driver, r_sense_ohm=args.r_sense, selector=sel)


def load_array(path: str, what: str):
    """A float64 array from a .npy file; ValueError naming the file when it is not one."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} file not found: {p}")
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error
        raise ValueError(f"{what} file {p} is not a .npy array ({exc.__class__.__name__})") from exc
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{what} file {p} holds several arrays (.npz); give one .npy array")
    if np.iscomplexobj(arr):
        raise ValueError(f"{what} file {p} holds complex numbers; give real values")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{what} file {p} holds {arr.dtype} values, not numbers")
    arr = np.asarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} file {p} holds non-finite values "
                         f"({float(arr[~np.isfinite(arr)].ravel()[0])!r})")
    return arr


def random_tile(rows: int, cols: int, g_min_s: float, g_max_s: float, v_max_v: float, seed: int):
    """Uniform conductances in [g_min, g_max] S and inputs in [0, v_max] V."""
    import numpy as np

    if not 0 <= g_min_s <= g_max_s:
        raise ValueError(f"need 0 ≤ --g-min ≤ --g-max, got --g-min {g_min_s!r} --g-max {g_max_s!r}")
    if not 0 <= v_max_v:
        raise ValueError(f"--v-max must be ≥ 0 V, got {v_max_v!r}")
    rng = np.random.default_rng(seed)
    return rng.uniform(g_min_s, g_max_s, (rows, cols)), rng.uniform(0.0, v_max_v, rows)


def _cmd_netlist(args: argparse.Namespace) -> int:
    from ..spice.simulators import get_simulator
    from ..store import check_output_path, write_text_atomic

    if args.out:
        check_output_path(args.out, "--out")
    g = load_array(args.conductances, "--conductances") if args.conductances else None
    v = load_array(args.inputs, "--inputs") if args.inputs else None
    rows = args.rows if args.rows is not None else (g.shape[0] if g is not None and g.ndim == 2 else None)
    cols = args.cols if args.cols is not None else (g.shape[1] if g is not None and g.ndim == 2 else None)
    spec = tile_spec_from_args(args, rows, cols)
    if g is None or v is None:
        g_r, v_r = random_tile(spec.rows, spec.cols, args.g_min, args.g_max, args.v_max, args.seed)
        g = g_r if g is None else g
        v = v_r if v is None else v
    out = Path(args.out) if args.out else Path(f"tile_{spec.rows}x{spec.cols}_{spec.cell}"
                                                  f"{'.sim' if args.simulator == 'vacask' else '.cir'}")
    check_output_path(out, "--out")
    if args.devices == "vteam":
        _write_vteam_transient(args, out, spec, g, v)
    else:
        write_text_atomic(out, get_simulator(args.simulator).emit(spec, g, v))
    print(out)
    return 0


def _write_vteam_transient(args: argparse.Namespace, out: Path, spec, g, v) -> None:
    """The read-pulse transient of the tile with a VTEAM device in every cell; for VACASK the
    compiled Verilog-A module is copied beside the netlist so it runs by hand."""
    import shutil

    from ..spice.tile_transient import write_pulse_netlist

    write_pulse_netlist(out, spec, g, v, pulse_v=pulse_amplitude_v(args, v), width_s=args.pulse_ns * 1e-9,
                        n_pulses=args.pulses, simulator=args.simulator)
    if args.simulator == "vacask":
        from ..devices.verilog_a import compile_vteam_osdi

        shutil.copy(compile_vteam_osdi(), out.parent / "vteam.osdi")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("netlist", help="emit a tile read as an ngspice (.cir) or VACASK (.sim) netlist",
                       description="Emit one crossbar tile read. G in siemens (rows×cols .npy), "
                                   "V in volts (rows .npy); without them a random tile is drawn.")
    add_tile_arguments(p)
    p.add_argument("--conductances", type=existing_file, metavar="G.npy",
                   help="conductance map in S, shape (rows, cols)")
    p.add_argument("--inputs", type=existing_file, metavar="V.npy", help="input voltages in V, shape (rows,)")
    p.add_argument("--g-min", type=finite_float(0.0), default=1 / 2500, metavar="S",
                   help="random tiles: lowest G (S)")
    p.add_argument("--g-max", type=finite_float(0.0), default=1 / 100, metavar="S",
                   help="random tiles: highest G (S)")
    p.add_argument("--v-max", type=finite_float(0.0), default=0.2, metavar="V",
                   help="random tiles: highest input (V)")
    p.add_argument("--seed", type=integer(), default=0)
    p.add_argument("--simulator", choices=SIMULATORS, default="ngspice")
    p.add_argument("--devices", choices=("resistor", "vteam"), default="resistor",
                   help="cells as fixed resistors (a read, .op) or VTEAM devices in a read-pulse "
                        "transient (behavioural subcircuit in ngspice, Verilog-A in VACASK)")
    add_pulse_arguments(p, "--devices vteam")
    p.add_argument("--out", metavar="FILE", help="output netlist path")
    p.set_defaults(func=_cmd_netlist)
