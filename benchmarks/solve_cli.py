"""``spicecross solve`` of one tile against the raw simulator run on the same netlist, and the
CLI's start-up time.

    .venv/bin/python benchmarks/solve_cli.py                 # 128×128 0T1R, VACASK, best of 3
    .venv/bin/python benchmarks/solve_cli.py --size 64 --repeats 5
    .venv/bin/python benchmarks/solve_cli.py --repeats 7 --tree main=. --tree new=../wt/x

Method. ``spicecross netlist --rows N --cols N --simulator vacask --out tile.sim`` emits one read
of a random 0T1R tile (seeded, default wires). *Raw*: the exact command spicecross runs
(``Simulator._command`` with ``simulator_env()``) on that file in a fresh temporary directory,
wall time of the subprocess. *CLI*: ``spicecross solve --no-cache --jobs 1 --json tile.sim`` as a
subprocess, wall time including the interpreter, imports, reading the netlist, the simulator
and parsing its raw file. Interleaved: the ratio of the minima of ``--repeats`` runs, and the
median of the ratios of each CLI run to the raw run of the same repeat (the raw run first in
even repeats, last in odd ones) with a 95 % bootstrap interval of that median (2 000 resamples
of the repeats, seeded). The CLI runs print the
simulator run's own seconds (``spicecross solve`` without ``--json``; the JSON output, run once
per checkout at the end, is compared between checkouts): the CLI's own time is its wall time
minus that (little noise: the simulator's drift is in neither part), and that run is compared
with the raw run of its repeat. *Control*: every repeat runs the raw command twice, and the same
estimate of the second raw run against the first must come out ≈ 1.0: its interval is how far
this machine's noise alone moves a ratio in this run (the simulator's own time moved by
±20 % between runs minutes apart on this VM). Start-up: wall time of
``spicecross solve --help`` and ``spicecross netlist --help``. Targets (performance issue):
solve ≤ 1.1× raw, start-up < 0.5 s.

The CLI is the ``spicecross`` console script next to this interpreter, i.e. the code of the
installed (editable) checkout. ``--tree LABEL=PATH`` (repeatable) times the same console script
with ``PATH`` first on ``PYTHONPATH`` instead, so that checkout's ``spicecross`` package runs
(A/B of two checkouts in one interleaved run); each tree's byte code is compiled first, as a
user's second run finds it (the installed checkout's too: a process started with
``PYTHONDONTWRITEBYTECODE=1`` never refreshes stale byte code, and recompiling one module
costs the CLI milliseconds on every run).
"""
from __future__ import annotations

import argparse
import compileall
import functools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, load_str, table  # noqa: E402

from spicecross.spice.executables import simulator_env  # noqa: E402
from spicecross.spice.simulators import get_simulator  # noqa: E402

CLI = str(Path(sys.executable).with_name("spicecross"))


def wall(cmd: list[str], **kw) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {proc.stderr.strip()[-300:]}")
    return dt


def paired(cli: list[float], raw: list[float]) -> str:
    """Median of the per-repeat ratios CLI / raw, each CLI run against the raw run of its
    repeat (the simulator's own time drifts by tens of % between minutes on a shared VM; a
    neighbour in time shares the drift), with its 95 % bootstrap interval (percentiles of the
    medians of 2 000 resamples of the repeats, seeded)."""
    ratios = np.array([c / r for c, r in zip(cli, raw)])
    if len(ratios) < 3:                     # no interval from fewer runs
        return f"{float(np.median(ratios)):.3f}× ({len(ratios)} run(s))"
    rng = np.random.default_rng(0)
    medians = np.median(rng.choice(ratios, size=(2000, len(ratios))), axis=1)
    lo, hi = np.percentile(medians, [2.5, 97.5])
    return f"{float(np.median(ratios)):.3f}× ({lo:.3f}–{hi:.3f})"


def _quartiles(seconds: list[float]) -> str:
    if len(seconds) < 2:
        return f"{1e3 * seconds[0]:.1f} ms"
    q = statistics.quantiles(seconds, n=4, method="inclusive")
    return f"{1e3 * q[1]:.1f} ms ({1e3 * q[0]:.1f}–{1e3 * q[2]:.1f})"


def tree_env(path: str | None) -> dict[str, str] | None:
    """The environment running the console script on checkout ``path`` (None: as installed)."""
    if path is None:
        return None
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(Path(path).resolve()) + (f":{old}" if old else "")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH",
                    help="also time this checkout's spicecross (repeatable)")
    args = ap.parse_args()
    if args.repeats < 1 or args.size < 1:
        ap.error(f"--repeats and --size must be ≥ 1, got {args.repeats} and {args.size}")
    trees: dict[str, str | None] = {"installed": None} if not args.tree else {}
    if not args.tree:   # this checkout's byte code may be stale (PYTHONDONTWRITEBYTECODE=1 runs)
        compileall.compile_dir(str(Path(__file__).resolve().parents[1] / "spicecross"), quiet=1)
    for t in args.tree:
        label, _, path = t.partition("=")
        if not path or not (Path(path) / "spicecross" / "cli" / "__init__.py").is_file():
            ap.error(f"--tree {t!r}: expected LABEL=PATH of a spicecross checkout")
        trees[label] = path
        compileall.compile_dir(str(Path(path) / "spicecross"), quiet=1)
    print(header("spicecross solve vs the raw simulator"))
    sim = get_simulator("vacask")
    raw: list[float] = []
    raw2: list[float] = []          # the control: the raw command again, same repeat
    cli: dict[str, list[float]] = {k: [] for k in trees}
    inner: dict[str, list[float]] = {k: [] for k in trees}
    with tempfile.TemporaryDirectory() as d:
        deck = Path(d) / "tile.sim"
        wall([CLI, "netlist", "--rows", str(args.size), "--cols", str(args.size),
              "--simulator", "vacask", "--seed", "1", "--out", str(deck)])
        outs = {}
        def run_raw(into: list[float]) -> None:
            with tempfile.TemporaryDirectory() as run:
                tmp = Path(run)
                into.append(wall(sim._command(sim.executable(), deck, tmp), cwd=tmp,
                                 env=simulator_env()))

        def run_cli(label: str, path: str | None) -> None:
            t0 = time.perf_counter()
            out = subprocess.run([CLI, "solve", "--no-cache", "--jobs", "1", str(deck)],
                                 capture_output=True, text=True, env=tree_env(path))
            cli[label].append(time.perf_counter() - t0)
            if out.returncode != 0:
                raise RuntimeError(out.stderr.strip()[-300:])
            # "<file>: vacask (0.612 s) ok": the simulator run as the CLI timed it
            inner[label].append(float(re.search(r"\(([0-9.]+) s\)", out.stdout).group(1)))

        for k in range(args.repeats):
            # the raw run first in even repeats, last in odd ones: neither side gains from
            # its place (a warmer page cache, a clock that drifts within a repeat)
            runs = ([functools.partial(run_raw, raw)]
                    + [functools.partial(run_cli, *t) for t in trees.items()]
                    + [functools.partial(run_raw, raw2)])
            for run in (runs if k % 2 == 0 else runs[::-1]):
                run()
        for label, path in trees.items():  # the JSON output once per checkout
            outs[label] = subprocess.run([CLI, "solve", "--no-cache", "--jobs", "1", "--json",
                                          str(deck)], capture_output=True, text=True,
                                         env=tree_env(path), check=True).stdout
        payloads = set(outs.values())      # byte-identical output of every checkout
        n = len(json.loads(next(iter(outs.values())).strip().splitlines()[-1])["sense_currents"])
        start = {(label, c): min(wall([CLI, c, "--help"], env=tree_env(path))
                                 for _ in range(args.repeats))
                 for label, path in trees.items() for c in ("solve", "netlist")}
    r = min(raw)
    rows = [[f"{args.size}×{args.size}", label, f"{r:.3f} s", f"{min(c):.3f} s",
             f"{min(c) / r:.2f}×", paired(c, raw), f"{start[label, 'solve']:.3f} s",
             f"{start[label, 'netlist']:.3f} s"] for label, c in cli.items()]
    rows.append([f"{args.size}×{args.size}", "control: raw again", f"{r:.3f} s",
                 f"{min(raw2):.3f} s", f"{min(raw2) / r:.2f}×", paired(raw2, raw), "—", "—"])
    print(table(["tile", "code", "raw vacask (min)", "timed run (min)", "ratio of minima",
                 "paired ratio, median (95 % interval)", "solve --help", "netlist --help"],
                rows))
    print("\nWhere a CLI run's time goes: its own (CLI wall time minus the simulator run it "
          "reports: interpreter, imports, reading and checking the netlist, output, exit) and "
          "its simulator run (the deck's write, the simulator process, the raw file's read) "
          "against the raw run of the same repeat.\n")
    print(table(["code", "CLI's own time, median (quartiles)", "as a share of the raw run",
                 "its simulator run / raw run, paired median (95 % interval)"],
                [[label, _quartiles([a - b for a, b in zip(c, inner[label])]),
                  f"{100 * statistics.median([a - b for a, b in zip(c, inner[label])]) / statistics.median(raw):.1f} %",
                  paired(inner[label], raw)] for label, c in cli.items()]))
    same = "the same output" if len(payloads) == 1 else "DIFFERENT outputs"
    print(f"(sense currents parsed: {n}; {len(trees)} checkout(s), {same}); {load_str()}")
    return 0 if len(payloads) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
