"""Where joblib runs the solves: local processes (loky), threads, a dask cluster or ray.

``dask``: with ``scheduler`` (e.g. ``tcp://10.0.0.5:8786``) the solves go to that running
``dask.distributed`` scheduler's workers (each needs spicecross and ngspice installed); without
it a ``LocalCluster`` of ``n_jobs`` worker processes is started for the call. ``ray``: joblib's
ray backend, connecting to ``scheduler`` (a ray address) or starting ray locally.

Local worker processes end with their parent: every job calls :func:`exit_with_parent` with
the submitting process's id, which (in a direct child only) starts a watchdog thread that ends
the worker within a second of the parent's death, even after ``kill -9`` (loky would otherwise
keep idle workers for minutes).
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Iterator

PARALLEL_BACKENDS = ("loky", "threading", "dask", "ray")

_watched: set[int] = set()
_watch_lock = threading.Lock()


def _watch(parent: int, interval_s: float) -> None:
    while os.getppid() == parent:
        time.sleep(interval_s)
    os._exit(1)   # the parent is gone (reparented): nobody will collect this worker's results


def exit_with_parent(parent_pid: int, interval_s: float = 0.5) -> bool:
    """In a worker process whose parent is ``parent_pid``, start (once) a daemon thread that
    ends this process when the parent dies. Does nothing in the parent itself (threads) or in
    processes that are not its direct children (dask nannies, ray). True if watching."""
    if os.getpid() == parent_pid or os.getppid() != parent_pid:
        return False
    with _watch_lock:
        if parent_pid not in _watched:
            _watched.add(parent_pid)
            threading.Thread(target=_watch, args=(parent_pid, interval_s), daemon=True,
                             name="spicecross-parent-watch").start()
    return True


def _distributed():
    """The ``dask.distributed`` module; ValueError saying how to install it if it is missing."""
    try:
        import dask.distributed
    except ImportError as exc:
        raise ValueError("backend 'dask' needs dask.distributed: pip install 'spicecross[cluster]'") from exc
    return dask.distributed


def local_cluster(n_jobs: int | None = None):
    """A ``dask.distributed.LocalCluster`` of ``n_jobs`` (default 2) single-threaded worker
    processes, no dashboard (the caller closes it). ValueError if dask.distributed is missing."""
    return _distributed().LocalCluster(n_workers=n_jobs or 2, threads_per_worker=1,
                                       processes=True, dashboard_address=None)


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
        Client = _distributed().Client
        if scheduler:
            client = Client(scheduler, timeout="30s")
            cluster = None
        else:
            cluster = local_cluster(n_jobs)
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
