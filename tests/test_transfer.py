"""The exact transfer matrix T (nested dissection) against two independent nodal solves, its
batching and chunking, and the torch/MKL thread crash it must survive."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from spicecross import threads
from spicecross.circuit.tile import TileSpec
from spicecross.spice.nodal import nodal_sense_currents
from spicecross.surrogate.network import sparse_transfer_matrix
from spicecross.surrogate.transfer import transfer_matrices

REPO = Path(__file__).resolve().parents[1]


def rel_max(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def random_g(rng, shape, open_fraction=0.15):
    g = rng.uniform(1e-6, 1e-3, shape)         # 1 µS … 1 mS
    g[rng.random(shape) < open_fraction] = 0.0
    return g


CASES = [  # rows, cols, r_wire_wl, r_wire_bl, r_driver, r_sense (Ω)
    (1, 1, 0.1, 0.1, 0.0, 0.0),
    (1, 13, 0.1, 0.1, 0.0, 0.0),
    (13, 1, 1.0, 1.0, 0.0, 0.0),
    (1, 40, 1.0, 0.1, 5.0, 2.0),
    (40, 1, 0.1, 1.0, 5.0, 2.0),
    (2, 3, 1.0, 1.0, 0.0, 0.0),
    (17, 9, 0.1, 0.1, 0.0, 0.0),
    (24, 40, 1.0, 1.0, 10.0, 0.0),
    (33, 65, 0.1, 0.2, 0.0, 3.0),
    (64, 64, 0.1, 0.1, 0.0, 0.0),
    (64, 64, 1.0, 1.0, 20.0, 20.0),
    (100, 37, 0.1, 1.0, 1.0, 1.0),
]


@pytest.mark.parametrize("rows,cols,r_wl,r_bl,r_drv,r_sense", CASES)
def test_t_equals_sparse_nodal_solve(rows, cols, r_wl, r_bl, r_drv, r_sense):
    rng = np.random.default_rng(rows * 1000 + cols)
    spec = TileSpec(rows=rows, cols=cols, r_wire_wl_ohm=r_wl, r_wire_bl_ohm=r_bl,
                    r_driver_ohm=r_drv, r_sense_ohm=r_sense)
    g = random_g(rng, (rows, cols))
    g[0, 0] = 1e-4                               # no all-open 1×1 tile
    T = transfer_matrices(spec, g)
    assert T.dtype == torch.float64 and T.shape == (cols, rows)
    assert rel_max(T.numpy(), sparse_transfer_matrix(spec, g)) <= 1e-10


@pytest.mark.parametrize("rows,cols,r_wire", [(7, 5, 0.1), (12, 20, 1.0), (1, 9, 1.0), (9, 1, 0.1)])
def test_t_equals_element_list_nodal_reference(rows, cols, r_wire):
    rng = np.random.default_rng(rows + 17 * cols)
    spec = TileSpec.uniform_wires(rows, cols, r_wire, r_driver_ohm=2.0, r_sense_ohm=1.0)
    g = random_g(rng, (rows, cols))
    T = transfer_matrices(spec, g).numpy()
    for _ in range(2):
        v = rng.uniform(-0.2, 0.2, rows)
        assert rel_max(T @ v, nodal_sense_currents(spec, g, v)) <= 1e-10


def test_open_rows_and_columns_and_all_open_tile():
    rng = np.random.default_rng(5)
    spec = TileSpec.uniform_wires(10, 12, 0.1)
    g = random_g(rng, (10, 12))
    g[3, :] = 0.0
    g[:, 7] = 0.0
    T = transfer_matrices(spec, g).numpy()
    assert np.all(T[7, :] == 0.0) or np.max(np.abs(T[7, :])) <= 1e-15 * np.max(np.abs(T))
    assert np.max(np.abs(T[:, 3])) <= 1e-15 * np.max(np.abs(T))
    assert rel_max(T, sparse_transfer_matrix(spec, g)) <= 1e-10
    assert np.max(np.abs(transfer_matrices(spec, np.zeros((10, 12))).numpy())) == 0.0


def test_batch_shapes_and_chunking():
    rng = np.random.default_rng(11)
    spec = TileSpec(rows=20, cols=12, r_wire_wl_ohm=0.1, r_wire_bl_ohm=1.0, r_driver_ohm=1.0)
    gs = random_g(rng, (2, 3, 20, 12))
    T = transfer_matrices(spec, gs)
    assert T.shape == (2, 3, 12, 20)
    one_per_chunk = transfer_matrices(spec, torch.as_tensor(gs), work_bytes=1)
    assert torch.equal(T, one_per_chunk) or float((T - one_per_chunk).abs().max()) <= 1e-12 * float(T.abs().max())
    for idx in np.ndindex(2, 3):
        assert rel_max(T[idx].numpy(), sparse_transfer_matrix(spec, gs[idx])) <= 1e-10
    assert transfer_matrices(spec, gs[0, 0]).shape == (12, 20)
    assert transfer_matrices(spec, np.zeros((0, 20, 12))).shape == (0, 12, 20)


def test_rejects_bad_conductances():
    spec = TileSpec.uniform_wires(3, 4, 0.1)
    with pytest.raises(ValueError):
        transfer_matrices(spec, np.ones((4, 3)))
    with pytest.raises(ValueError):
        transfer_matrices(spec, -np.ones((3, 4)))
    with pytest.raises(ValueError):
        transfer_matrices(spec, np.full((3, 4), np.nan))


def test_thread_policy_makes_no_call_when_nothing_changes(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    now = torch.get_num_threads()
    with threads.limited_threads(now) as n:
        assert n == now
    with threads.limited_threads(now + 3) as n:
        assert n == now                        # never raised
    assert calls == []
    assert 1 <= threads.threads_for() <= threads.STARTUP_THREADS
    assert threads.threads_for(workers=4, cores=2) == 1
    assert threads.threads_for(workers=1, cores=1) == 1
    assert threads.env_for_threads(1, {})["OMP_NUM_THREADS"] == "1"
    with pytest.raises(ValueError):
        threads.threads_for(0)


_CRASH_SCRIPT = textwrap.dedent("""
    import numpy as np, torch
    from spicecross import threads
    from spicecross.circuit.tile import TileSpec
    from spicecross.surrogate.network import sparse_transfer_matrix
    from spicecross.surrogate.transfer import transfer_matrices
    n = 256
    a = torch.rand(2, n, n, dtype=torch.float64) + n * torch.eye(n, dtype=torch.float64)
    b = torch.rand(2, n, 3, dtype=torch.float64)
    torch.set_num_threads(torch.get_num_threads())      # the call that breaks MKL's LU
    try:
        torch.linalg.solve(a, b)
        print("LU ok")
    except RuntimeError:
        print("LU broken")
    with threads.limited_threads(1):                      # the policy's thread changes
        pass
    with threads.limited_threads(threads.threads_for()):
        spec = TileSpec.uniform_wires(n, n, 0.1)
        rng = np.random.default_rng(0)
        g = rng.uniform(1e-6, 1e-3, (n, n))
        g[rng.random((n, n)) < 0.1] = 0.0
        T = transfer_matrices(spec, g).numpy()
    ref = sparse_transfer_matrix(spec, g)
    print("T rel", float(np.abs(T - ref).max() / np.abs(ref).max()))
""")


@pytest.mark.slow
def test_256_t_survives_the_set_num_threads_crash():
    env = threads.env_for_threads(2)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, "-c", _CRASH_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600, cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith(("LU ", "T rel"))]
    assert lines[0] in ("LU ok", "LU broken")
    if torch.__version__.startswith("2.13.0") and torch.backends.mkl.is_available():
        assert lines[0] == "LU broken"       # the crash is reproduced with this torch build
    assert lines[-1].startswith("T rel") and float(lines[-1].split()[-1]) <= 1e-10
