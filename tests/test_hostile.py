"""Hostile-but-realistic input, as a new user (or someone else's files) would give it.

Every case ends in one of: a non-zero exit with one line naming the bad value or file; success
where a valid reading exists (a Latin-1 netlist); a recorded failure with the simulator's words.
Nothing runs from a netlist or a dataset file unless trusted, no finished work is lost, and every
file written appears whole or not at all.
"""
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spicecross.circuit.tile import TileSpec, max_tile_cells
from spicecross.cli import main
from spicecross.errors import UserError

OK_CIR = "ok\nV1 a 0 1\nR1 a b 1k\nVsense0 b 0 0\n.op\n.end\n"
# A current source into a capacitor: no DC solution; ngspice falls back to a transient ramp
# and used to report it as solved.
NO_DC_CIR = "no dc\nI1 0 n1 1\nVsense0 n1 n2 0\nC1 n2 0 1p\n.op\n.end\n"


def run(capsys, *argv):
    """``spicecross argv`` in this process: (exit status, stdout, stderr)."""
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def one_line_error(err: str, *needles: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "error" in lines[0], err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def refused(capsys, needles, *argv):
    rc, _, err = run(capsys, *argv)
    assert rc == 2, (rc, err)
    one_line_error(err, *needles)


@pytest.fixture
def unwritable_dir(tmp_path):
    """A directory no file can be created in (root ignores permission bits: use /sys)."""
    if os.geteuid() == 0:
        yield Path("/sys/spicecross-no-such-dir")
        return
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    yield d
    d.chmod(0o755)


# ---- 1. untrusted input is inert -----------------------------------------------------------
def test_control_block_shell_refused_unless_trusted(capsys, tmp_path):
    marker = tmp_path / "PWNED"
    cir = tmp_path / "evil.cir"
    cir.write_text(OK_CIR.replace(".end\n", f".control\nshell touch {marker}\n.endc\n.end\n"))
    refused(capsys, ["evil.cir:6", ".control", "--trust-netlist"], "solve", "--no-cache", cir)
    assert not marker.exists()
    rc, out, _ = run(capsys, "solve", "--no-cache", "--trust-netlist", cir)
    assert rc == 0 and marker.exists(), out       # trusted: the user's own control block runs


def test_vacask_postprocess_refused(capsys, tmp_path):
    marker = tmp_path / "RAN"
    (tmp_path / "x.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    sim = tmp_path / "evil.sim"
    sim.write_text('evil\nload "spice/resistor.osdi"\nmodel r sp_resistor\nground 0\n'
                   'control\n  analysis op1 op\n  postprocess(PYTHON, "x.py")\nendc\n')
    refused(capsys, ["evil.sim:7", "postprocess"], "solve", "--no-cache", sim)
    assert not marker.exists()


@pytest.mark.parametrize("line,sim", [(".include /etc/evil.lib", "ngspice"),
                                      (".exec", "ngspice"), ("shell rm -rf x", "ngspice"),
                                      ('load "/tmp/evil.osdi"', "vacask"),
                                      ('load "../evil.osdi"', "vacask"),
                                      ('embed "x.py" <<<', "vacask")])
def test_unsafe_lines_found(line, sim):
    from spicecross.spice.untrusted import unsafe_line

    assert unsafe_line(f"title\n{line}\n", sim) == (2, line)


def test_emitted_netlists_are_inert():
    from spicecross.spice.simulators import NGSPICE, VACASK
    from spicecross.spice.untrusted import unsafe_line

    spec = TileSpec(rows=3, cols=2, cell="1t1r")
    g, v = np.full((3, 2), 1e-3), np.full(3, 0.1)
    for sim in (NGSPICE, VACASK):
        assert unsafe_line(sim.emit(spec, g, v), sim.name) is None
        assert unsafe_line(sim.emit_reads(spec, g, np.tile(v, (4, 1))), sim.name) is None


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cifar_dir(root: Path, payload) -> Path:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (base / name).write_bytes(pickle.dumps(payload, protocol=2))
    return root


def test_crafted_cifar_pickle_does_not_run(capsys, tmp_path):
    from spicecross.nn.datasets import load_dataset

    marker = tmp_path / "PWNED"
    root = _cifar_dir(tmp_path / "data", {b"data": _Evil(marker), b"labels": [0]})
    with pytest.raises(ValueError, match="refused posix.system|refused os.system"):
        load_dataset("cifar10", root, train=False)
    assert not marker.exists()
    refused(capsys, ["data_batch_1", "not a CIFAR batch file"], "train", "cifar10", "--data", root,
            "--out", tmp_path / "m.pt", "--epochs", "1", "--quiet")
    assert not marker.exists() and not (tmp_path / "m.pt").exists()


def test_genuine_cifar_layout_loads(tmp_path):
    from spicecross.nn.datasets import load_dataset

    rng = np.random.default_rng(0)
    entry = {b"batch_label": b"testing batch 1 of 1", b"labels": [3, 1, 4],
             b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8),
             b"filenames": [b"a.png", b"b.png", b"c.png"]}
    ds = load_dataset("cifar10", _cifar_dir(tmp_path, entry), train=False)
    assert tuple(ds.tensors[0].shape) == (3, 3, 32, 32) and ds.tensors[1].tolist() == [3, 1, 4]


# ---- 2. values checked where they enter: one line, exit 2 ----------------------------------
@pytest.mark.parametrize("argv,needles", [
    (["netlist", "--rows", "100000", "--cols", "100000"], ["100000x100000", "cells"]),
    (["infer", "--tile", "100000x100000"], ["--tile", "100000x100000"]),
    (["device", "iv", "--frequency", "1e9", "--cycles", "1e9"], ["cycles", "time points"]),
    (["netlist", "--rows", "2", "--cols", "2", "--g-max=inf"], ["--g-max", "inf"]),
    (["netlist", "--rows", "2", "--cols", "2", "--v-max=nan"], ["--v-max", "nan"]),
    (["infer", "--v-read", "inf"], ["--v-read", "inf"]),
    (["netlist", "--rows", "2", "--cols", "2", "--v-gate", "nan"], ["--v-gate", "nan"]),
    (["netlist", "--rows", "2", "--cols", "2", "--g-min", "0.01", "--g-max", "0.001"],
     ["--g-min", "--g-max"]),
    (["calibrate", "--rows", "2", "--cols", "2", "--g-min", "0.01", "--g-max", "0.001"],
     ["--g-min", "--g-max"]),
    (["train", "mnist", "--lr=inf", "--out", "m.pt"], ["--lr", "inf"]),
    (["demo", "--limit", "0"], ["--limit", "'0'"]),
    (["solve", "--jobs", "0", "x.cir"], ["--jobs"]),
])
def test_bad_values_one_line(capsys, tmp_path, monkeypatch, argv, needles):
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    refused(capsys, needles, *argv)
    assert time.perf_counter() - t0 < 30
    assert not list(tmp_path.iterdir())          # nothing written


def test_library_refuses_bad_values():
    from spicecross.nn.train import train_model

    with pytest.raises(ValueError, match="cells"):
        TileSpec(rows=100000, cols=100000)
    assert max_tile_cells() >= 1024
    with pytest.raises(ValueError, match="v_gate_v"):
        TileSpec(rows=2, cols=2).with_(selector=TileSpec().selector.__class__(v_gate_v=float("nan")))
    with pytest.raises(ValueError, match="complex"):
        TileSpec(rows=2, cols=2).check_conductances(np.full((2, 2), 1e-3 + 1e-4j))
    with pytest.raises(ValueError, match="lr"):
        train_model("mnist", None, lr=float("inf"))


def test_complex_conductances_refused(capsys, tmp_path):
    np.save(tmp_path / "G.npy", np.full((2, 2), 1e-3 + 1e-4j))
    refused(capsys, ["G.npy", "complex"], "netlist", "--conductances", tmp_path / "G.npy",
            "--out", tmp_path / "t.cir")
    assert not (tmp_path / "t.cir").exists()


def test_calibration_for_another_tile_refused():
    from spicecross.calibration.calibrate import Calibration, apply_calibration
    from spicecross.surrogate.config import AnalogConfig

    cal = Calibration(TileSpec(rows=4, cols=4, cell="1t1r"), 3e-3, {}, "linear",
                      {"v_read_max_v": 0.2})
    for cell in ("1t1r", "0t1r"):
        config = AnalogConfig.build(tile_rows=16, tile_cols=16, cell=cell)
        with pytest.raises(ValueError):
            apply_calibration(config, cal)


# ---- output paths, checked before any work -------------------------------------------------
def _bad_outputs(tmp_path, unwritable_dir):
    (tmp_path / "file").write_text("x")
    (tmp_path / "adir").mkdir()
    return [(tmp_path / "adir", "directory"), (tmp_path / "file" / "out.x", "not a directory"),
            (unwritable_dir / "out.x", "cannot write")]


def test_output_paths_checked_before_work(capsys, tmp_path, unwritable_dir):
    (tmp_path / "t.cir").write_text(OK_CIR)
    cache = Path(os.environ["SPICECROSS_CACHE"])

    def entries() -> set:
        return set(cache.rglob("*.npz")) if cache.exists() else set()

    before = entries()          # the cache is shared by the session's tests
    for out, why in _bad_outputs(tmp_path, unwritable_dir):
        refused(capsys, ["--out", why], "netlist", "--rows", "2", "--cols", "2", "--out", out)
        refused(capsys, ["--out", why], "solve", tmp_path / "t.cir", "--out", out)
        # would take minutes of SPICE and training if the check came after the work
        refused(capsys, ["--out", why], "calibrate", "--rows", "64", "--cols", "64",
                "--tiles", "50", "--out", out)
        refused(capsys, ["--out", why], "train", "mnist", "--data", tmp_path / "none",
                "--out", out)
        refused(capsys, ["--out", why], "device", "iv", "--forms", "reference", "--out", out)
        refused(capsys, ["--out", why], "sweep", "tile-adc", "--out", out)
    refused(capsys, ["--plots", "file"], "calibrate", "--rows", "2", "--cols", "2",
            "--out", tmp_path / "c.h5", "--plots", tmp_path / "file")
    refused(capsys, ["--out", "file"], "demo", "--out", tmp_path / "file")
    assert entries() == before, "work was done before the output path was refused"


def test_device_iv_writes_and_reports_the_path_given(capsys, tmp_path):
    out = tmp_path / "loops"                       # no suffix: used to become loops.png
    rc, stdout, err = run(capsys, "device", "iv", "--forms", "reference", "--cycles", "1",
                          "--points-per-cycle", "200", "--out", out)
    assert rc == 0, err
    assert out.read_bytes()[:4] == b"\x89PNG" and f'"out": "{out}"' in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loops"]      # no temp files left


# ---- corrupt inputs: one line naming the file ----------------------------------------------
def test_corrupt_inputs_one_line(capsys, tmp_path):
    import h5py

    from spicecross.experiments.sweeps import read_sweep
    from spicecross.golden import _read_h5
    from spicecross.nn.train import load_checkpoint

    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    for reader in (read_sweep, _read_h5):
        with pytest.raises(UserError, match="junk.h5"):
            reader(junk)
    bad_pt = tmp_path / "bad.pt"
    bad_pt.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="bad.pt"):
        load_checkpoint(bad_pt)
    nokeys = tmp_path / "cal.h5"
    with h5py.File(nokeys, "w") as f:
        f.attrs["kind"] = "spicecross-calibration"
    np.save(tmp_path / "G.npy", np.full((2, 2), 1e-3))
    np.save(tmp_path / "V.npy", np.full(2, 0.1))
    refused(capsys, ["cal.h5", "missing key"], "surrogate", "--conductances", tmp_path / "G.npy",
            "--inputs", tmp_path / "V.npy", "--calibration", nokeys)
    refused(capsys, ["cal.h5"], "infer", "--calibration", junk.with_name("cal.h5"))
    refused(capsys, ["junk.h5"], "sweep", "tile-adc", "--out", junk, "--limit", "10")
    refused(capsys, ["bad.pt"], "infer", "--weights", bad_pt, "--limit", "10",
            "--spice-check", "0")
    (tmp_path / "G2.npy").write_bytes(b"\x93NUMPY garbage")
    refused(capsys, ["G2.npy"], "netlist", "--conductances", tmp_path / "G2.npy")


# ---- 3. simulator results validated; corrupt cache entries re-solved ------------------------
def test_no_dc_solution_is_a_recorded_failure(capsys, tmp_path):
    (tmp_path / "nodc.cir").write_text(NO_DC_CIR)
    (tmp_path / "ok.cir").write_text(OK_CIR)
    rc, out, err = run(capsys, "solve", "--no-cache", tmp_path / "nodc.cir", tmp_path / "ok.cir",
                       "--out", tmp_path / "r.h5")
    assert rc == 1
    assert "no DC operating point" in err and "1 of 2 netlist(s) failed" in err
    assert "source stepping failed" in out.lower() or "gmin stepping failed" in out.lower()
    import h5py
    with h5py.File(tmp_path / "r.h5") as f:          # the finished work is kept
        assert not f["read00000"].attrs["ok"] and f["read00001"].attrs["ok"]


def test_non_physical_currents_fail():
    from spicecross.spice.simulators import SimulationError
    from spicecross.spice.untrusted import check_currents

    with pytest.raises(SimulationError, match="non-physical"):
        check_currents(np.array([1e-3, -1e12]), "ngspice")
    with pytest.raises(SimulationError, match="non-physical"):
        check_currents(np.array([np.nan]), "ngspice")


def test_truncated_cache_entries_are_resolved(tmp_path):
    from spicecross.spice.solve import solve_reads, solve_text

    cache = tmp_path / "cache"
    first = solve_text(OK_CIR, "ngspice", cache)
    (entry,) = list(cache.rglob("*.npz"))
    assert entry.parent.name == first.netlist_hash.rsplit("-", 1)[1][:2]   # sharded by hash
    entry.write_bytes(entry.read_bytes()[:40])
    again = solve_text(OK_CIR, "ngspice", cache)
    assert again.ok and not again.cached
    assert np.allclose(again.sense_currents_a, first.sense_currents_a)
    assert solve_text(OK_CIR, "ngspice", cache).cached                     # entry rewritten

    spec = TileSpec(rows=3, cols=2)
    g, v = np.full((3, 2), 1e-3), np.full((4, 3), 0.1)
    ref = solve_reads(spec, g, v, backend="ngspice", cache_dir=cache)
    for p in cache.rglob("*.npz"):
        p.write_bytes(b"PK\x03\x04 truncated")
    res = solve_reads(spec, g, v, backend="ngspice", cache_dir=cache)
    assert res.ok and not res.cached and np.allclose(res.currents_a, ref.currents_a)


def test_latin1_netlist_solved_in_a_batch(capsys, tmp_path):
    (tmp_path / "latin.cir").write_bytes(b"latin\n* 1 k\xb5 \xa9 10 \xd4\n" + OK_CIR.encode()[3:])
    (tmp_path / "ok.cir").write_text(OK_CIR)
    rc, out, err = run(capsys, "solve", "--no-cache", tmp_path / "latin.cir", tmp_path / "ok.cir")
    assert rc == 0, err
    assert out.count(" ok") == 2


# ---- 4. atomic writes, workers end with their parent ---------------------------------------
def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    from spicecross.store import atomic_path, write_text_atomic

    p = write_text_atomic(tmp_path / "a.cir", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert p.read_text() == "old" and sorted(x.name for x in tmp_path.iterdir()) == ["a.cir"]


WORKERS = """
import numpy as np, sys
from spicecross.circuit.tile import TileSpec
from spicecross.spice.solve import solve_many
spec = TileSpec(rows=24, cols=24)
rng = np.random.default_rng(0)
gs = [rng.uniform(1e-4, 1e-2, (24, 24)) for _ in range(400)]
vs = [rng.uniform(0, 0.2, 24) for _ in range(400)]
solve_many(spec, gs, vs, backend="ngspice", n_jobs=2, cache_dir=None, progress=False)
"""


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_workers_end_after_kill_9(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WORKERS], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    deadline = time.time() + 60
    while time.time() < deadline:           # until both workers run simulators
        time.sleep(0.2)
        workers = [c for c in _children(proc.pid)
                   if b"LokyProcess" in Path(f"/proc/{c}/cmdline").read_bytes()]
        if len(workers) == 2 and all(_children(w) for w in workers):
            break
    assert len(workers) == 2, "no worker processes started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    left = [w for w in workers if _alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, f"workers {left} outlived their parent"
