"""Same-run A/B of two source trees: one benchmark script run from a baseline checkout and from
this one, alternately, ``--repeats`` times, with the load average before each run; the lines of
its output matching ``--keep`` are printed per run. Each benchmark prints its own ratios (e.g.
``spice_check.py``: infer with the check over infer without it), so the two trees' ratios come
from the same load window.

    .venv/bin/python benchmarks/ab_trees.py --baseline ../main --keep '^\\| (0t1r|1t1r) ' -- \\
        benchmarks/spice_check.py --data ../shared/data --images 10000 --cells 0t1r

The script path is taken inside each tree; each run gets ``PYTHONPATH`` = its tree and
``SPICECROSS_TRANSFER_CACHE=off``, niced by 10 (the machine is shared).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_str  # noqa: E402

HERE = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="the baseline source tree (a checkout)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--keep", default=".", help="regex: output lines to print (default all)")
    ap.add_argument("command", nargs=argparse.REMAINDER,
                    help="-- script.py args…, the script relative to each tree")
    args = ap.parse_args()
    cmd = [c for c in args.command if c != "--"]
    if not cmd:
        raise SystemExit("give the benchmark after --, e.g. -- benchmarks/spice_check.py …")
    trees = {"baseline": Path(args.baseline).resolve(), "this": HERE}
    for name, tree in trees.items():
        if not (tree / cmd[0]).is_file():
            raise SystemExit(f"{tree / cmd[0]} not found ({name} tree)")
    keep = re.compile(args.keep)
    for k in range(args.repeats):
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": str(tree), "SPICECROSS_TRANSFER_CACHE": "off"}
            print(f"== run {k + 1}, {name} ({tree}); {load_str()}", flush=True)
            out = subprocess.run(["nice", "-n", "10", sys.executable, str(tree / cmd[0]),
                                  *cmd[1:]], cwd=HERE, env=env, capture_output=True, text=True)
            lines = [ln for ln in out.stdout.splitlines() if keep.search(ln)]
            print("\n".join(lines) if out.returncode == 0 else out.stderr[-2000:], flush=True)
    print(f"== end; {load_str()}")


if __name__ == "__main__":
    main()
