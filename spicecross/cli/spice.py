"""``spicecross solve``: solve netlist files with ngspice (.cir) or VACASK (.sim)."""
from __future__ import annotations

import argparse
import sys

from .args import integer


def _import_output() -> None:
    """What the output needs, imported while the simulator runs (not before it starts)."""
    import json  # noqa: F401


def _cmd_solve(args: argparse.Namespace) -> int:
    from ..spice.executables import SimulatorMissing
    from ..spice.solve_netlist import default_cache_dir, solve_files

    if args.out:   # numpy and h5py only when HDF5 is written: a plain solve starts without them
        import numpy as np

        from ..store import atomic_h5, check_output_path, provenance, write_group

        check_output_path(args.out, "--out")
    try:
        results = solve_files(args.paths, n_jobs=args.jobs, trust=args.trust_netlist,
                              cache_dir=None if args.no_cache else default_cache_dir(),
                              while_running=_import_output)
    except SimulatorMissing as exc:
        raise ValueError(str(exc)) from exc
    failures = [r for r in results if not r.ok]
    if args.out:
        with atomic_h5(args.out) as f:
            f.attrs.update({k: str(v) for k, v in provenance(command="solve").items()})
            for k, r in enumerate(results):
                write_group(f, f"read{k:05d}", {
                    "sense_currents_a": r.sense_currents_a,
                    "node_names": np.array(list(r.node_voltages_v), dtype=str),
                    "node_voltages_v": np.array(list(r.node_voltages_v.values()), dtype=np.float64),
                }, {"file": r.label, "ok": r.ok, "error": r.error, "simulator": r.simulator,
                    "simulator_version": r.simulator_version, "netlist_hash": r.netlist_hash})
    if args.json:
        import json

        payload = [r.to_json() for r in results]
        print(json.dumps(payload[0] if len(payload) == 1 else payload))
    else:
        for r in results:
            state = "ok" if r.ok else f"FAILED: {r.error}"
            src = "cache" if r.cached else f"{r.seconds:.3f} s"
            print(f"{r.label}: {r.simulator} ({src}) {state}")
            if r.ok:
                print("  sense currents (A): " + " ".join(f"{x:.6e}" for x in r.sense_currents))
    for r in failures:
        print(f"spicecross solve: {r.label}: {r.error}", file=sys.stderr)
    if failures:
        print(f"spicecross solve: {len(failures)} of {len(results)} netlist(s) failed",
              file=sys.stderr)
    return 1 if failures else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("solve", help="solve netlists (.cir with ngspice, .sim with VACASK)",
                       description="Solve netlist files in parallel with a content-hash cache. "
                                   "Netlists that run commands (.control, shell, postprocess, "
                                   ".include) are refused unless --trust-netlist is given.",
                       epilog="Exit status: 0 all solved; 1 some failed (their count is "
                              "printed); 2 usage error (bad option, unreadable or untrusted "
                              "netlist, unwritable --out).")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--out", metavar="results.h5", help="write currents, node voltages and provenance")
    p.add_argument("--json", action="store_true", help='print {"sense_currents": [...]} (A) per file')
    p.add_argument("--jobs", type=integer(1, 1024), default=None, help="parallel workers (default: cores)")
    p.add_argument("--no-cache", action="store_true", help="always run the simulator")
    p.add_argument("--trust-netlist", action="store_true",
                   help="run netlists with control/postprocess blocks, shell commands or "
                        "includes (only for files you trust: they can run any command)")
    p.set_defaults(func=_cmd_solve)
