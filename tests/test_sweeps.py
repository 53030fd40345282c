"""Sweeps of the seed paper's experiments: incremental HDF5, resume, plots, CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import h5py
import pytest

from conftest import assert_plot_png

from spicecross.experiments.sweeps import PRESETS, plot_sweep, preset_points, read_sweep, run_sweep
from spicecross.surrogate.config import AnalogConfig
from spicecross.store import atomic_h5

FAST = AnalogConfig.build(mode="ideal", r_wire_ohm=0.0, calibration_images=64)


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch):
    monkeypatch.delenv("SPICECROSS_DATA", raising=False)


class Interrupt(Exception):
    pass


def test_sweep_resumes_without_redoing_points(tmp_path):
    out = tmp_path / "miv.h5"
    seen = []

    def stop_after_three(i, pt, res):
        seen.append(pt.key)
        if len(seen) == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_sweep("max-input-voltage", "mnist", None, FAST, out, limit=40, progress=False,
                  on_point=stop_after_three)
    root, pts = read_sweep(out)
    assert set(pts) == set(seen) and len(pts) == 3           # every finished point is on disk
    assert root["preset"] == "max-input-voltage" and root["model"] == "mnist"
    first = {k: v["accuracy"] for k, v in pts.items()}

    computed = []
    res = run_sweep("max-input-voltage", "mnist", None, FAST, out, limit=40, progress=False,
                    plot=tmp_path / "miv.png", on_point=lambda i, pt, r: computed.append(pt.key))
    all_keys = [p.key for p in preset_points("max-input-voltage")]
    assert computed == [k for k in all_keys if k not in seen]   # only the rest
    assert sorted(res["skipped"]) == sorted(seen)
    _, pts = read_sweep(out)
    assert set(pts) == set(all_keys)
    assert all(pts[k]["accuracy"] == first[k] for k in first)
    a = pts[all_keys[0]]
    cfg = json.loads(a["config"]) if isinstance(a["config"], str) else a["config"]
    assert cfg["max_input_voltage_v"] == 1.0 and a["seed"] == 0 and a["device_set"] == "pt_hf_ti"
    assert "Pt/Hf/Ti" in a["device_source"]
    assert a["peak_rss_mib"] > 50                   # each point records the process's peak memory
    assert_plot_png(tmp_path / "miv.png")
    # a third run has nothing left to do
    res = run_sweep("max-input-voltage", "mnist", None, FAST, out, limit=40, progress=False)
    assert res["computed"] == [] and len(res["skipped"]) == len(all_keys)
    # a different base configuration is refused rather than mixed in
    with pytest.raises(ValueError, match="different sweep"):
        run_sweep("max-input-voltage", "mnist", None, FAST.with_(adc_bits=4), out, limit=40,
                  progress=False)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_plots_for_every_preset(tmp_path, preset):
    """Each preset's plot from a synthetic results file (no inference)."""
    path = tmp_path / f"{preset}.h5"
    with atomic_h5(path) as f:
        f.attrs.update({"preset": preset, "model": "mnist", "digital_accuracy": 99.0, "images": 10})
        grp = f.create_group("points")
        for i, pt in enumerate(preset_points(preset)):
            g = grp.create_group(pt.key)
            g.attrs["key"] = pt.key
            g.attrs["overrides"] = json.dumps(pt.overrides)
            g.attrs["accuracy"] = 90.0 - i % 7
    png = plot_sweep(path, tmp_path / f"{preset}.png")
    assert_plot_png(png)


def test_presets_match_the_paper_grids():
    assert [p.overrides["max_input_voltage_v"] for p in preset_points("max-input-voltage")] == \
        [float(v) for v in range(1, 10)]
    ta = preset_points("tile-adc")
    assert {p.overrides["tile_rows"] for p in ta} == {64, 128, 256}
    assert {p.overrides["adc_bits"] for p in ta} == set(range(2, 9))
    keys = [p.key for p in preset_points("endurance-retention")]
    assert len(keys) == len(set(keys))
    for preset in PRESETS:            # every point builds a valid configuration
        for p in preset_points(preset):
            FAST.with_(**p.overrides)
    with pytest.raises(ValueError, match="unknown sweep"):
        preset_points("nope")


def test_cli_sweep_bad_preset_and_runs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "spicecross.cli", "sweep", "nope", "--out",
                        str(tmp_path / "x.h5")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "nope" in r.stderr
    out = tmp_path / "s.h5"
    r = subprocess.run([sys.executable, "-m", "spicecross.cli", "sweep", "max-input-voltage",
                        "--model", "mnist", "--limit", "20", "--mode", "ideal", "--r-wire", "0", "--spice-check", "0",
                        "--out", str(out), "--plot", str(tmp_path / "s.png"), "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["computed"] == 9 and summary["peak_rss_mib"] > 50
    with h5py.File(out) as f:
        assert len(f["points"]) == 9
    assert_plot_png(tmp_path / "s.png")


def test_sweep_points_carry_their_spice_check(tmp_path):
    """Every sweep point stores its SPICE check beside the accuracy (0T1R: exact)."""
    out = tmp_path / "miv.h5"

    def stop(i, pt, res):
        raise Interrupt

    with pytest.raises(Interrupt):
        run_sweep("max-input-voltage", "mnist", None, FAST.with_(mode="linear", r_wire_ohm=0.1),
                  out, limit=20, progress=False, on_point=stop, spice_check_reads=2)
    _, pts = read_sweep(out)
    (point,) = pts.values()
    chk = point["spice_check"]
    chk = json.loads(chk) if isinstance(chk, str) else chk
    assert chk["reads"] == 10 and point["spice_max_err_lsb"] == chk["max_err_lsb"] < 1e-6
    assert chk["max_rel_err"] < 1e-9 and point["read_voltage_v"] == pytest.approx(0.2)
