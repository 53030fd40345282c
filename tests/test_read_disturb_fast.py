"""The fast read-disturb path (``infer --read-disturb``) against the straightforward one it
replaced: candidate reads instead of every unfolded word-line vector, transfer matrices of the
driven word lines only (by the bit-line sweep), segments dosed by halves."""
import warnings

import numpy as np
import pytest
import torch
from conftest import programmed

from spicecross.calibration.network_check import _word_line_vectors
from spicecross.circuit.tile import TileSpec
from spicecross.devices.vteam import get_parameter_set
from spicecross.surrogate import transfer_cache
from spicecross.surrogate.dynamic import cell_voltage_transfer, cell_voltages
from spicecross.surrogate.read_disturb_bounds import inert_reads
from spicecross.surrogate.read_disturb_transfer import TransferCache
from spicecross.surrogate.read_disturb_update import ReadPulse, advance_arrays

P = get_parameter_set("pt_hf_ti")


def _network(v_read, cell="0t1r", limit=30, read_scheme="two-phase"):
    from spicecross.nn.analog import patch_model
    from spicecross.nn.inference import load_eval_data, load_network
    from spicecross.surrogate.config import AnalogConfig

    cfg = AnalogConfig.build(tile_rows=16, tile_cols=16, v_read_v=v_read, calibration_images=32,
                             cell=cell, read_scheme=read_scheme)
    data = load_eval_data("mnist", None, limit, cfg.calibration_images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # reads above threshold are the point
        model = patch_model(load_network("mnist"), cfg, data.calibration)
    return model, data


def _row_tile_reads(layer, vecs, v_bulk):
    """Per row tile the live reads (the per-row-tile passive bound) of ``vecs``."""
    arr = layer.array
    p = layer.config.device_params()
    out = []
    for r in range(arr.n_row_tiles):
        part = vecs[:, arr.tile_rows_of(r)]
        out.append(part[~inert_reads(part, p, v_bulk)])
    return out


@pytest.mark.parametrize("v_read, scheme, cell", [(0.7, "two-phase", "0t1r"),
                                                  (1.0, "two-phase", "0t1r"),
                                                  (0.7, "bipolar", "0t1r"),
                                                  (0.7, "two-phase", "1t1r")])
def test_candidate_reads_are_the_live_reads_of_every_vector(v_read, scheme, cell):
    """Every row tile gets bitwise the same live reads, in the same order, as from all the
    unfolded word-line vectors (both read phases of the first layer or its negative
    voltages, convolutions with padding, the linear layer; 1T1R: the bulk voltage counted)."""
    from spicecross.nn.analog import analog_layers
    from spicecross.nn.read_disturb import _infer_chunk, candidate_reads

    model, data = _network(v_read, cell, limit=12, read_scheme=scheme)
    _, inputs = _infer_chunk(model, data.test.tensors[0])
    live_total = n_every = n_cand = 0
    for name, layer in analog_layers(model):
        every = _word_line_vectors(layer, inputs[name])
        v_bulk = layer.array.spec.selector.v_bulk_v if cell == "1t1r" else 0.0
        M, cand = candidate_reads(layer, inputs[name], v_bulk)
        assert M == len(every) and cand.dtype == np.float64
        n_every, n_cand = n_every + M, n_cand + len(cand)
        for want, got in zip(_row_tile_reads(layer, every, v_bulk),
                             _row_tile_reads(layer, cand, v_bulk)):
            assert np.array_equal(want, got), name
            live_total += len(got)
    assert live_total > 100 and n_cand < 0.5 * n_every   # most reads are never unfolded


@pytest.mark.parametrize("spec", [TileSpec(rows=32, cols=24),
                                  TileSpec(rows=12, cols=7, r_wire_wl_ohm=1.0, r_wire_bl_ohm=2.0,
                                           r_driver_ohm=3.0, r_sense_ohm=5.0),
                                  TileSpec(rows=1, cols=40), TileSpec(rows=40, cols=1),
                                  # word-line entries of M⁻¹ decaying by ≈ 1e-2 per column
                                  TileSpec(rows=9, cols=64, r_wire_wl_ohm=1e5)])
def test_transfer_by_the_bit_line_sweep_is_the_nodal_solve(spec):
    """cell_voltage_transfer (word lines inverted in closed form and eliminated, then the bit
    lines swept) against the dense nodal solve and against cell_voltages' block sweep for
    random inputs; only the first ``inputs`` columns when asked; open cells included."""
    R, C = spec.rows, spec.cols
    rng = np.random.default_rng(R * C)
    g = torch.as_tensor(rng.uniform(1e-6, 2e-4, (3, R, C)))
    g[0, 0, 0] = 0.0                                                   # an open cell
    t = cell_voltage_transfer(spec, g, method="block")
    assert t.shape == (3, R, C, R)
    assert torch.allclose(t, cell_voltage_transfer(spec, g, method="dense"), rtol=0, atol=1e-12)
    v = torch.as_tensor(rng.uniform(-1.0, 1.0, (3, R)))
    ref = cell_voltages(spec, g, v, method="block")[0]
    assert torch.allclose(torch.einsum("bijk,bk->bij", t, v), ref, rtol=0, atol=1e-12)
    k = max(1, R // 3)
    assert torch.allclose(cell_voltage_transfer(spec, g, inputs=k), t[..., :k], rtol=0,
                          atol=1e-13)
    with pytest.raises(ValueError, match=str(R + 1)):
        cell_voltage_transfer(spec, g, inputs=R + 1)


@pytest.mark.parametrize("cell", ["0t1r", "1t1r"])
def test_reads_on_the_first_word_lines_equal_zero_padded_reads(cell):
    """Reads on the first k word lines (the row tile's unused rows at 0 V) give the states of
    the same reads zero-padded to every row (the previous form), also across calls sharing
    a transfer cache; and halved dosing equals dosing every segment whole."""
    spec = TileSpec(rows=16, cols=16, cell=cell)
    g = np.stack([programmed(16, 16, 11), programmed(16, 16, 12)])
    k = 9
    v = np.random.default_rng(5).uniform(0.0, 0.95, (600 if cell == "0t1r" else 40, k))
    pad = np.zeros((len(v), 16))
    pad[:, :k] = v
    pulse = ReadPulse(2e-4 if cell == "0t1r" else 3e-3)
    cache_a, cache_b = TransferCache(), TransferCache()
    ga, gb = g, g
    segments = 0
    for part in np.array_split(np.arange(len(v)), 2):         # two calls, one cache each
        ga, st_a = advance_arrays(spec, P, ga, v[part], pulse, cache=cache_a,
                                  split_min_reads=8)
        gb, st_b = advance_arrays(spec, P, gb, pad[part], pulse, cache=cache_b,
                                  split_min_reads=10 ** 9)
        assert st_a.segments == st_b.segments and st_a.transfer_builds == st_b.transfer_builds
        segments += st_a.segments
    assert np.abs(ga - g).max() > 1e-3 * np.abs(g).max()               # the reads disturb
    assert np.abs(ga - gb).max() <= 1e-12 * np.abs(g).max()
    assert segments > 2                                                # segments were split
    with pytest.raises(ValueError, match="17"):
        advance_arrays(spec, P, g, np.zeros((2, 17)), pulse)


def _reference_stream(model, test, pulse, chunk, dw_max=0.01):
    """The previous network path: every word-line vector unfolded, zero-padded to the tile's
    rows, segments dosed whole; the same chunking as disturb_network."""
    from spicecross.nn.analog import analog_layers
    from spicecross.nn.read_disturb import _infer_chunk

    x_all, _ = test.tensors
    caches = {}
    for _, layer in analog_layers(model):
        layer.array.g_dev = layer.array.g_dev.copy()
    for lo in range(0, len(x_all), chunk):
        _, inputs = _infer_chunk(model, x_all[lo:lo + chunk])
        for name, layer in analog_layers(model):
            arr, cfg = layer.array, layer.config
            R = cfg.tile_rows
            vecs = _word_line_vectors(layer, inputs[name])
            changed = False
            for r in range(arr.n_row_tiles):
                part = vecs[:, arr.tile_rows_of(r)]
                part = part[~inert_reads(part, cfg.device_params())]
                if not len(part):
                    continue
                v = np.zeros((len(part), R))
                v[:, :part.shape[1]] = part
                g = arr.g_dev[:, r].reshape(-1, R, cfg.tile_cols)
                cache = caches.setdefault((name, r), TransferCache())
                g_new, _ = advance_arrays(arr.spec, cfg.device_params(), g, v, pulse,
                                          dw_max=dw_max, cache=cache, split_min_reads=10 ** 9)
                if not np.array_equal(g_new, g):
                    arr.g_dev[:, r] = g_new.reshape(arr.g_dev[:, r].shape)
                    changed = True
            if changed:
                with transfer_cache.disabled():
                    arr._build_readout()


def test_network_stream_equals_the_previous_path():
    """disturb_network on the MNIST network (16×16 tiles, 1 V reads of 10 µs, 3 chunks)
    leaves every array within 1e-12 (relative) of the previous path's conductances, with the
    same chunk accuracies."""
    from spicecross.nn.analog import analog_layers
    from spicecross.nn.read_disturb import disturb_network

    pulse = ReadPulse(1e-5)
    fast, data = _network(1.0)
    res = disturb_network(fast, data.test, pulse, chunk=10)
    ref, _ = _network(1.0)
    _reference_stream(ref, data.test, pulse, chunk=10)
    moved = 0
    for (name, a), (_, b) in zip(analog_layers(fast), analog_layers(ref)):
        g0 = a.array.g_dev_programmed
        moved += int((a.array.g_dev != g0).sum())
        assert np.abs(a.array.g_dev - b.array.g_dev).max() <= 1e-12 * np.abs(g0).max(), name
    assert moved > 100 and res["chunks"][-1]["moved_share"] > 0.01
    x, y = data.test.tensors
    with torch.no_grad():
        assert torch.equal(fast(x).argmax(1), ref(x).argmax(1))


@pytest.mark.parametrize("moved_rows", [[0, 3], [5], [], list(range(20))])
def test_rebuild_from_the_last_sweep_is_a_build_from_scratch(moved_rows):
    """A rebuild that keeps the last build's word-line and Schur inverses below the lowest row
    whose conductances changed gives bitwise the transfer matrices (and state) of a build from
    scratch, for moves in the top rows, in one row, in none and in every row."""
    from spicecross.surrogate.cell_transfer import block_cell_voltage_transfer

    spec = TileSpec(rows=20, cols=12, r_wire_wl_ohm=0.5, r_wire_bl_ohm=0.3).for_solvers()
    rng = np.random.default_rng(7)
    g = torch.as_tensor(rng.uniform(1e-4, 1e-2, (2, 20, 12)))
    _, state = block_cell_voltage_transfer(spec, g, 5)
    g2 = g.clone()
    for r in moved_rows:
        g2[1, r] *= 1.0 + 0.1 * torch.as_tensor(rng.random(12))
    t_reused, st_reused = block_cell_voltage_transfer(spec, g2, 5, state)
    t_fresh, st_fresh = block_cell_voltage_transfer(spec, g2, 5)
    assert torch.equal(t_reused, t_fresh)
    assert torch.equal(st_reused.invs, st_fresh.invs) and torch.equal(st_reused.m_inv,
                                                                        st_fresh.m_inv)
    assert torch.allclose(t_fresh, cell_voltage_transfer(spec, g2, method="dense", inputs=5),
                          rtol=0, atol=1e-12)
    # the state holds no input: a rebuild driving another number of word lines keeps it too
    assert torch.equal(block_cell_voltage_transfer(spec, g2, 9, state)[0],
                       block_cell_voltage_transfer(spec, g2, 9)[0])


@pytest.mark.parametrize("cell", ["0t1r", "1t1r"])
def test_refresh_row_tiles_equals_a_full_rebuild(cell):
    """After some row tiles' conductances move, rebuilding only those row tiles' read matrices
    gives the full rebuild's (to rounding), leaves the others untouched, and hands the layer new
    tensors (its cached code-unit reads are keyed by them); bad row indices are refused."""
    from spicecross.nn.analog import analog_layers

    model, _ = _network(0.7, cell, limit=4)
    name, layer = list(analog_layers(model))[1]
    arr = layer.array
    assert arr.n_row_tiles >= 3
    old = arr.readout64
    rng = np.random.default_rng(3)
    moved = [0, arr.n_row_tiles - 1]
    for r in moved:
        arr.g_dev[:, r] *= 1 + 0.05 * rng.random(arr.g_dev[:, r].shape)
    arr.refresh_row_tiles(moved)
    part = arr.readout64
    assert part is not old
    arr._build_readout()
    full = arr.readout64
    assert float((part - full).abs().max() / full.abs().max()) <= 1e-13
    kept = [r for r in range(arr.n_row_tiles) if r not in moved]
    assert torch.equal(part[kept], old[kept])
    assert not torch.allclose(part[moved], old[moved])
    assert torch.equal(arr.readout, arr.read_terms[0][1])
    with pytest.raises(ValueError, match="row tiles must lie in"):
        arr.refresh_row_tiles([arr.n_row_tiles])


def test_disturbed_stream_does_not_depend_on_the_worker_count(monkeypatch):
    """Layers and row tiles are advanced on a pool of workers, and large candidate searches
    and row doses split in two (here every one of them): one worker and two leave bitwise the
    same conductances, accuracies and counts."""
    import spicecross.nn.analog_base as ab
    import spicecross.nn.read_disturb as rd
    import spicecross.surrogate.read_disturb_update as rdu
    from spicecross.nn.analog import analog_layers
    from spicecross.nn.read_disturb import disturb_network

    monkeypatch.setattr(rd, "FORK_MIN_READS", 1)
    monkeypatch.setattr(rdu, "FORK_MIN_VOLTAGES", 1)
    out = []
    for workers in (1, 2):
        monkeypatch.setattr(ab, "torch_threads", lambda w=workers: w)
        model, data = _network(0.8, limit=24)
        res = disturb_network(model, data.test, ReadPulse(1e-6), chunk=12)
        out.append((res, [layer.array.g_dev.copy() for _, layer in analog_layers(model)]))
    (r1, g1), (r2, g2) = out
    assert r1["stats"].rows_exact > 0 and r1["chunks"][-1]["moved_share"] > 0
    assert all(np.array_equal(a, b) for a, b in zip(g1, g2))
    assert r1["chunks"] == r2["chunks"] and r1["stats"] == r2["stats"]


def test_pipelined_stream_hands_back_an_update_error_and_leaves_nothing_running(monkeypatch):
    """With two workers the updates run beside the next chunk's inference: an error in one
    layer's update (here its second chunk) reaches the caller as that error, once no step of the
    stream runs any more (no thread left writing the arrays), and the hooks are removed."""
    import threading

    import spicecross.nn.analog_base as ab
    from spicecross.nn import read_disturb_steps as rds
    from spicecross.nn.analog import analog_layers
    from spicecross.nn.read_disturb import disturb_network

    monkeypatch.setattr(ab, "torch_threads", lambda: 2)
    model, data = _network(0.8, limit=36)
    name, target = list(analog_layers(model))[1]
    calls, running = [], []
    real = rds.LayerSteps.advance

    def advance(self, layer, r, v):
        running.append(threading.current_thread().name)
        try:
            if layer is target:
                calls.append(r)
                if len(calls) > 2:
                    raise RuntimeError(f"boom in {name}")
            return real(self, layer, r, v)
        finally:
            running.pop()

    monkeypatch.setattr(rds.LayerSteps, "advance", advance)
    with pytest.raises(RuntimeError, match=f"boom in {name}"):
        disturb_network(model, data.test, ReadPulse(1e-6), chunk=12)
    assert running == [] and len(calls) > 2
    assert all(not m._forward_hooks and not m._forward_pre_hooks
               for _, m in analog_layers(model))


@pytest.mark.parametrize("kernel, stride, padding, dilation", [((3, 3), (1, 1), (1, 1), (1, 1)),
                                                               ((5, 3), (2, 1), (2, 0), (1, 2)),
                                                               ((2, 2), (2, 2), (0, 1), (2, 1))])
def test_patch_extremes_and_patches_match_unfold(kernel, stride, padding, dilation):
    """The patch extremes (shifted views) and the gathered candidate patches equal what
    ``F.unfold`` gives, bitwise, for strides, dilations and zero padding the MNIST network does
    not use."""
    import types

    import torch.nn.functional as F

    from spicecross.nn.analog import AnalogConv2d
    from spicecross.nn.read_disturb import _patch_extremes, _patches

    layer = types.SimpleNamespace(kernel_size=kernel, stride=stride, padding=padding,
                                  dilation=dilation)
    layer._output_size = types.MethodType(AnalogConv2d._output_size, layer)
    v = torch.randn(3, 4, 11, 9)
    cols = F.unfold(v, kernel, dilation, padding, stride)          # (N, C·kh·kw, L)
    hi = _patch_extremes(v.amax(1, keepdim=True), layer, largest=True)
    lo = _patch_extremes(v.amin(1, keepdim=True), layer, largest=False)
    assert torch.equal(hi, cols.amax(1).reshape(-1)) and torch.equal(lo, cols.amin(1).reshape(-1))
    n_pos = cols.shape[2]
    idx = np.array([0, 5, n_pos + 2, 3 * n_pos - 1])
    want = cols.transpose(1, 2).reshape(-1, cols.shape[1])[torch.from_numpy(idx)]
    assert torch.equal(_patches(v, layer, idx, n_pos), want)


def _pinned_arrays(seed: int) -> np.ndarray:
    """Two 16×16 0T1R arrays with most cells at the OFF bound (R_off: state 1), as the MNIST
    layers hold their unused columns and the weaker cell of every differential pair."""
    g = np.stack([programmed(16, 16, seed), programmed(16, 16, seed + 1)])
    pinned = np.random.default_rng(seed).random(g.shape) < 0.7
    return np.where(pinned, 1.0 / P.r_off_ohm, g)


@pytest.mark.parametrize("negative_first", [False, True])
def test_pinned_cells_are_skipped_without_changing_the_states(monkeypatch, negative_first):
    """Leaving out the OFF doses of cells pinned at the OFF bound gives bitwise the states of
    making them (their change is clipped away either way), also when reads below v_on first
    move pinned cells off the bound while the later reads' doses, made by halves before that,
    are kept (those are made again: the test fails if the kept doses are reused)."""
    import spicecross.surrogate.read_disturb_update as rdu

    from dataclasses import replace

    spec = TileSpec(rows=16, cols=16, cell="0t1r")
    # ON motion as slow as OFF motion: the first half's reads move pinned cells off the bound
    # by less than dw_max, so the transfer matrices (and the kept doses) are not renewed
    p = replace(P, k_on_m_per_s=-P.k_off_m_per_s)
    g = _pinned_arrays(21)
    rng = np.random.default_rng(4)
    v = rng.uniform(0.0, 0.9, (512, 16))
    pulse = ReadPulse(2e-4)
    if negative_first:
        # each half moves states by < dw_max, both halves together by more (rows 8-15): the
        # second half's doses, made with the first's, are kept for its step. The first half
        # moves pinned cells of rows 0-7 off the bound (ON), the second doses them weakly
        v[:256, :8], v[256:, :8] = -rng.uniform(0.7, 0.8, (256, 8)), 0.52
        v[:, 8:] = 0.6
        pulse = ReadPulse(1.6e-5)
    skipped, st = advance_arrays(spec, p, g, v, pulse, split_min_reads=8, dw_max=0.005)
    made = rdu._raw_0t1r
    monkeypatch.setattr(rdu, "_raw_0t1r", lambda *a, movable=None, **k: made(*a, **k))
    full, st_full = advance_arrays(spec, p, g, v, pulse, split_min_reads=8, dw_max=0.005)
    assert np.array_equal(skipped, full)
    assert st.segments == st_full.segments >= 2                       # split: halves kept
    assert np.abs(full - g).max() > 1e-3 * np.abs(g).max()              # the reads disturb
    pinned = g == 1.0 / P.r_off_ohm
    if negative_first:                          # some pinned cells left the bound, and moved
        assert (full[pinned] != g[pinned]).any()


def test_excess_kernel_skips_only_the_cells_marked_pinned():
    """The compiled pass with a movable mask equals the unmasked one on the movable cells
    and leaves the others 0."""
    from spicecross.surrogate.read_disturb_kernel import excess_sums

    rng = np.random.default_rng(8)
    v = rng.uniform(0.0, 1.0, (40, 5))
    v[3, 2] = 0.0
    t = rng.uniform(0.0, 0.6, (6, 5, 12))
    rows, live = np.array([0, 2, 5]), rng.random((3, 40)) < 0.8
    movable = rng.random((3, 12)) < 0.4
    movable[1] = False                                              # a row with none
    whole = excess_sums(v, t, rows, live, 0.45)
    masked = excess_sums(v, t, rows, live, 0.45, movable)
    assert np.array_equal(masked[movable], whole[movable])
    assert not masked[~movable].any() and whole[~movable].any()


@pytest.mark.parametrize("bipolar", [False, True])
def test_compiled_row_decisions_follow_the_row_bounds(bipolar):
    """The compiled pass's bound 2 and decisions (skipped, surely switching, solved; the sure
    reads' sums; which rows want OFF and ON doses) are those of ``row_voltage_bounds``, on a
    wired tile's transfer matrices with reads on its first word lines."""
    from spicecross.surrogate.read_disturb_bounds import deviation_bounds, row_voltage_bounds
    from spicecross.surrogate.read_disturb_kernel import classify_reads

    spec = TileSpec(rows=16, cols=16)
    g = torch.as_tensor(np.stack([programmed(16, 16, 31), programmed(16, 16, 32)]))
    t = cell_voltage_transfer(spec, g, inputs=11)                           # (2, 16, 16, 11)
    pos_neg = deviation_bounds(t)
    rng = np.random.default_rng(9)
    v = torch.as_tensor(rng.uniform(-0.7 if bipolar else 0.0, 0.9, (400, 11)))
    rows = torch.tensor([0, 3, 10, 12, 15])                        # 12 and 15: not driven
    lo, hi = row_voltage_bounds(t, v, pos_neg, rows)
    live, sums, n_sure, wants, counts = classify_reads(
        v.numpy(), rows.numpy(), pos_neg[0].numpy(), pos_neg[1].numpy(), P.v_off_v, P.v_on_v,
        True)
    can = (hi > P.v_off_v) | (lo < P.v_on_v)
    sure = (lo > P.v_off_v) & can
    solved = can & ~sure
    assert np.array_equal(live, solved.T.numpy())
    assert np.array_equal(n_sure, sure.sum(0).numpy())
    assert np.allclose(sums, (sure.T.double() @ v).numpy(), rtol=1e-14, atol=0)
    assert np.array_equal(wants[:, 0], (solved & (hi > P.v_off_v)).any(0).numpy())
    assert np.array_equal(wants[:, 1], (solved & (lo < P.v_on_v)).any(0).numpy())
    assert counts.tolist() == [int((~can).sum()), int(sure.sum()), int(solved.sum())]
    assert sure.any() and solved.any() and (~can).any()                # every kind occurs
    assert wants[:, 1].any() == bipolar
