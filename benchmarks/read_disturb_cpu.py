"""Where the read-disturb stream's CPU goes: the same stream (``disturb_network``) run inline on
one thread and pipelined on the worker pool, in one process, with each step's CPU time.

    .venv/bin/python benchmarks/read_disturb_cpu.py --data ../shared/data --images 10000 --v-read 0.55

Setup as ``benchmarks/read_disturb.py`` (64×64 0T1R pt_hf_ti tiles, 1 µs pulses, chunks of
``--chunk``). Per run: wall time, the process's CPU time, and the CPU time (``time.thread_time``
inside each step, summed over threads) of the analog layers' forward (the tile reads and
converters; the digital layers between them are not counted; in the pipelined run the tile
reads an idle worker took are not counted either), the live reads, the row-tile advances
(without the halves a worker took from another by ``fork_join``: those run outside any timed
step and show only in the process's CPU) and the read-matrix rebuilds; per thread of the
process its CPU time (``/proc``). Both runs give bitwise the same
conductances (checked).
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import threading
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, load_str, table  # noqa: E402

import torch  # noqa: E402

import spicecross.nn.analog_base as ab  # noqa: E402
from spicecross.nn import read_disturb_steps as rds  # noqa: E402
from spicecross.nn.analog import analog_layers, patch_model  # noqa: E402
from spicecross.nn.inference import load_eval_data, load_network  # noqa: E402
from spicecross.nn.read_disturb import _load_kernels, disturb_network  # noqa: E402
from spicecross.surrogate.config import AnalogConfig  # noqa: E402
from spicecross.surrogate.read_disturb_update import ReadPulse  # noqa: E402

CPU: dict[str, float] = collections.defaultdict(float)
LOCK = threading.Lock()


def timed(name, fn):
    def wrapper(*a, **kw):
        t = time.thread_time()
        try:
            return fn(*a, **kw)
        finally:
            with LOCK:
                CPU[name] += time.thread_time() - t
    return wrapper


def thread_cpu() -> dict[str, float]:
    """CPU seconds per thread of this process (utime + stime)."""
    out, tick = {}, os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            stat = Path(f"/proc/{os.getpid()}/task/{tid}/stat").read_text()
        except OSError:
            continue
        f = stat[stat.rindex(")") + 2:].split()
        out[tid] = (int(f[11]) + int(f[12])) / tick
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--v-read", type=float, default=0.55)
    ap.add_argument("--chunk", type=int, default=250)
    args = ap.parse_args()
    print(header("read-disturb stream: CPU per step, inline and pipelined"))
    _load_kernels("0t1r")
    for name in ("live", "advance"):
        setattr(rds.LayerSteps, name, timed(name, getattr(rds.LayerSteps, name)))
    rds.LayerSteps.refresh = staticmethod(timed("refresh", rds.LayerSteps.refresh))
    cfg = AnalogConfig.build(tile_rows=64, tile_cols=64, v_read_v=args.v_read, cell="0t1r")
    model = load_network("mnist", None)
    data = load_eval_data("mnist", args.data, args.images, cfg.calibration_images)
    rows, results = [], []
    threads = torch.get_num_threads()
    for mode, workers in (("inline", 1), ("pipelined", threads)):
        ab.torch_threads = lambda w=workers: w
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            analog = patch_model(model, cfg, data.calibration)
        for _, layer in analog_layers(analog):
            layer.forward = timed("analog", layer.forward)
        CPU.clear()
        before, c0, t0 = thread_cpu(), time.process_time(), time.perf_counter()
        disturb_network(analog, data.test, ReadPulse(1e-6), args.chunk, 0.01)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        after = thread_cpu()
        per_thread = sorted((after[t] - before.get(t, 0.0) for t in after), reverse=True)
        results.append([layer.array.g_dev.copy() for _, layer in analog_layers(analog)])
        rows.append([mode, f"{wall:.2f}", f"{cpu:.2f}", f"{100 * cpu / (wall * max(1, workers)):.0f}",
                     *(f"{CPU[k]:.2f}" for k in ("analog", "live", "advance", "refresh")),
                     " / ".join(f"{x:.2f}" for x in per_thread if x >= 0.05)])
    same = all((a == b).all() for a, b in zip(*results))
    print(f"\n{args.images} images at {args.v_read:g} V, chunks of {args.chunk} (module doc: "
          f"what each column counts)")
    print(table(["stream", "wall s", "CPU s", "% of the cores used", "analog layers CPU s",
                 "live reads CPU s", "advances CPU s", "rebuilds CPU s", "CPU s per thread"],
                rows))
    print(f"same conductances: {same}; {load_str()}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
