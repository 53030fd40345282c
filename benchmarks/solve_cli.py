"""``spicecross solve`` of one tile against the raw simulator run on the same netlist, and the
CLI's start-up time.

    .venv/bin/python benchmarks/solve_cli.py                 # 128×128 0T1R, VACASK, best of 3
    .venv/bin/python benchmarks/solve_cli.py --size 64 --repeats 5

Method. ``spicecross netlist --rows N --cols N --simulator vacask --out tile.sim`` emits one read
of a random 0T1R tile (seeded, default wires). *Raw*: the exact command spicecross runs
(``Simulator._command`` with ``simulator_env()``) on that file in a fresh temporary directory,
wall time of the subprocess. *CLI*: ``spicecross solve --no-cache --jobs 1 --json tile.sim`` as a
subprocess, wall time including the interpreter, imports, reading the netlist, the simulator
and parsing its raw file. Interleaved, min of ``--repeats``. Start-up: wall time of
``spicecross solve --help`` and ``spicecross netlist --help``. Targets (performance issue):
solve ≤ 1.1× raw, start-up < 0.5 s.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, load_str, table  # noqa: E402

from spicecross.spice.simulators import get_simulator, simulator_env  # noqa: E402

CLI = str(Path(sys.executable).with_name("spicecross"))


def wall(cmd: list[str], **kw) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {proc.stderr.strip()[-300:]}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(header("spicecross solve vs the raw simulator"))
    sim = get_simulator("vacask")
    with tempfile.TemporaryDirectory() as d:
        deck = Path(d) / "tile.sim"
        wall([CLI, "netlist", "--rows", str(args.size), "--cols", str(args.size),
              "--simulator", "vacask", "--seed", "1", "--out", str(deck)])
        raw, cli = [], []
        for k in range(args.repeats):
            with tempfile.TemporaryDirectory() as run:
                tmp = Path(run)
                raw.append(wall(sim._command(sim.executable(), deck, tmp), cwd=tmp,
                                env=simulator_env()))
            t0 = time.perf_counter()
            out = subprocess.run([CLI, "solve", "--no-cache", "--jobs", "1", "--json",
                                  str(deck)], capture_output=True, text=True)
            cli.append(time.perf_counter() - t0)
            if out.returncode != 0:
                raise RuntimeError(out.stderr.strip()[-300:])
            if k == 0:
                n = len(json.loads(out.stdout.strip().splitlines()[-1])["sense_currents"])
        start = {c: min(wall([CLI, c, "--help"]) for _ in range(args.repeats))
                 for c in ("solve", "netlist")}
    r, c = min(raw), min(cli)
    print(table(["tile", "raw vacask", "spicecross solve", "ratio", "solve --help",
                 "netlist --help"],
                [[f"{args.size}×{args.size}", f"{r:.3f} s", f"{c:.3f} s", f"{c / r:.2f}×",
                  f"{start['solve']:.3f} s", f"{start['netlist']:.3f} s"]]))
    print(f"(sense currents parsed: {n}); {load_str()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
