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
import os
from collections.abc import Iterator

import torch

__all__ = ["STARTUP_THREADS", "available_cores", "threads_for", "limited_threads", "env_for_threads"]

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
