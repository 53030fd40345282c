"""Bounded memory and the on-disk transfer cache: chunked builds equal one-chunk builds, the
cache hits for the same (spec, conductances) and misses for any change, untrusted entries are
rejected and recomputed, compensation rebuilds only the arrays that changed, inference in small
batches equals one batch, and the peak RSS that infer reports is real."""
import json
import warnings

import numpy as np
import pytest
import torch

from spicecross.circuit.tile import TileSpec
from spicecross.nn import inference
from spicecross.nn.analog import patch_model
from spicecross.nn.inference import load_eval_data, load_network, peak_rss_mib
from spicecross.surrogate import compensation, transfer, transfer_cache
from spicecross.surrogate.config import AnalogConfig
from spicecross.surrogate.transfer import transfer_matrices


def _random_g(seed, shape):
    rng = np.random.default_rng(seed)
    g = rng.uniform(1e-6, 1e-3, shape)
    g[rng.random(shape) < 0.1] = 0.0
    return g


SPEC = TileSpec(rows=24, cols=20, r_wire_wl_ohm=0.5, r_wire_bl_ohm=1.0, r_driver_ohm=2.0,
                r_sense_ohm=1.0)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "tcache"
    monkeypatch.setenv(transfer_cache.CACHE_ENV_VAR, str(d))
    return d


@pytest.fixture
def built_tiles(monkeypatch):
    """Counts the tiles the nested dissection really builds (the real ``_build`` runs)."""
    count = {"tiles": 0, "calls": []}
    real = transfer._build

    def counting(spec, g):
        count["tiles"] += g.shape[0]
        count["calls"].append(g.shape[0])
        return real(spec, g)

    monkeypatch.setattr(transfer, "_build", counting)
    return count


def _entries(d):
    return sorted(d.rglob("*.npz")) if d.exists() else []


# ---------------------------------------------------------------- chunking
def test_chunked_build_equals_one_chunk(built_tiles):
    g = _random_g(1, (7, 24, 20))
    whole = transfer_matrices(SPEC, g, cache=False)
    per_tile = 8 * transfer._WORDS_PER_CELL * 24 * 20
    for tiles_per_chunk in (1, 2, 3):
        built_tiles["tiles"] = 0
        chunked = transfer_matrices(SPEC, g, work_bytes=tiles_per_chunk * per_tile, cache=False)
        assert built_tiles["tiles"] == 7
        diff = float((chunked - whole).abs().max() / whole.abs().max())
        assert diff <= 1e-12, (tiles_per_chunk, diff)


# ---------------------------------------------------------------- disk cache
def test_second_build_hits_the_cache_and_a_changed_cell_misses(cache_dir, built_tiles):
    g = _random_g(2, (3, 24, 20))
    first = transfer_matrices(SPEC, g, cache=True)
    assert built_tiles["tiles"] == 3 and len(_entries(cache_dir)) == 1
    second = transfer_matrices(SPEC, g, cache=True)
    assert built_tiles["tiles"] == 3                       # nothing built: a hit
    assert torch.equal(first, second)
    g2 = g.copy()
    g2[1, 5, 7] *= 1 + 1e-12                               # one cell, one part in 10¹²
    changed = transfer_matrices(SPEC, g2, cache=True)
    assert built_tiles["tiles"] == 6 and len(_entries(cache_dir)) == 2
    assert not torch.equal(changed, first)
    other_spec = TileSpec(rows=24, cols=20, r_wire_wl_ohm=0.5, r_wire_bl_ohm=1.0,
                          r_driver_ohm=2.0, r_sense_ohm=1.5)
    transfer_matrices(other_spec, g, cache=True)          # same G, other wires: a miss
    assert built_tiles["tiles"] == 9 and len(_entries(cache_dir)) == 3


def test_default_caches_only_large_batches(cache_dir, monkeypatch):
    transfer_matrices(SPEC, _random_g(3, (2, 24, 20)))
    assert _entries(cache_dir) == []
    monkeypatch.setattr(transfer, "CACHE_MIN_CELLS", 2 * 24 * 20)
    transfer_matrices(SPEC, _random_g(3, (2, 24, 20)))
    assert len(_entries(cache_dir)) == 1


def test_cache_off_writes_nothing(tmp_path, monkeypatch, built_tiles):
    monkeypatch.setenv(transfer_cache.CACHE_ENV_VAR, "off")
    monkeypatch.setenv("SPICECROSS_CACHE", str(tmp_path / "solves"))
    g = _random_g(4, (24, 20))
    transfer_matrices(SPEC, g, cache=True)
    transfer_matrices(SPEC, g, cache=True)
    assert built_tiles["tiles"] == 2 and not any(tmp_path.rglob("*.npz"))


def test_cache_disabled_block_writes_nothing(cache_dir, built_tiles):
    """transfer_cache.disabled(): off inside the block (nested too), on again after it."""
    g = _random_g(5, (24, 20))
    with transfer_cache.disabled():
        with transfer_cache.disabled():
            assert transfer_cache.cache_dir() is None
        transfer_matrices(SPEC, g, cache=True)
    assert _entries(cache_dir) == [] and built_tiles["tiles"] == 1
    transfer_matrices(SPEC, g, cache=True)
    assert len(_entries(cache_dir)) == 1


def test_cache_follows_the_solve_cache_override(tmp_path, monkeypatch):
    monkeypatch.delenv(transfer_cache.CACHE_ENV_VAR, raising=False)
    monkeypatch.setenv("SPICECROSS_CACHE", str(tmp_path / "solves"))
    assert transfer_cache.cache_dir() == tmp_path / "solves" / "transfer"


def _entry_arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign", "edited", "nan", "shape"])
def test_untrusted_entries_are_rejected_and_recomputed(cache_dir, built_tiles, damage):
    g = _random_g(5, (2, 24, 20))
    truth = transfer_matrices(SPEC, g, cache=True)
    (path,) = _entries(cache_dir)
    raw = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a cache entry" * 10)
    elif damage == "truncated":
        path.write_bytes(raw[:len(raw) // 2])
    elif damage == "foreign":                 # a valid entry of other conductances, renamed
        other = transfer_matrices(SPEC, _random_g(6, (2, 24, 20)), cache=True)
        (other_path,) = [p for p in _entries(cache_dir) if p != path]
        other_path.replace(path)
        assert not torch.equal(other, truth)
    else:
        z = _entry_arrays(path)
        if damage == "edited":                # values changed, checksum kept
            z["t_s"] = z["t_s"] * 1.01
        elif damage == "nan":                 # checksum recomputed for the bad values
            z["t_s"][0, 0, 0] = np.nan
            z["sha256"] = np.array(transfer_cache._digest({"t_s": z["t_s"]}))
        else:
            z["t_s"] = z["t_s"][:1]
        with open(path, "wb") as f:
            np.savez(f, **z)
    built = built_tiles["tiles"]
    with pytest.warns(RuntimeWarning, match="untrusted transfer cache entry"):
        again = transfer_matrices(SPEC, g, cache=True)
    assert built_tiles["tiles"] == built + 2                # recomputed
    assert torch.equal(again, truth)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(transfer_matrices(SPEC, g, cache=True), truth)   # rewritten: a hit
    assert built_tiles["tiles"] == built + 2


def test_entries_are_written_atomically_and_loaded_without_pickle(cache_dir):
    g = _random_g(7, (24, 20))
    transfer_matrices(SPEC, g, cache=True)
    (path,) = _entries(cache_dir)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]   # no temporaries
    z = _entry_arrays(path)
    assert str(z["format"]) == transfer_cache.FORMAT and path.stem == str(z["key"])
    assert all(a.dtype != object for a in z.values())


# ---------------------------------------------------------------- compensation
def test_compensation_rebuilds_only_changed_arrays(built_tiles):
    spec = TileSpec.uniform_wires(16, 16, 0.5)
    rng = np.random.default_rng(0)
    lo, hi = 1 / 2500, 1 / 100
    target = np.empty((3, 16, 16))
    target[0] = lo + 0.02 * (hi - lo) * rng.random((16, 16))      # little IR drop: converges fast
    target[1:] = lo + 0.3 * (hi - lo) * rng.random((2, 16, 16))
    g, resid = compensation.compensate_ir_drop(spec, target, lo, hi)
    assert resid < 1e-4
    T = transfer_matrices(spec, g, cache=False).transpose(-1, -2).numpy()
    assert np.abs(T - target).max() / target.max() < 1e-4
    calls = built_tiles["calls"]
    assert calls[0] == 3 and len(calls) > 3
    assert min(calls) < 3                                  # converged arrays were not rebuilt


def test_compensated_cells_are_cached_on_disk(cache_dir, built_tiles):
    spec = TileSpec.uniform_wires(16, 16, 0.5)
    u = np.random.default_rng(3).random((2, 1, 1, 16, 16))
    args = (spec, u, 1 / 2500, 1 / 100 - 1 / 2500, 1 / 2500, 1 / 100, 40)
    first = compensation.compensated_cells(*args)
    built = built_tiles["tiles"]
    assert built > 0 and any(p.name.startswith("compensated-") for p in _entries(cache_dir))
    compensation._COMPENSATION_CACHE.clear()          # a new process: only the disk is left
    second = compensation.compensated_cells(*args)
    assert built_tiles["tiles"] == built
    assert np.array_equal(first[0], second[0]) and first[1:] == second[1:]
    compensation._COMPENSATION_CACHE.clear()
    u2 = u.copy()
    u2[0, 0, 0, 3, 3] = 0.5 * u2[0, 0, 0, 3, 3] + 0.25
    compensation.compensated_cells(spec, u2, *args[2:])
    assert built_tiles["tiles"] > built


# ---------------------------------------------------------------- streaming inference
def test_small_batches_give_the_same_logits_and_accuracy():
    cfg = AnalogConfig.build(tile_rows=64, tile_cols=64, calibration_images=16)
    data = load_eval_data("mnist", None, 40, cfg.calibration_images)
    analog = patch_model(load_network("mnist"), cfg, data.calibration)
    x, _ = data.test.tensors
    with torch.no_grad():
        whole = analog(x)
        streamed = torch.cat([analog(x[i:i + 7]) for i in range(0, len(x), 7)])
    assert torch.allclose(whole, streamed, rtol=1e-5, atol=1e-5 * float(whole.abs().max()))
    assert torch.equal(whole.argmax(1), streamed.argmax(1))
    assert inference._accuracy(analog, data.test, 7)[0] == inference._accuracy(analog, data.test, 40)[0]


# ---------------------------------------------------------------- peak RSS
def test_peak_rss_tracks_a_real_allocation():
    before = peak_rss_mib()
    assert 10 < before < 1e6
    block = np.ones(int((before + 200) * 2**20 / 8))      # above any earlier peak, pages touched
    after = peak_rss_mib()
    del block
    assert after >= before + 150


def test_infer_json_reports_peak_rss(capsys):
    from spicecross.cli import main

    assert main(["infer", "--limit", "20", "--calibration-images", "8", "--spice-check", "0",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 100 < out["peak_rss_mib"] <= peak_rss_mib() + 0.05   # JSON rounds to 0.1 MiB
