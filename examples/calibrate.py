"""A short calibration of a 16×16 1T1R tile against SPICE: random tiles and reads as the weight
mapping draws them, ngspice solves (cached by netlist hash), the selector's effective conductance fitted
on training tiles, errors of every mode on held-out tiles.

    .venv/bin/python examples/calibrate.py           # writes out/examples/calibration_16x16.h5
"""
import torch

from spicecross.calibration import calibrate
from spicecross.circuit.tile import TileSpec

torch.set_num_threads(1)   # small matrices: one thread; a spinning thread pool is slow on a busy machine
spec = TileSpec.uniform_wires(16, 16, r_wire_ohm=1.0, cell="1t1r")
cal, arrays = calibrate(spec, n_tiles=6, reads_per_tile=4, v_read_max_v=0.2, seed=0,
                        backend="ngspice", n_jobs=1, progress=False,
                        out="out/examples/calibration_16x16.h5")

print(f"{spec.rows}x{spec.cols} {spec.cell}, {cal.provenance['simulator_version']}, "
      f"held-out tiles {cal.provenance['held_out_tiles']}")
print(f"fitted g_sel = {cal.g_sel_s * 1e3:.4f} mS (level-1 beta·(V_G − V_T) = "
      f"{spec.selector.g_on_s * 1e3:.4f} mS)")
print(f"{'held-out error':<22}{'rel. RMS':>10}{'rel. max':>10}")
for mode, e in cal.errors.items():
    print(f"{mode:<22}{e['rel_rms']:>10.2e}{e['rel_max']:>10.2e}")
print(f"best mode: {cal.best_mode}; written out/examples/calibration_16x16.h5")
