"""Many reads of one programmed tile in one simulator run (a sweep point per input vector)
against one ``.op`` per vector, for both simulators and both cell types."""
import numpy as np
import pytest

from spicecross.circuit.tile import TileSpec
from spicecross.spice.simulators import get_simulator
from spicecross.spice.solve import (ReadsResult, solve_many_reads, solve_reads, solve_reads_text,
                                    solve_tile)

ROWS, COLS = 6, 5


def tile(cell, seed=0):
    spec = TileSpec.uniform_wires(ROWS, COLS, 2.5, cell=cell, r_driver_ohm=1.0, r_sense_ohm=2.0)
    rng = np.random.default_rng(seed)
    g = rng.uniform(4e-4, 1e-2, (ROWS, COLS)) if cell == "1t1r" else rng.uniform(1e-6, 1e-4, (ROWS, COLS))
    v = rng.uniform(-0.2, 0.2, (7, ROWS))
    v[0] = 0.0            # an all-zero vector
    v[1, :3] = 0.0        # zeros among non-zero entries
    v[2] = -np.abs(v[2])  # all negative
    return spec, g, v


#: The simulators' absolute current tolerance (A): what "no current" means in a solve.
ABSTOL_A = 1e-15


def assert_equal_per_vector(batched, reference, rel=1e-9, inputs=None):
    """Each vector's currents equal the reference to ``rel`` of that vector's largest current;
    the reads of an all-zero input vector (rows of ``inputs``, V) are no current at all, within
    the simulators' abstol (the sub-fA residue of a solve depends on the matrix's ordering:
    one ``.op`` of a 1T1R tile with one gate source per row leaves 7e-19 A, the reads deck,
    whose selectors have gate sources of their own, 0)."""
    live = (np.ones(len(reference), bool) if inputs is None
            else np.abs(np.atleast_2d(inputs)).max(axis=1) > 0)
    scale = np.maximum(np.abs(reference[live]).max(axis=1), 1e-12)
    err = np.abs(batched[live] - reference[live]).max(axis=1) / scale
    assert np.all(err <= rel), err
    assert np.abs(batched[~live]).max(initial=0.0) <= ABSTOL_A
    assert np.abs(reference[~live]).max(initial=0.0) <= ABSTOL_A


@pytest.mark.parametrize("cell", ["0t1r", "1t1r"])
@pytest.mark.parametrize("backend", ["ngspice", "vacask"])
def test_batched_reads_equal_one_op_per_vector(backend, cell):
    spec, g, v = tile(cell)
    res = solve_reads(spec, g, v, backend=backend, cache_dir=None, chunk=4)   # chunks of 4 + 3
    assert res.ok, res.error
    assert res.currents_a.shape == (len(v), COLS)
    assert len(res.netlist_hashes) == 2 and res.simulator == backend and not res.cached
    ref = []
    for vec in v:
        one = solve_tile(spec, g, vec, backend=backend, cache_dir=None)
        assert one.ok, one.error
        ref.append(one.sense_currents_a)
    assert_equal_per_vector(res.currents_a, np.array(ref), inputs=v)
    assert np.abs(res.currents_a[2]).max() > 0 and np.all(res.currents_a[2] <= 0)


@pytest.mark.parametrize("backend", ["ngspice", "vacask"])
def test_single_vector_and_simulator_methods(backend):
    spec, g, v = tile("0t1r", seed=1)
    sim = get_simulator(backend)
    cur = sim.read_tiles(sim.emit_reads(spec, g, v[3]), 1)   # one (rows,) vector
    ref = sim.read_tile(sim.emit(spec, g, v[3]))[0]
    assert cur.shape == (1, COLS)
    assert_equal_per_vector(cur, ref[None, :])


def test_cache_hit_on_second_call(tmp_path):
    spec, g, v = tile("0t1r", seed=2)
    first = solve_reads(spec, g, v, backend="vacask", cache_dir=tmp_path)
    second = solve_reads(spec, g, v, backend="vacask", cache_dir=tmp_path)
    assert first.ok and not first.cached and first.seconds > 0
    assert second.ok and second.cached and second.seconds == 0.0
    np.testing.assert_array_equal(first.currents_a, second.currents_a)
    assert second.netlist_hashes == first.netlist_hashes


@pytest.mark.parametrize("backend,bad", [("ngspice", "Xbroken in_0 0 no_such_subckt"),
                                         ("vacask", "xbroken (in_0 0) no_such_model")])
def test_failing_netlist_reports_simulator_words(backend, bad, tmp_path):
    spec, g, v = tile("0t1r")
    text = get_simulator(backend).emit_reads(spec, g, v)
    lines = text.splitlines()
    lines.insert(6, bad)
    res = solve_reads_text("\n".join(lines) + "\n", len(v), backend, cache_dir=tmp_path)
    assert isinstance(res, ReadsResult) and not res.ok
    assert res.error.startswith("ngspice:" if backend == "ngspice" else "VACASK:")
    assert len(res.error) > len("VACASK: ") and np.all(np.isnan(res.currents_a))
    assert not any(tmp_path.rglob("*.npz"))   # failures are not cached


def test_solve_many_reads_matches_solve_reads():
    jobs = [tile("0t1r", seed=3), tile("1t1r", seed=4)]
    many = solve_many_reads(jobs, backend="vacask", n_jobs=2, parallel_backend="threading",
                            cache_dir=None, progress=False, chunk=3)
    assert [r.ok for r in many] == [True, True]
    for (spec, g, v), res in zip(jobs, many):
        assert len(res.netlist_hashes) == 3
        np.testing.assert_array_equal(res.currents_a,
                                      solve_reads(spec, g, v, backend="vacask", cache_dir=None,
                                                  chunk=3).currents_a)
    empty = solve_many_reads([(jobs[0][0], jobs[0][1], np.zeros((0, ROWS)))], n_jobs=1,
                             cache_dir=None, progress=False)
    assert empty[0].ok and empty[0].currents_a.shape == (0, COLS)


@pytest.mark.parametrize("backend", ["ngspice", "vacask"])
def test_reads_decks_save_only_the_sense_currents(backend):
    spec, g, v = tile("1t1r", seed=5)
    sim = get_simulator(backend)
    plots = sim.run(sim.emit_reads(spec, g, v))
    sense = {sim.current_key(f"vsense{j}") for j in range(COLS)}
    index = {"ngspice": "v(v-sweep)", "vacask": "read_k"}[backend]
    assert set(plots[0].data) == sense | {index}


def test_vacask_continues_from_the_previous_vector_only_for_nonlinear_tiles():
    sim = get_simulator("vacask")
    for cell, flag in (("0t1r", "continuation=0"), ("1t1r", "continuation=1")):
        spec, g, v = tile(cell)
        assert flag in sim.emit_reads(spec, g, v), cell


@pytest.mark.parametrize("cell", ["0t1r", "1t1r"])
def test_warm_started_sweep_of_a_larger_tile_equals_one_op_per_vector(cell):
    """16×16, 20 non-negative vectors (the two-phase reads) with large jumps between
    neighbours: the all-zero vector after full scale, single rows, a constant vector."""
    n = 16
    spec = TileSpec.uniform_wires(n, n, 2.5, cell=cell)
    rng = np.random.default_rng(7)
    g = rng.uniform(4e-4, 1e-2, (n, n)) if cell == "1t1r" else rng.uniform(1e-6, 1e-4, (n, n))
    v = rng.uniform(0.0, 0.2, (20, n))
    v[rng.random(v.shape) < 0.3] = 0.0
    v[4], v[5], v[9], v[10] = 0.2, 0.0, 0.0, 0.2
    v[12] = 0.0
    v[12, 3] = 0.2
    res = solve_reads(spec, g, v, backend="vacask", cache_dir=None)
    assert res.ok, res.error
    ref = np.array([solve_tile(spec, g, vec, backend="vacask", cache_dir=None).sense_currents_a
                    for vec in v])
    live = np.abs(v).max(axis=1) > 0
    assert_equal_per_vector(res.currents_a[live], ref[live])
    # the all-zero vectors: no current beyond the simulators' abstol (1e-15 A)
    assert np.abs(res.currents_a[~live]).max() <= 1e-15 and np.abs(res.currents_a[4]).min() > 0


def test_superposed_reads_of_a_linear_tile_equal_one_op_per_vector(tmp_path):
    """More vectors than rows on a 0T1R tile: the simulator solves the 6 unit vectors and the
    12 reads follow by superposition; 1T1R and short batches are solved as they are."""
    spec, g, v = tile("0t1r", seed=6)
    v = np.vstack([v, np.abs(v[1:6])])             # 12 vectors > 6 rows, signed and not
    spec1, g1, v1 = tile("1t1r", seed=6)
    jobs = [(spec, g, v), (spec1, g1, np.abs(v1)), (spec, g, v[:ROWS])]
    res = solve_many_reads(jobs, backend="vacask", n_jobs=1, cache_dir=tmp_path, progress=False,
                           superpose=True)
    assert [r.superposed for r in res] == [True, False, False] and all(r.ok for r in res)
    assert res[0].currents_a.shape == (len(v), COLS)
    for (s, gg, vv), r in zip(jobs[::2], res[::2]):
        ref = np.array([solve_tile(s, gg, x, backend="vacask", cache_dir=None).sense_currents_a
                        for x in vv])
        assert_equal_per_vector(r.currents_a, ref)
    np.testing.assert_array_equal(res[1].currents_a,
                                  solve_reads(*jobs[1], backend="vacask", cache_dir=None).currents_a)
    # other vectors on the same array: the unit-vector solve is a cache hit
    again = solve_many_reads([(spec, g, -v[::-1])], backend="vacask", n_jobs=1,
                             cache_dir=tmp_path, progress=False, superpose=True)[0]
    assert again.superposed and again.cached and again.netlist_hashes == res[0].netlist_hashes
    np.testing.assert_allclose(again.currents_a, -res[0].currents_a[::-1], rtol=0, atol=1e-18)


def test_own_gate_sources_split_only_nodes_held_by_a_source_and_read_the_same():
    """Each selector of a reads deck has its own gate source at the gate voltage; the reads
    equal those of the deck with one gate source per row (a MOSFET gate draws no DC current)."""
    from spicecross.circuit.reads_netlist import own_gate_sources, vacask_reads_netlist
    from spicecross.circuit.tile import Element

    n = 12
    spec = TileSpec.uniform_wires(n, n, 2.5, cell="1t1r")
    rng = np.random.default_rng(11)
    g = rng.uniform(4e-4, 1e-2, (n, n))
    v = rng.uniform(0.0, 0.2, (6, n))
    own = vacask_reads_netlist(spec, g, v)
    shared = vacask_reads_netlist(spec, g, v, own_gates=False)
    assert own.count("vsource dc=1.8") == n * n and shared.count("vsource dc=1.8") == n
    assert "ms0_0 (m_0_0 g_0_s0_0 bl_0_0 0)" in own and "ms0_0 (m_0_0 g_0 bl_0_0 0)" in shared
    sim = get_simulator("vacask")
    assert_equal_per_vector(sim.read_tiles(own, len(v)), sim.read_tiles(shared, len(v)))
    # a gate node that anything but selector gates touches (here a resistor) keeps its source
    els = [Element("V", "gate0", ("g_0", "0"), 1.8), Element("V", "gate1", ("g_1", "0"), 1.8),
           Element("M", "s0", ("m0", "g_0", "b0", "0")),
           Element("M", "s1", ("m1", "g_1", "b1", "0")), Element("R", "leak", ("g_1", "0"), 1e9)]
    out = own_gate_sources(els)
    assert [e.name for e in out] == ["gate1", "gate0_s0", "s0", "s1", "leak"]
    assert out[2].nodes == ("m0", "g_0_s0", "b0", "0") and out[3].nodes == els[3].nodes


def test_repeated_vectors_are_solved_once():
    """A vector given more than once reads the same currents; the deck holds it once."""
    from spicecross.spice.solve import distinct_rows

    spec, g, v = tile("1t1r", seed=8)
    v = np.abs(v)
    twice = np.vstack([v, v[::-1], v[2:3]])
    d, index = distinct_rows(twice)
    np.testing.assert_array_equal(d, v)
    np.testing.assert_array_equal(d[index], twice)
    once = solve_reads(spec, g, v, backend="vacask", cache_dir=None)
    res = solve_reads(spec, g, twice, backend="vacask", cache_dir=None)
    assert res.ok and res.currents_a.shape == (len(twice), COLS)
    assert res.netlist_hashes == once.netlist_hashes      # the same deck: the distinct vectors
    np.testing.assert_array_equal(res.currents_a, np.vstack([once.currents_a,
                                                            once.currents_a[::-1],
                                                            once.currents_a[2:3]]))
    assert distinct_rows(np.zeros((0, ROWS)))[0].shape == (0, ROWS)
