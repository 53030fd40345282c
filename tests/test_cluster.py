"""Solving on a real dask.distributed LocalCluster with worker processes."""
import numpy as np
import pytest

from spicecross.circuit.tile import TileSpec
from spicecross.spice.solve import solve_many

pytest.importorskip("dask.distributed")


def test_dask_local_cluster_matches_local_run(tmp_path):
    from dask.distributed import Client, LocalCluster

    spec = TileSpec.uniform_wires(8, 8, 1.0, cell="1t1r")
    rng = np.random.default_rng(11)
    gs = [rng.uniform(1 / 2500, 1 / 100, (8, 8)) for _ in range(6)]
    vs = [rng.uniform(0, 0.2, 8) for _ in range(6)]
    local = solve_many(spec, gs, vs, backend="ngspice", n_jobs=1, cache_dir=None, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        # through a running scheduler's address, as a user points a calibration at a cluster
        dist = solve_many(spec, gs, vs, backend="ngspice", n_jobs=2, parallel_backend="dask",
                          scheduler=cluster.scheduler_address, cache_dir=None, progress=False)
        with Client(cluster) as client:
            workers = client.scheduler_info()["workers"]
            assert len(workers) == 2
    assert all(r.ok for r in dist)
    for a, b in zip(local, dist):
        np.testing.assert_array_equal(a.sense_currents_a, b.sense_currents_a)


def test_unknown_parallel_backend_is_named():
    with pytest.raises(ValueError, match="'spark'"):
        solve_many(TileSpec(rows=2, cols=2), [np.full((2, 2), 1e-3)], [np.zeros(2)],
                   parallel_backend="spark", n_jobs=2, cache_dir=None, progress=False)
