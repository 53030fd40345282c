"""``spicecross sweep <preset>``: the seed paper's experiments, resumable, HDF5 + PNG."""
from __future__ import annotations

import argparse
import json
import sys

from ..experiments.presets import PRESET_NAMES
from .infer import add_config_options


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ..experiments.sweeps import PRESETS, run_sweep
    from ..store import check_output_path
    from .infer import config_from_args

    check_output_path(args.out, "--out")
    if args.plot:
        check_output_path(args.plot, "--plot")

    if args.preset not in PRESETS:
        raise ValueError(f"bad sweep {args.preset!r}: expected one of {', '.join(PRESETS)}")
    base = config_from_args(args)
    res = run_sweep(args.preset, args.model, args.data, base, args.out, limit=args.limit,
                    batch_size=args.batch_size, weights=args.weights, plot=args.plot,
                    progress=not args.quiet, spice_check_reads=args.spice_check,
                    spice_backend=args.spice_backend,
                    compat_modes=("physical", "memtorch") if args.compat == "both" else None)
    from ..nn.inference import peak_rss_mib

    print(json.dumps({"preset": args.preset, "out": str(args.out), "plot": args.plot,
                      "computed": len(res["computed"]), "skipped": len(res["skipped"]),
                      "results": {k: round(v, 4) for k, v in res["results"].items()},
                      "peak_rss_mib": round(peak_rss_mib(), 1)}))
    sys.stdout.flush()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="run one of the seed paper's experiments (resumable; HDF5 + PNG)",
        description="Run a sweep preset point by point; every finished point is written to the "
                    "HDF5 file at once (atomically), and rerunning the same command resumes "
                    "without redoing finished points. Other options set the base configuration "
                    "the sweep varies.")
    p.add_argument("preset", metavar="PRESET", help=f"one of: {', '.join(PRESET_NAMES)}")
    add_config_options(p, compat_both=True)
    p.add_argument("--out", required=True, metavar="FILE", help="HDF5 results file (created or resumed)")
    p.add_argument("--plot", default=None, metavar="PNG", help="write a plot like the paper's figure")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_sweep)
