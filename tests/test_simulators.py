"""The Simulator interface: ngspice and VACASK emit, run and parse the same small tiles and agree
with each other and with the independent nodal solve; lookups and emitters fail with one-line
errors naming the bad value."""
import re
import subprocess
import sys

import numpy as np
import pytest

from spicecross.circuit.netlist import (ngspice_netlist_from_elements,
                                        vacask_netlist_from_elements)
from spicecross.circuit.tile import Element, TileSpec, tile_elements
from spicecross.spice.nodal import nodal_sense_currents, solve_elements
from spicecross.spice.simulators import (NGSPICE, SIMULATOR_NAMES, VACASK, SimulationError,
                                         Simulator, get_simulator, simulator_for_path)
from spicecross.spice.solve import BACKENDS, choose_backend, choose_simulator

SIMS = [NGSPICE, VACASK]


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


def read_4x4(cell, seed=0):
    spec = TileSpec.uniform_wires(4, 4, 1.0, cell=cell)
    rng = np.random.default_rng(seed)
    return spec, rng.uniform(4e-4, 1e-2, (4, 4)), rng.uniform(0, 0.2, 4)


def test_instances_and_lookup():
    assert SIMULATOR_NAMES == ("ngspice", "vacask") and BACKENDS == ("auto", *SIMULATOR_NAMES)
    assert [get_simulator(n) for n in SIMULATOR_NAMES] == SIMS
    assert (NGSPICE.suffix, VACASK.suffix) == (".cir", ".sim")
    assert get_simulator(VACASK) is VACASK
    assert simulator_for_path("a/t.SIM") is VACASK and simulator_for_path("t.cir") is NGSPICE
    assert NGSPICE.version().startswith("ngspice-") and VACASK.version().startswith("vacask")
    small, big = TileSpec.uniform_wires(12, 12, 1.0), TileSpec.uniform_wires(13, 12, 1.0)
    assert choose_simulator(small) is NGSPICE and choose_simulator(big) is VACASK
    assert (choose_backend(small), choose_backend(big)) == ("ngspice", "vacask")


@pytest.mark.parametrize("bad", ["nope", "NGSPICE", "", None])
def test_get_simulator_names_the_bad_value(bad):
    with pytest.raises(ValueError) as exc:
        get_simulator(bad)
    msg = str(exc.value)
    assert repr(bad) in msg and "ngspice" in msg and "vacask" in msg and "\n" not in msg


@pytest.mark.parametrize("cell", ["0t1r", "1t1r"])
def test_emit_run_parse_agree(cell):
    spec, g, v = read_4x4(cell)
    out = {}
    for sim in SIMS:
        text = sim.emit(spec, g, v)
        plots = sim.run(text)
        cur, nodes = sim.parse(plots[0])           # Python floats (no numpy on this path)
        assert isinstance(cur, list) and all(isinstance(x, float) for x in cur), sim.name
        cur = np.asarray(cur)
        assert cur.shape == (4,) and np.all(np.isfinite(cur)), sim.name
        assert 0 < nodes["wl_0_0"] < v[0], sim.name          # volts, one segment below input 0
        out[sim.name] = cur, nodes
        np.testing.assert_array_equal(sim.read_tile(text)[0], cur)
    (a, na), (b, nb) = out["ngspice"], out["vacask"]
    assert set(na) == set(nb)
    assert max(abs(na[k] - nb[k]) for k in na) < 1e-9
    if cell == "0t1r":
        ref = nodal_sense_currents(spec, g, v)
        volts, _ = solve_elements(tile_elements(spec, g, v))
        for sim in SIMS:
            cur, nodes = out[sim.name]
            assert rel_err(cur, ref) <= 1e-9, sim.name
            assert max(abs(nodes[k] - volts[k]) for k in nodes) < 1e-9, sim.name
    else:
        assert rel_err(a, b) < 1e-5


def test_vector_names():
    assert (NGSPICE.voltage_key("xm", "w"), NGSPICE.current_key("V1")) == ("v(xm.w)", "i(v1)")
    assert (VACASK.voltage_key("xm", "w"), VACASK.current_key("v1")) == ("xm:w", "v1:flow(br)")


@pytest.mark.parametrize("sim", SIMS, ids=lambda s: s.name)
def test_run_failure_carries_the_simulators_message(sim):
    bad = {"ngspice": "bad\nV1 a 0 1\nQ1 a b c nomodel\n.op\n.end\n",
           "vacask": "bad\nground 0\nq1 (a 0) nomodel\ncontrol\n  analysis op1 op\nendc\n"}[sim.name]
    with pytest.raises(SimulationError) as exc:
        sim.run(bad)
    assert str(exc.value).startswith(f"{sim.label}:") and len(str(exc.value)) > len(sim.label) + 2


def test_timings_are_reported():
    spec, g, v = read_4x4("0t1r")
    t: dict = {}
    VACASK.run(VACASK.emit(spec, g, v), timings=t)
    assert set(t) == {"write", "sim", "parse"} and all(x >= 0 for x in t.values())


@pytest.mark.parametrize("emit", [ngspice_netlist_from_elements, vacask_netlist_from_elements])
def test_emitters_reject_an_unknown_element_kind(emit):
    spec, g, v = read_4x4("0t1r")
    els = tile_elements(spec, g, v) + [Element("X", "mem1", ("wl_0_0", "bl_0_0"))]
    with pytest.raises(ValueError, match=r"unknown element kind 'X' \(element 'mem1'\)"):
        emit(spec, els)


def test_simulators_module_imports_without_torch():
    code = ("import sys, spicecross.spice.simulators as s; "
            "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules; "
            "print(','.join(s.SIMULATOR_NAMES))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ngspice,vacask"


def test_simulator_is_abstract():
    with pytest.raises(TypeError):
        Simulator("x", ".x", "x")


def test_every_simulator_has_a_device_transient_runner():
    from spicecross.devices import TRANSIENT_RUNNERS

    assert tuple(TRANSIENT_RUNNERS) == SIMULATOR_NAMES


def test_one_simulator_process_runs_single_threaded(tmp_path):
    """VACASK's own report of its CPUs under the command line and environment every run uses
    (workers × simulator threads ≤ cores)."""
    from spicecross.spice.executables import SIMULATOR_THREADS, simulator_env

    spec, g, v = read_4x4("0t1r")
    deck = tmp_path / "deck.sim"
    deck.write_text(VACASK.emit(spec, g, v))
    env = {**simulator_env(), "OMP_NUM_THREADS": "2"}   # the command line alone pins VACASK
    out = subprocess.run(VACASK._command(VACASK.executable(), deck, tmp_path), cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=60).stdout
    assert SIMULATOR_THREADS == 1
    assert re.search(r"CPUs used:\s+1\b", out) and re.search(r"OpenBLAS CPUs:\s+1\b", out), out
    assert simulator_env()["OMP_NUM_THREADS"] == "1"
