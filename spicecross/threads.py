"""Thread policy for torch (and the BLAS under it): how many intra-op threads a piece of work
should use, and a context manager that limits them without needless ``set_num_threads`` calls.

Why the care: with torch 2.13.0 (CPU wheel, MKL), any ``torch.set_num_threads(n)`` with
``n ≥ 2`` — even to the current value — leaves batched LU (``torch.linalg.solve``/``inv`` on
matrices of ~200 and more) failing with MKL's "Parameter 6 was incorrect on entry to DLASWP"
and a RuntimeError, until the count is set back to 1 (``tests/test_transfer.py`` reproduces
it). Thread counts chosen at process start (``OMP_NUM_THREADS``/``MKL_NUM_THREADS``, see
:func:`env_for_threads`) do not trigger it. So:

* :func:`limited_threads` never calls ``torch.set_num_threads`` when the count would not
  change, and only ever lowers the count for its block;
* :func:`threads_for` never proposes more threads than the process started with;
* the transfer matrices (:mod:`spicecross.surrogate.transfer`) use Cholesky and triangular
  solves only, which the bug does not affect.
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["STARTUP_THREADS", "available_cores", "threads_for", "limited_threads", "env_for_threads",
           "fork_join", "map_single_threaded", "offering_to_pool", "single_thread_pool"]


#: torch's intra-op thread count when spicecross was imported (set by the environment).
STARTUP_THREADS = torch.get_num_threads()


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def threads_for(workers: int = 1, cores: int | None = None) -> int:
    """Threads each of ``workers`` concurrent workers should use: the cores shared evenly
    (at least 1), and never more than the process's start-up thread count."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cores = available_cores() if cores is None else int(cores)
    return max(1, min(cores // workers, STARTUP_THREADS))


@contextlib.contextmanager
def limited_threads(n: int) -> Iterator[int]:
    """Run the block with at most ``n`` torch intra-op threads; yields the count in effect.

    Never raises the count, and calls ``torch.set_num_threads`` only if the count changes
    (lowering it, then restoring it on exit).
    """
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    before = torch.get_num_threads()
    target = min(int(n), before)
    if target == before:
        yield before
        return
    torch.set_num_threads(target)
    try:
        yield target
    finally:
        torch.set_num_threads(before)


def env_for_threads(n: int, env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default: ``os.environ``) that starts a child process (a worker, a
    benchmark) with ``n`` torch/OpenMP/BLAS threads — the safe way to choose a count."""
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    out = dict(os.environ if env is None else env)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        out[var] = str(int(n))
    return out


#: Marks the threads of :func:`_single_thread_pool` (``inside`` True in them).
_POOL_THREAD = threading.local()


@functools.lru_cache(maxsize=None)
def _single_thread_pool(workers: int, pid: int) -> ThreadPoolExecutor:
    """Process ``pid``'s pool of ``workers`` threads, each running torch single-threaded,
    kept for the process's life (a forked child, another pid, gets its own: the parent's
    threads do not exist there). A pool per call, with torch lowered to one thread and raised
    again around it in the calling thread, made 64×64 MNIST inference ≈ 1.3× slower (measured,
    same process)."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix="spicecross-worker")
    barrier = threading.Barrier(workers)

    def one_thread() -> None:
        # torch sets up each thread's OpenMP thread count lazily, at its first get_num_threads
        # or parallel operation, to the count most recently set by *any* thread: done after
        # the set_num_threads(1) below, that would put this worker back on 2 threads as soon
        # as the caller restored its own count (tests/test_inference_speed_paths.py)
        torch.get_num_threads()
        torch.set_num_threads(1)
        _POOL_THREAD.inside = True
        _POOL_THREAD.workers = workers
        barrier.wait()              # every worker thread runs this once

    for f in [pool.submit(one_thread) for _ in range(workers)]:
        f.result()
    return pool


#: Set in a thread by :func:`offering_to_pool`.
_OFFERING = threading.local()


@contextlib.contextmanager
def offering_to_pool(workers: int) -> Iterator[None]:
    """In this block, :func:`map_single_threaded` called from this thread offers its items to
    the pool of ``workers`` single-threaded workers and runs every item no worker has taken
    itself (:func:`fork_join`), whatever this thread's own torch thread count: for a thread
    that runs on one torch thread beside a pool busy with other work (the read-disturb
    stream's inference beside its updates), which idle workers then help."""
    before = getattr(_OFFERING, "workers", None)
    _OFFERING.workers = workers
    try:
        yield
    finally:
        _OFFERING.workers = before


def map_single_threaded(fn: Callable, items, workers: int) -> list:
    """``[fn(item) for item in items]`` in order, every call on one torch thread: shared among
    ``workers`` single-threaded worker threads (:func:`_single_thread_pool`) when ``workers``
    > 1, else (or when called from one of those workers, so that no task waits for the pool
    it runs in) in this thread with torch lowered to one thread. Workers on one thread each do
    not wait at the end of every small operation for a thread the machine's load has
    descheduled. Inside :func:`offering_to_pool`: :func:`fork_join` over that pool."""
    items = list(items)
    offer = getattr(_OFFERING, "workers", None)
    if offer and len(items) > 1 and not getattr(_POOL_THREAD, "inside", False):
        return list(fork_join(*[functools.partial(fn, item) for item in items], workers=offer))
    pool = single_thread_pool(workers)
    if pool is not None:
        return list(pool.map(fn, items))
    with limited_threads(1):
        return [fn(item) for item in items]


def single_thread_pool(workers: int) -> ThreadPoolExecutor | None:
    """The process's pool of ``workers`` single-threaded worker threads
    (:func:`_single_thread_pool`), or None when ``workers`` ≤ 1 or when called from one of
    its threads (run the work in this thread then: no task may wait for the pool it runs in)."""
    if workers > 1 and not getattr(_POOL_THREAD, "inside", False):
        return _single_thread_pool(workers, os.getpid())
    return None


def fork_join(*calls: Callable[[], object], workers: int | None = None) -> tuple:
    """Every call's result, in order: the calls after the first offered to the single-threaded
    workers of the pool of ``workers`` (default: the pool this thread belongs to, else torch's
    thread count) while this thread runs the first on one torch thread; a call no worker has
    taken by then (all busy) runs here too. Safe from inside the pool's own workers (a thread
    only ever waits for a call that is already running), so work can split where it stands;
    with fewer than 2 workers all calls run here."""
    if workers is None:
        workers = getattr(_POOL_THREAD, "workers", None) or torch.get_num_threads()
    if workers < 2 or len(calls) < 2:
        with limited_threads(1):
            return tuple(call() for call in calls)
    pool = _single_thread_pool(workers, os.getpid())
    later = [pool.submit(call) for call in calls[1:]]
    with limited_threads(1):
        out = [calls[0]()]
        out += [call() if f.cancel() else f.result() for call, f in zip(calls[1:], later)]
    return tuple(out)
