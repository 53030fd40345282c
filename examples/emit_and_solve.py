"""Emit a 16×16 1T1R tile read as an ngspice deck, solve the file with ngspice, and compare the
sense currents with the surrogate's nonlinear mode (same TileSpec, same level-1 selector).

    .venv/bin/python examples/emit_and_solve.py      # writes out/examples/tile_16x16_1t1r.cir
"""
import numpy as np

from spicecross.circuit.netlist import write_netlist
from spicecross.circuit.tile import TileSpec
from spicecross.spice.solve import solve_files
from spicecross.surrogate.tile_model import TileSurrogate

spec = TileSpec.uniform_wires(16, 16, r_wire_ohm=1.0, cell="1t1r")   # 1 Ω segments, default NMOS
rng = np.random.default_rng(0)
g = rng.uniform(1 / 2500, 1 / 100, (16, 16))       # device conductances (S), Pt/Hf/Ti range
v = rng.uniform(0.0, 0.2, 16)                      # read voltages (V), below VTEAM's thresholds

path = write_netlist("out/examples/tile_16x16_1t1r.cir", spec, g, v, simulator="ngspice")
print(f"wrote {path} (run it by hand: ngspice -b {path})")
res = solve_files([path], n_jobs=1, cache_dir=None)[0]
if not res.ok:
    raise SystemExit(f"ngspice failed: {res.error}")

sur = TileSurrogate(spec, g, mode="nonlinear").read(v)
ideal = TileSurrogate(spec, g, mode="ideal").read(v)
rel = lambda a, b: np.max(np.abs(a - b)) / np.max(np.abs(b))  # noqa: E731
print(f"{res.simulator_version}: {res.seconds:.3f} s; sense currents (mA), first 4 columns:")
print("  ngspice   ", np.round(res.sense_currents_a[:4] * 1e3, 6))
print("  nonlinear ", np.round(sur[:4] * 1e3, 6))
print(f"max |ΔI| / max |I|: nonlinear {rel(sur, res.sense_currents_a):.2e}, "
      f"ideal (V·G, no wires, no selector) {rel(ideal, res.sense_currents_a):.2e}")
