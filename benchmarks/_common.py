"""Small helpers shared by the benchmark scripts: machine/load header, random tiles, timing and
plain-text (Markdown) tables. Nothing here is part of the spicecross package."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import subprocess
import time
from typing import Callable, Sequence

import numpy as np

# Passive tiles as in DESIGN.md's simulator table: cells 1–100 µS, 2.5 Ω wire segments.
PASSIVE_G_RANGE_S = (1e-6, 1e-4)
# 1T1R tiles as calibration draws them for the Pt/Hf/Ti set: 1/2.5 kΩ … 1/100 Ω.
PT_HF_TI_G_RANGE_S = (1 / 2500, 1 / 100)
R_WIRE_OHM = 2.5
V_READ_MAX_V = 0.2


def loadavg() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:  # pragma: no cover
        return (float("nan"),) * 3


def load_str() -> str:
    a, b, c = loadavg()
    return f"load average {a:.2f} / {b:.2f} / {c:.2f} (1/5/15 min)"


def header(title: str) -> str:
    """Date, machine and load, printed at the top of each benchmark."""
    import torch

    from spicecross.spice.simulators import SIMULATOR_NAMES, get_simulator

    cpu = platform.processor() or platform.machine()
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                     if ln.startswith("model name"))
    except (OSError, StopIteration):
        model = cpu
    lines = [f"# {title}",
             f"date: {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
             f"machine: {os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}",
             (f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__} "
              f"({torch.get_num_threads()} threads), "
              + ", ".join(get_simulator(name).version() for name in SIMULATOR_NAMES)),
             f"at start: {load_str()}"]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        if rev:
            lines.append(f"spicecross commit: {rev}")
    except (OSError, subprocess.SubprocessError):
        pass
    return "\n".join(lines)


def random_tiles(rows: int, cols: int, n: int, g_range_s: tuple[float, float], seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """n conductance maps (n, rows, cols) in S, uniform in g_range_s, and n input vectors
    (n, rows) in V, uniform in [0, V_READ_MAX_V]."""
    rng = np.random.default_rng(seed)
    g = rng.uniform(*g_range_s, (n, rows, cols))
    v = rng.uniform(0.0, V_READ_MAX_V, (n, rows))
    return g, v


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def repeat_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Wall times (s) of ``repeats`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    return [timed(fn)[0] for _ in range(repeats)]


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a − b| / max |b| (b the reference)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    cells = [[str(h) for h in head]] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(head))]
    fmt = lambda r: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |"  # noqa: E731
    return "\n".join([fmt(cells[0]), "|" + "|".join("-" * (x + 2) for x in w) + "|",
                      *(fmt(r) for r in cells[1:])])


def fmt_s(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    if x >= 10:
        return f"{x:.1f} s"
    if x >= 1:
        return f"{x:.2f} s"
    if x >= 1e-3:
        return f"{x * 1e3:.1f} ms"
    return f"{x * 1e6:.0f} µs"


def fmt_rate(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    if x >= 1e4:
        return f"{x:.3g}".replace("e+0", "e").replace("e+", "e")
    if x >= 100:
        return f"{x:.0f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"
