"""The fast read path of analog layers against a straightforward computation.

The layers read convolutions in pieces of the batch, in code units (DAC codes in, ADC codes
out, the converters' constant factors multiplied into the read matrices: float32 results differ
from the read in amperes in the last bits, see tests/test_inference_code_units.py), converting
each row tile's output in place as soon as it is read, and reduce ADC ranges block by block
(``spicecross.nn.analog``); the reference here unfolds the input (im2col), reads every row tile
with ``ProgrammedArray.row_tile_currents`` (float64 numpy, in A), converts with the ``ADC`` class
(not in place) and sums, as the documentation of ``spicecross.nn.analog`` describes.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import small_analog_config

from spicecross.nn import analog, analog_base
from spicecross.nn.analog import AnalogConv2d, AnalogLinear, patch_model
from spicecross.circuit.tile import TileSpec
from spicecross.surrogate import transfer as tr
from spicecross.surrogate.array import ProgrammedArray
from spicecross.surrogate.transfer import transfer_matrices
from spicecross.surrogate.converters import ADC, DAC


def _conv_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=True), nn.ReLU(),
                         nn.Conv2d(6, 5, 3, padding=1, stride=2, bias=False), nn.Flatten(),
                         nn.Linear(5 * 4 * 4, 7))


_config = small_analog_config


def _reference_dac(x: torch.Tensor, layer) -> list[tuple[float, torch.Tensor]]:
    """Word-line voltages (V) per read phase, written out: x⁺ and x⁻ for signed inputs read in
    two phases, one signed read for ``bipolar``; no rounding for an ideal DAC."""
    cal, cfg = layer.calibration, layer.config
    bipolar = cal.signed and cfg.read_scheme == "bipolar"

    def volts(u):
        u = (u / cal.x_fs).clamp(-1.0 if bipolar else 0.0, 1.0)
        if cfg.dac_bits is not None:
            steps = 2 ** (cfg.dac_bits - 1) - 1 if bipolar else 2 ** cfg.dac_bits - 1
            u = torch.round(u * steps) / steps
        return u * cfg.read_voltage_v
    if not cal.signed or bipolar:
        return [(1.0, volts(x))]
    return [(1.0, volts(x.clamp(min=0))), (-1.0, volts((-x).clamp(min=0)))]


def _reference_read(layer, x: torch.Tensor) -> torch.Tensor:
    """Layer output (float64) by im2col, per-row-tile reads, the ADC class, sums, scaling."""
    arr, cal = layer.array, layer.calibration
    conv = isinstance(layer, AnalogConv2d)
    total = None
    for sign, v in _reference_dac(x.double(), layer):
        if conv:
            cols = F.unfold(v, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
            vmat = cols.transpose(1, 2).reshape(-1, cols.shape[1]).numpy()      # (N·L, K)
        else:
            vmat = v.reshape(-1, layer.in_features).numpy()
        phase = 0.0
        for r in range(arr.n_row_tiles):
            i = torch.from_numpy(arr.row_tile_currents(vmat[:, arr.tile_rows_of(r)], r))
            if layer.config.adc_bits is not None:
                i = ADC(layer.config.adc_bits, cal.adc_range_a[r].double())(i)
            phase = phase + i
        total = sign * phase if total is None else total + sign * phase
    y = total * (arr.weight_units_per_a(cal.x_fs) * cal.gain)
    if conv:
        n, _, h, w = x.shape
        ho, wo = layer._output_size(h, w)
        y = y.reshape(n, ho * wo, layer.c_out).transpose(1, 2).reshape(n, layer.c_out, ho, wo)
        return y + (layer.bias.double().view(1, -1, 1, 1) if layer.bias is not None else 0.0)
    return y + (layer.bias.double() if layer.bias is not None else 0.0)


@pytest.mark.parametrize("kw", [dict(), dict(adc_bits=None), dict(cell="1t1r", mode="polynomial"),
                                dict(dac_bits=None), dict(read_scheme="bipolar"),
                                dict(cell="1t1r", mode="polynomial", read_scheme="bipolar")],
                         ids=["0t1r-adc6", "ideal-adc", "1t1r-polynomial", "ideal-dac", "bipolar",
                              "1t1r-polynomial-bipolar"])
def test_layers_equal_the_straightforward_computation(kw):
    """Every layer of a small CNN (signed first input: two phases, or one signed read for
    ``bipolar``; 2–5 row tiles per layer), in float64, equals the reference to 1e-9 of its
    largest output."""
    torch.manual_seed(1)
    x = torch.randn(9, 3, 8, 8, dtype=torch.float64)
    pm = patch_model(_conv_net().double(), _config(**kw), x)
    layers = [m for m in pm.modules() if isinstance(m, (AnalogConv2d, AnalogLinear))]
    assert [m.n_row_tiles for m in layers] == [2, 4, 5]
    assert layers[0].calibration.signed and not layers[1].calibration.signed
    h = x
    with torch.no_grad():
        for m in pm:
            if isinstance(m, (AnalogConv2d, AnalogLinear)):
                got, want = m(h), _reference_read(m, h)
                assert got.shape == want.shape
                err = float((got - want).abs().max() / want.abs().max())
                assert err <= 1e-9, (type(m).__name__, err)
            h = m(h)


@pytest.mark.parametrize("kw", [dict(), dict(cell="1t1r", mode="polynomial")], ids=["0t1r", "1t1r"])
def test_adc_ranges_are_the_largest_current_of_every_phase(kw):
    """The block-by-block ADC ranges equal the largest |current| per (row tile, column) over
    both read phases of the calibration batch, computed from the full list of currents."""
    torch.manual_seed(2)
    x = torch.randn(6, 3, 8, 8)
    pm = patch_model(_conv_net(), _config(**kw), x)
    layer = pm[0]
    phases = layer._dac(x, layer.calibration)
    assert len(phases) == 2
    want = torch.stack([torch.stack([cur[r].abs().amax(dim=(0, 2, 3)) for _, v in phases
                                     for cur in [layer._tile_currents(v)]]).amax(0)
                        for r in range(layer.n_row_tiles)])
    assert torch.equal(layer.calibration.adc_range_a, want.float())


def test_reads_in_pieces_equal_one_piece(monkeypatch):
    """A batch read in pieces of a few images, in turn or by several single-threaded workers,
    gives every image the bits it gets in one piece (float32, the default dtype of inference)."""
    torch.manual_seed(3)
    x = torch.randn(37, 3, 8, 8)
    pm = patch_model(_conv_net(), _config(), x[:8])
    layer = pm[0]
    monkeypatch.setattr(analog, "READ_CHUNK_BYTES", 1 << 40)
    assert layer._chunk_bounds(x) == [0, 37]
    with torch.no_grad():
        whole = pm(x)
    monkeypatch.setattr(analog, "READ_CHUNK_BYTES", 1)
    bounds = layer._chunk_bounds(x)
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == 37 and len(bounds) > 3
    assert sizes.min() >= analog.MIN_CHUNK_IMAGES and sizes.max() - sizes.min() <= 1
    for workers in (1, 3):                                 # pieces read in turn, by 3 workers
        monkeypatch.setattr(analog_base, "torch_threads", lambda: workers)
        with torch.no_grad():
            pieces = pm(x)
        assert torch.equal(whole, pieces)


def test_dac_in_place_equals_the_dac():
    """``DAC.voltages_`` overwrites its argument with exactly what ``DAC.__call__`` returns."""
    torch.manual_seed(4)
    x = torch.randn(1000) * 3
    for signed in (True, False):
        for bits in (None, 1, 4, 8):
            dac = DAC(0.2, bits)
            want = dac(x, 2.5, signed)
            u = x / 2.5
            got = dac.voltages_(u, signed)
            assert got.data_ptr() == u.data_ptr()
            assert torch.equal(got, want)
            assert float(want.abs().max()) == pytest.approx(0.2) and (signed or float(want.min()) >= 0)


# ---------------------------------------------------------------- transfer matrices of used bit lines
def _tiles_with_unused_columns(n: int, used: int, seed: int) -> torch.Tensor:
    """Three n×n tiles: ``used`` columns of random cells, the rest at one baseline conductance;
    the third tile has one cell off the baseline (no uniform remainder)."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.full((3, n, n), 4e-4, dtype=torch.float64)
    g[:, :, :used] = 4e-4 + 1e-2 * torch.rand(3, n, used, generator=gen, dtype=torch.float64)
    g[2, n // 2, -1] = 1e-3
    return g


@pytest.mark.parametrize("n, used, rows", [(16, 5, 16), (32, 12, 20), (64, 16, 64), (64, 10, 64)])
def test_transfer_of_used_bit_lines_equals_the_full_transfer(n, used, rows):
    """T of the first ``used`` bit lines, with the uniform rest attached as one port matrix,
    equals those rows of the full nested-dissection T to 1e-12 (also for tile heights that
    need padding, and for a tile whose rest is not uniform; driver and sense resistances
    distinguish the first column and the last row)."""
    spec = TileSpec(rows=rows, cols=n, r_wire_wl_ohm=0.1, r_wire_bl_ohm=0.2, r_driver_ohm=5.0,
                    r_sense_ohm=3.0)
    g = _tiles_with_unused_columns(n, used, seed=n)[:, :rows]
    full = transfer_matrices(spec, g, cache=False)
    tr._REST_PORTS.clear()
    part = transfer_matrices(spec, g, n_cols=used, cache=False)
    assert part.shape == (3, used, rows)
    kept = len(tr._REST_PORTS)
    assert kept >= 1
    again = transfer_matrices(spec, g[:2], n_cols=used, cache=False)
    assert len(tr._REST_PORTS) == kept and torch.equal(again, part[:2])   # built once
    assert float((part - full[:, :used]).abs().max() / full.abs().max()) <= 1e-12


def test_transfer_n_cols_out_of_range_is_refused():
    spec = TileSpec.uniform_wires(8, 8, 0.1)
    g = torch.full((8, 8), 1e-3, dtype=torch.float64)
    for bad in (0, 9, 2.5, True):
        with pytest.raises(ValueError, match="n_cols"):
            transfer_matrices(spec, g, n_cols=bad)


def test_array_reads_only_used_bit_lines_and_matches_full_t():
    """A layer of 10 outputs on 32×32 tiles: its read matrices equal the differences of the
    full per-array transfer matrices (no NaN of an unread bit line leaks into them)."""
    torch.manual_seed(5)
    w = torch.randn(40, 10, dtype=torch.float64).numpy()
    cfg = _config(tile_rows=32, tile_cols=32)
    arr = ProgrammedArray(w, cfg)
    t = transfer_matrices(cfg.tile_spec().for_solvers(),
                          torch.as_tensor(arr.cell_conductances()), cache=False)
    want = (t[0] - t[1])[:, 0, :10, :].transpose(-1, -2)               # (nr, R, 10)
    assert torch.isfinite(arr.readout64).all()
    assert float((arr.readout64 - want).abs().max() / want.abs().max()) <= 1e-12


def _squares_in_child() -> list[int]:
    from spicecross.threads import map_single_threaded

    return map_single_threaded(lambda i: i * i, range(5), 2)


def test_single_threaded_workers_nest_and_survive_a_fork():
    """map_single_threaded: every call on one torch thread, results in order; a call from one
    of the pool's own workers runs in that worker (it would otherwise wait for itself), and a
    forked child gets a pool of its own (the parent's threads do not exist there)."""
    import multiprocessing

    from spicecross.threads import map_single_threaded

    nested = map_single_threaded(
        lambda i: map_single_threaded(lambda j: (i, j, torch.get_num_threads()), range(3), 2),
        range(4), 2)
    assert nested == [[(i, j, 1) for j in range(3)] for i in range(4)]
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply_async(_squares_in_child).get(timeout=60) == [0, 1, 4, 9, 16]


def test_fork_join_splits_where_it_stands_without_deadlock():
    """fork_join from the main thread and, nested three deep, from the pool's own busy
    workers: results in order, every call on one torch thread, the second half run by a free
    worker when one exists and by the caller otherwise (no thread waits for a call that has
    not started, so nothing deadlocks on 2 workers); one torch thread: both halves here."""
    import threading

    from spicecross.threads import fork_join, limited_threads, map_single_threaded

    seen = []

    def leaf(i):
        seen.append(threading.current_thread().name)
        return i, torch.get_num_threads()

    def tree(i, depth):
        if depth == 0:
            return leaf(i)
        return fork_join(lambda: tree(2 * i, depth - 1), lambda: tree(2 * i + 1, depth - 1))

    with limited_threads(1):
        assert fork_join(lambda: leaf(0), lambda: leaf(1)) == ((0, 1), (1, 1))
    assert set(seen) == {threading.current_thread().name}
    got = map_single_threaded(lambda i: tree(i, 3), range(4), 2)
    flat = []

    def walk(t):
        if isinstance(t[0], tuple):
            walk(t[0])
            walk(t[1])
        else:
            flat.append(t)
    for t in got:
        walk(t)
    assert flat == [(i, 1) for i in range(32)]
    assert any(name.startswith("spicecross-worker") for name in seen)


def test_offering_to_pool_runs_what_no_worker_takes():
    """Inside offering_to_pool, map_single_threaded from a thread on one torch thread offers its
    items to the pool: with both workers blocked the caller runs every item itself, in order;
    with the workers free they take some; results in order, every item on one torch thread."""
    import threading

    from spicecross.threads import (_single_thread_pool, limited_threads, map_single_threaded,
                                    offering_to_pool)

    me = threading.current_thread().name

    def item(i):
        return i, threading.current_thread().name, torch.get_num_threads()

    pool = _single_thread_pool(2, __import__("os").getpid())
    gate = threading.Event()
    blockers = [pool.submit(gate.wait) for _ in range(2)]
    try:
        with limited_threads(1), offering_to_pool(2):
            got = map_single_threaded(item, range(6), 1)
        assert [g[0] for g in got] == list(range(6))
        assert {g[1] for g in got} == {me} and {g[2] for g in got} == {1}
    finally:
        gate.set()
        for b in blockers:
            b.result()
    names = set()
    for _ in range(20):                   # free workers: some item lands on one of them
        def slow(i):
            __import__("time").sleep(0.01)
            return item(i)
        with limited_threads(1), offering_to_pool(2):
            got = map_single_threaded(slow, range(6), 1)
        assert [g[0] for g in got] == list(range(6)) and {g[2] for g in got} == {1}
        names |= {g[1] for g in got}
        if any(n.startswith("spicecross-worker") for n in names):
            break
    assert any(n.startswith("spicecross-worker") for n in names)
    with limited_threads(1):                                    # outside the block: inline
        assert {g[1] for g in map_single_threaded(item, range(3), 1)} == {me}


def test_pool_workers_stay_on_one_thread_after_the_caller_restores_its_count():
    """torch sets a thread's OpenMP count up lazily, to the count any thread set last: a worker
    that only called set_num_threads(1) went back to 2 threads at its first large operation
    once the caller had restored its own 2 (seen in the full suite). Every worker of a new
    pool stays on one thread through such operations."""
    import os
    import threading

    from spicecross.threads import _single_thread_pool, limited_threads

    if torch.get_num_threads() < 2:
        pytest.skip("needs a process started with 2 or more torch threads")
    pool = _single_thread_pool(3, os.getpid())
    with limited_threads(1):             # the caller lowers, then restores: the last set is ≥ 2
        pass
    barrier = threading.Barrier(3)

    def work():
        barrier.wait(timeout=30)         # one task per worker
        torch.ones(200_000).sum()
        torch.ones(256, 256) @ torch.ones(256, 256)
        return torch.get_num_threads()

    assert [f.result() for f in [pool.submit(work) for _ in range(3)]] == [1, 1, 1]
