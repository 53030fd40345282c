"""Tile netlists solved by ngspice and VACASK against an independent scipy nodal solve."""
import json
import subprocess
import sys

import numpy as np
import pytest

from spicecross.circuit.netlist import ngspice_netlist, vacask_netlist
from spicecross.circuit.tile import SelectorSpec, TileSpec
from spicecross.spice.nodal import nodal_sense_currents
from spicecross.spice.solve import solve_many, solve_tile


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


def random_read(rows, cols, seed, g=(1e-6, 1e-4), v=0.3):
    rng = np.random.default_rng(seed)
    return rng.uniform(*g, (rows, cols)), rng.uniform(0, v, rows)


@pytest.mark.parametrize("n", [8, 16, 32])
@pytest.mark.parametrize("backend", ["ngspice", "vacask"])
def test_passive_tile_matches_nodal(n, backend):
    spec = TileSpec.uniform_wires(n, n, 2.5, r_driver_ohm=5.0, r_sense_ohm=3.0)
    g, v = random_read(n, n, seed=n)
    ref = nodal_sense_currents(spec, g, v)
    res = solve_tile(spec, g, v, backend=backend, cache_dir=None)
    assert res.ok, res.error
    assert rel_err(res.sense_currents_a, ref) < 1e-6
    # the wires matter at this size: the ideal matmul is measurably off
    assert rel_err(v @ g, ref) > 1e-4


def test_rectangular_tile_and_node_voltages():
    spec = TileSpec.uniform_wires(12, 5, 1.0)
    g, v = random_read(12, 5, seed=1, g=(1e-4, 1e-2))
    res = solve_tile(spec, g, v, backend="ngspice", cache_dir=None)
    assert res.ok
    assert rel_err(res.sense_currents_a, nodal_sense_currents(spec, g, v)) < 1e-6
    # the first word-line node sits one segment below its input
    i0 = v[0] - res.node_voltages_v["wl_0_0"]
    assert 0 < i0 < v[0]


def test_1t1r_wide_selector_approaches_passive():
    n = 8
    g, v = random_read(n, n, seed=3, g=(4e-4, 1e-2), v=0.2)
    passive = nodal_sense_currents(TileSpec.uniform_wires(n, n, 1.0), g, v)
    errs = []
    for w in (4e-6, 400e-6, 40e-3):
        spec = TileSpec.uniform_wires(n, n, 1.0, cell="1t1r", selector=SelectorSpec(w_m=w))
        res = solve_tile(spec, g, v, backend="ngspice", cache_dir=None)
        assert res.ok, res.error
        errs.append(rel_err(res.sense_currents_a, passive))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-3


def test_1t1r_ngspice_and_vacask_agree():
    n = 8
    spec = TileSpec.uniform_wires(n, n, 1.0, cell="1t1r")
    g, v = random_read(n, n, seed=4, g=(4e-4, 1e-2), v=0.2)
    a = solve_tile(spec, g, v, backend="ngspice", cache_dir=None)
    b = solve_tile(spec, g, v, backend="vacask", cache_dir=None)
    assert a.ok and b.ok
    assert rel_err(a.sense_currents_a, b.sense_currents_a) < 1e-5


def test_parallel_equals_serial_and_cache_hits(tmp_path):
    spec = TileSpec.uniform_wires(8, 8, 1.0)
    reads = [random_read(8, 8, seed=s) for s in range(6)]
    gs, vs = [r[0] for r in reads], [r[1] for r in reads]
    serial = solve_many(spec, gs, vs, backend="ngspice", n_jobs=1, cache_dir=None, progress=False)
    par = solve_many(spec, gs, vs, backend="ngspice", n_jobs=2, cache_dir=tmp_path, progress=False)
    assert all(r.ok for r in serial + par)
    for a, b in zip(serial, par):
        np.testing.assert_array_equal(a.sense_currents_a, b.sense_currents_a)
    assert not any(r.cached for r in par)
    again = solve_many(spec, gs, vs, backend="ngspice", n_jobs=2, cache_dir=tmp_path, progress=False)
    assert all(r.cached for r in again)
    for a, b in zip(par, again):
        np.testing.assert_array_equal(a.sense_currents_a, b.sense_currents_a)


def test_netlist_runs_by_hand(tmp_path):
    spec = TileSpec.uniform_wires(4, 3, 1.0, cell="1t1r")
    g, v = random_read(4, 3, seed=5, g=(4e-4, 1e-2))
    text = ngspice_netlist(spec, g, v)
    assert text.startswith(".title spicecross tile 4x3 1t1r")
    assert "Vsense2 sn_2 0" in text and ".model nsel NMOS" in text
    (tmp_path / "t.cir").write_text(text)
    out = subprocess.run(["ngspice", "-b", "t.cir"], cwd=tmp_path, capture_output=True, text=True).stdout
    printed = {ln.split()[0]: float(ln.split()[1]) for ln in out.splitlines()
               if ln.strip().startswith("vsense")}
    res = solve_tile(spec, g, v, backend="ngspice", cache_dir=None)
    for j in range(3):
        assert printed[f"vsense{j}#branch"] == pytest.approx(res.sense_currents_a[j], rel=1e-5)
    assert "analysis op1 op" in vacask_netlist(spec, g, v)


def test_bad_tile_inputs_are_named():
    spec = TileSpec(rows=4, cols=4)
    with pytest.raises(ValueError, match=r"conductances must have shape"):
        ngspice_netlist(spec, np.ones((3, 4)) * 1e-3, np.zeros(4))
    with pytest.raises(ValueError, match=r"-0.5"):
        ngspice_netlist(spec, np.full((4, 4), -0.5), np.zeros(4))
    with pytest.raises(ValueError, match=r"cell"):
        TileSpec(cell="2t2r")
    with pytest.raises(ValueError, match=r"r_wire_wl_ohm"):
        TileSpec(r_wire_wl_ohm=-0.1)
    with pytest.raises(ValueError, match=r"r_wire_bl_ohm"):
        TileSpec(r_wire_bl_ohm=float("nan"))
    # 0 Ω is an ideal wire: the netlist emits 1 µΩ, as SPICE needs a finite resistance
    ideal = TileSpec(rows=2, cols=2, r_wire_wl_ohm=0.0, r_wire_bl_ohm=0.0)
    assert " 1e-06" in ngspice_netlist(ideal, np.full((2, 2), 1e-3), np.zeros(2))


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "spicecross.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_cli_netlist_and_solve_json(tmp_path):
    g, v = random_read(6, 4, seed=7)
    np.save(tmp_path / "G.npy", g)
    np.save(tmp_path / "V.npy", v)
    r = cli("netlist", "--cell", "0t1r", "--r-wire", "2", "--conductances", "G.npy",
            "--inputs", "V.npy", "--out", "tile.cir", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = cli("solve", "tile.cir", "--json", "--out", "res.h5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["sense_currents"]
    ref = nodal_sense_currents(TileSpec.uniform_wires(6, 4, 2.0), g, v)
    assert rel_err(got, ref) < 1e-6
    import h5py
    with h5py.File(tmp_path / "res.h5") as f:
        assert f["read00000"].attrs["simulator_version"].startswith("ngspice-")
        assert len(f["read00000"].attrs["netlist_hash"]) > 40


def test_cli_failures_counted_and_batch_goes_on(tmp_path):
    (tmp_path / "bad.cir").write_text("bad\nV1 a 0 1\nQ1 a b c nomodel\n.op\n.end\n")
    assert cli("netlist", "--rows", "3", "--cols", "2", "--out", "ok.cir", cwd=tmp_path).returncode == 0
    r = cli("solve", "bad.cir", "ok.cir", "--json", "--no-cache", cwd=tmp_path)
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out[0]["sense_currents"] is None and "Error" in out[0]["error"]
    assert len(out[1]["sense_currents"]) == 2
    r = cli("netlist", "--conductances", "missing.npy", cwd=tmp_path)
    assert r.returncode == 2 and "missing.npy" in r.stderr and "Traceback" not in r.stderr


def test_missing_ngspice_is_one_line(tmp_path):
    import os
    (tmp_path / "t.cir").write_text("t\nV1 a 0 1\nR1 a 0 1k\n.op\n.end\n")
    env = dict(os.environ, SPICECROSS_NGSPICE=str(tmp_path / "no-such-ngspice"))
    r = subprocess.run([sys.executable, "-m", "spicecross.cli", "solve", "t.cir", "--no-cache"],
                       capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 2
    assert "apt-get install ngspice" in r.stderr and len(r.stderr.strip().splitlines()) == 1
