"""Peak memory (RSS) and time of ``spicecross infer`` at 64/128/256 tiles and of the tile-adc sweep,
each command run as a child process exactly as a user runs it.

    .venv/bin/python benchmarks/memory.py --data ../shared/data [--tiles 64 128 256] [--limit N]
        [--sweep] [--sweep-limit N]

Per tile size ``infer`` runs twice with the same fresh transfer cache (:mod:`spicecross.surrogate.
transfer_cache`): *cold* (programming solves every wire network and fills the cache) and *warm*
(a second run with the same programmed network: T and compensated conductances come from the
cache). Peak RSS is the child's own report (``peak_rss_mib`` in its JSON, ``getrusage``) and the
kernel's for the child (``wait4``), in MiB; times are the child's (programming, analog
inference, digital inference of the same images in the same run) and the ratio
(programming + inference) / digital. ``--sweep`` runs ``spicecross sweep tile-adc`` into a
temporary file and reports its peak RSS (``wait4``) and wall time. The SPICE check is off
(``--spice-check 0``: its simulator processes are not part of the surrogate's memory).

RSS does not depend on the machine's load; the times do (the load is printed).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, load_str, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run_measured(argv: list[str], env: dict[str, str]) -> tuple[str, float, float]:
    """Run ``python -m spicecross.cli argv`` and reap it with ``os.wait4``: (stdout, the
    child's own peak RSS in MiB, wall time in s)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "spicecross.cli", *argv], env=env,
                                cwd=REPO, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{err.read()[-2000:]}")
        return out.read(), usage.ru_maxrss / 1024, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="data root (MNIST in torchvision layout)")
    ap.add_argument("--tiles", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--limit", type=int, default=None, help="test images (default all 10 000)")
    ap.add_argument("--sweep", action="store_true", help="also run the tile-adc sweep")
    ap.add_argument("--sweep-limit", type=int, default=None, help="test images of the sweep")
    args = ap.parse_args()

    print(header("Peak memory and time: infer and the tile-adc sweep"))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    limit = ["--limit", str(args.limit)] if args.limit else []
    rows = []
    with tempfile.TemporaryDirectory(prefix="spicecross-memory-") as tmp:
        for n in args.tiles:
            env_n = dict(env, SPICECROSS_TRANSFER_CACHE=str(Path(tmp) / f"cache{n}"))
            argv = ["infer", "--tile", f"{n}x{n}", "--data", args.data, "--spice-check", "0",
                    "--json", *limit]
            for phase in ("cold", "warm"):
                out, rss_kernel, wall = run_measured(argv, env_n)
                res = json.loads(out.strip().splitlines()[-1])
                ratio = (res["program_seconds"] + res["seconds"]) / res["digital_seconds"]
                rows.append([f"{n}×{n}", phase, res["images"], f"{res['peak_rss_mib']:.0f}",
                             f"{rss_kernel:.0f}", f"{res['program_seconds']:.1f}",
                             f"{res['seconds']:.1f}", f"{res['digital_seconds']:.2f}",
                             f"{ratio:.1f}×", f"{res['accuracy']:.2f} %", f"{wall:.0f}"])
                print(f"  {n}×{n} {phase}: {rows[-1]} ({load_str()})", flush=True)
        print()
        print(table(["tile", "T cache", "images", "peak RSS (MiB, own)", "peak RSS (MiB, wait4)",
                     "programming (s)", "inference (s)", "digital (s)",
                     "(prog. + inf.) / digital", "accuracy", "wall (s)"], rows))
        if args.sweep:
            out_h5 = Path(tmp) / "tile_adc.h5"
            argv = ["sweep", "tile-adc", "--data", args.data, "--spice-check", "0", "--quiet",
                    "--out", str(out_h5)]
            if args.sweep_limit:
                argv += ["--limit", str(args.sweep_limit)]
            env_s = dict(env, SPICECROSS_TRANSFER_CACHE=str(Path(tmp) / "cache-sweep"))
            out, rss_kernel, wall = run_measured(argv, env_s)
            res = json.loads(out.strip().splitlines()[-1])
            print()
            print(table(["command", "points", "peak RSS (MiB, wait4)", "wall (s)"],
                        [[f"sweep tile-adc{' --limit ' + str(args.sweep_limit) if args.sweep_limit else ''}",
                          res["computed"], f"{rss_kernel:.0f}", f"{wall:.0f}"]]))
    print(f"at end: {load_str()}")


if __name__ == "__main__":
    main()
