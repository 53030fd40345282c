"""Batched linear-mode reads of a 64×64 passive tile: the transfer matrix T (exact wire IR drop)
is built once, then a batch of input vectors costs one matmul. Compares with ideal V·G to show
what IR drop costs on this tile.

    .venv/bin/python examples/surrogate_read.py
"""
import time

import numpy as np
import torch

from spicecross.circuit.tile import TileSpec
from spicecross.surrogate.tile_model import TileSurrogate

torch.set_num_threads(1)   # T is built from many small steps: a spinning thread pool is slow on a busy machine
spec = TileSpec.uniform_wires(64, 64, r_wire_ohm=2.5)        # 0T1R, 2.5 Ω wire segments
rng = np.random.default_rng(0)
g = rng.uniform(1e-6, 1e-4, (64, 64))                         # cells 1–100 µS
v = rng.uniform(0.0, 0.2, (10_000, 64))                       # 10 000 read vectors (V)

linear = TileSurrogate(spec, g, mode="linear")
t0 = time.perf_counter()
T = linear.transfer                                           # (cols, rows) S, cached
t1 = time.perf_counter()
i_lin = linear.read(v)                                        # (10 000, 64) A
t2 = time.perf_counter()
i_ideal = TileSurrogate(spec, g, mode="ideal").read(v)

print(f"T {tuple(T.shape)} built in {1e3 * (t1 - t0):.1f} ms; {len(v)} reads in "
      f"{1e3 * (t2 - t1):.1f} ms ({len(v) / (t2 - t1):.3g} vectors/s)")
loss = 1 - i_lin.sum(axis=0) / i_ideal.sum(axis=0)            # per column, over the batch
err = np.sqrt(np.mean((i_ideal - i_lin) ** 2)) / np.sqrt(np.mean(i_lin ** 2))
print(f"IR-drop current loss vs ideal V·G: column 0 {100 * loss[0]:.1f} %, "
      f"column 63 {100 * loss[-1]:.1f} %, mean {100 * loss.mean():.1f} %")
print(f"ideal mode's relative RMS error against linear: {100 * err:.1f} %")
