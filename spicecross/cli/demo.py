"""``spicecross demo``: the end-to-end demo (library: :func:`spicecross.demo.run_demo`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .args import positive_int


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from ..store import check_output_dir

    check_output_dir(args.out, "--out")
    run_demo(Path(args.out), args.data, args.limit)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the end-to-end demo (device, tile vs ngspice, calibration, MNIST)",
                       description="The main job end to end on its embedded default, in a few minutes.")
    p.add_argument("--out", default="out/demo", help="output directory (PNG, netlist, HDF5, JSON)")
    p.add_argument("--data", help="dataset root in torchvision's layout (MNIST/raw/...)")
    p.add_argument("--limit", type=positive_int, help="at most this many test images")
    p.set_defaults(func=_cmd_demo)
