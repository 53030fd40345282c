"""Where joblib runs the solves: local processes (loky), threads, a dask cluster or ray.

``dask``: with ``scheduler`` (e.g. ``tcp://10.0.0.5:8786``) the solves go to that running
``dask.distributed`` scheduler's workers (each needs spicecross and ngspice installed); without
it a ``LocalCluster`` of ``n_jobs`` worker processes is started for the call. ``ray``: joblib's
ray backend, connecting to ``scheduler`` (a ray address) or starting ray locally.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

PARALLEL_BACKENDS = ("loky", "threading", "dask", "ray")


@contextlib.contextmanager
def parallel_context(backend: str = "loky", scheduler: str | None = None,
                     n_jobs: int | None = None) -> Iterator[None]:
    """Context in which ``joblib.Parallel`` uses ``backend``."""
    from joblib import parallel_config

    if backend not in PARALLEL_BACKENDS:
        raise ValueError(f"parallel backend must be one of {PARALLEL_BACKENDS}, got {backend!r}")
    if backend in ("loky", "threading"):
        if scheduler:
            raise ValueError(f"--scheduler {scheduler!r} needs --backend dask or ray, not {backend!r}")
        with parallel_config(backend=backend):
            yield
        return
    if backend == "dask":
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError as exc:
            raise ValueError("backend 'dask' needs dask.distributed: pip install 'spicecross[cluster]'") from exc
        if scheduler:
            client = Client(scheduler, timeout="30s")
            cluster = None
        else:
            cluster = LocalCluster(n_workers=n_jobs or 2, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
        try:
            with parallel_config(backend="dask"):
                yield
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return
    try:  # ray
        import ray
        from ray.util.joblib import register_ray
    except ImportError as exc:
        raise ValueError("backend 'ray' needs ray: pip install 'ray[default]'") from exc
    register_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=scheduler) if scheduler else ray.init(num_cpus=n_jobs)
    try:
        with parallel_config(backend="ray"):
            yield
    finally:
        if started:
            ray.shutdown()
