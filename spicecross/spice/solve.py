"""Solving tile reads with a real simulator: one tile or thousands, in parallel through joblib,
with a content-hash cache so the same netlist is never solved twice.

Backends: ``ngspice`` (the reference users know; Sparse 1.3 makes it slow past 64×64),
``vacask`` (KLU-based, the same SPICE device models as OSDI modules) and ``auto``, which picks
ngspice up to :data:`AUTO_NGSPICE_MAX_CELLS` cells and VACASK above (see BENCHMARKS.md for the
measurement behind that threshold).

Many reads of one programmed tile (thousands of input vectors, e.g. a network check) go through
:func:`solve_reads` / :func:`solve_many_reads`: one simulator run per chunk of vectors (a sweep
point per vector, :meth:`Simulator.emit_reads`), equal to one ``.op`` per vector to ≤ 1e-9.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..circuit.tile import TileSpec
from .cluster import exit_with_parent
from .simulators import (NGSPICE, SIMULATOR_NAMES, VACASK, SimulationError, Simulator,
                         get_simulator)
# One netlist as written (what ``spicecross solve`` runs), its cache and its hash:
from .solve_netlist import (SolveResult, _cache_path, _load_cached, _store_cached,  # noqa: F401
                            default_cache_dir, netlist_hash, read_netlist, resolve_cache_dir,
                            solve_files, solve_text)

BACKENDS = ("auto", *SIMULATOR_NAMES)
AUTO_NGSPICE_MAX_CELLS = 12 * 12


def choose_simulator(spec: TileSpec, backend: str | Simulator = "auto") -> Simulator:
    """The simulator for a tile read: ``backend`` by name (or a Simulator), or for 'auto'
    ngspice up to :data:`AUTO_NGSPICE_MAX_CELLS` cells and VACASK above."""
    if isinstance(backend, Simulator):
        return backend
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return get_simulator(backend)
    return NGSPICE if spec.rows * spec.cols <= AUTO_NGSPICE_MAX_CELLS else VACASK


def choose_backend(spec: TileSpec, backend: str | Simulator = "auto") -> str:
    """The name of :func:`choose_simulator`'s choice ('ngspice' or 'vacask')."""
    return choose_simulator(spec, backend).name


def tile_netlist(spec: TileSpec, g_s: np.ndarray, v_in_v: np.ndarray,
                 simulator: str | Simulator) -> str:
    """The tile read (G in S, V in V) as ``simulator``'s netlist text."""
    return get_simulator(simulator).emit(spec, g_s, v_in_v)


def solve_tile(spec: TileSpec, g_s: np.ndarray, v_in_v: np.ndarray, backend: str = "auto",
               cache_dir: Path | None | str = "default") -> SolveResult:
    """Solve one tile read (G in S, shape (rows, cols); V in V, shape (rows,)) with a simulator."""
    sim = choose_simulator(spec, backend)
    res = solve_text(sim.emit(spec, g_s, v_in_v), sim, resolve_cache_dir(cache_dir))
    if res.ok and res.sense_currents_a.shape != (spec.cols,):
        res.ok, res.error = False, f"expected {spec.cols} sense currents, got {res.sense_currents_a.shape}"
    return res


def _solve_job(job: tuple) -> SolveResult:
    spec, g, v, sim, cdir, parent = job
    exit_with_parent(parent)
    return solve_tile(spec, g, v, sim, cdir)


def solve_many(spec: TileSpec | Sequence[TileSpec], conductances: Iterable[np.ndarray],
               inputs: Iterable[np.ndarray], backend: str = "auto", n_jobs: int | None = None,
               parallel_backend: str = "loky", scheduler: str | None = None,
               cache_dir: Path | None | str = "default", progress: bool = True,
               desc: str = "solving tiles") -> list[SolveResult]:
    """Solve many tile reads in parallel (joblib), in input order, with a progress bar.

    ``spec`` is one TileSpec for all reads or one per read. ``n_jobs`` defaults to the number of
    cores; ``parallel_backend`` is 'loky' (local processes), 'threading', 'dask' (needs
    ``scheduler`` = a running dask scheduler's address, or starts a LocalCluster) or 'ray'.
    Failures come back as ``ok=False`` results; the batch goes on.
    """
    gs, vs = list(conductances), list(inputs)
    if len(gs) != len(vs):
        raise ValueError(f"got {len(gs)} conductance maps but {len(vs)} input vectors")
    specs = list(spec) if isinstance(spec, (list, tuple)) else [spec] * len(gs)
    if len(specs) != len(gs):
        raise ValueError(f"got {len(specs)} TileSpecs for {len(gs)} reads")
    cdir = resolve_cache_dir(cache_dir)
    jobs = [(s, g, v, choose_backend(s, backend), cdir, os.getpid())
            for s, g, v in zip(specs, gs, vs)]
    return _run_parallel(_solve_job, jobs, n_jobs, parallel_backend, scheduler, progress, desc)


def _run_parallel(fn, jobs: list, n_jobs: int | None, parallel_backend: str,
                  scheduler: str | None, progress: bool, desc: str) -> list:
    """``[fn(j) for j in jobs]`` in input order through joblib (``parallel_backend`` 'loky',
    'threading', 'dask' with ``scheduler``, or 'ray'), with a progress bar; serial in this
    process for one loky job."""
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    from .cluster import parallel_context

    n_jobs = n_jobs or os.cpu_count() or 1
    if n_jobs == 1 and parallel_backend == "loky":
        return [fn(j) for j in tqdm(jobs, desc=desc, disable=not progress)]
    with parallel_context(parallel_backend, scheduler, n_jobs):
        gen = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(fn)(j) for j in jobs)
        return list(tqdm(gen, total=len(jobs), desc=desc, disable=not progress))


# -- many reads of one programmed tile per simulator run ---------------------------------------
#: Most input vectors in one reads netlist; larger batches are split into equal chunks of at
#: most this many (benchmarks/spice_reads.py: past it the per-read cost no longer falls
#: measurably, while chunks keep several workers busy on one big batch).
READS_CHUNK_MAX = 256


@dataclass
class ReadsResult:
    """Many reads of one programmed tile, solved as one sweep per chunk of input vectors.

    ``currents_a``: (n, cols) sense currents in A, row k for input vector k (NaN rows for a
    failed chunk); ``ok`` False if any chunk failed, ``error`` naming the vectors and the
    simulator's own words; ``seconds`` the simulator time of the chunks solved now (0 for cache
    hits); ``cached`` True when every chunk came from the cache; ``superposed`` True when the
    simulator solved the unit vectors and the currents are their superposition
    (:mod:`~spicecross.spice.superposition`).
    """

    currents_a: np.ndarray
    ok: bool = True
    error: str = ""
    simulator: str = ""
    simulator_version: str = ""
    netlist_hashes: tuple[str, ...] = ()
    seconds: float = 0.0
    cached: bool = False
    superposed: bool = False


def solve_reads_text(text: str, n: int, simulator: str | Simulator,
                     cache_dir: Path | None = None) -> ReadsResult:
    """Solve one reads netlist of ``n`` input vectors (from :meth:`Simulator.emit_reads`)
    through the cache. Simulator failures come back as ``ok=False`` with its own message."""
    sim = get_simulator(simulator)
    key = f"{sim.name}-reads-{netlist_hash(text)}"
    version = sim.version()
    if cache_dir is not None:
        hit = _load_cached(_cache_path(cache_dir, key))
        if hit is not None and hit[0].ndim == 2 and hit[0].shape[0] == n:
            return ReadsResult(hit[0], True, "", sim.name, hit[2]["version"], (key,), 0.0, True)
    t0 = time.perf_counter()
    try:
        cur = sim.read_tiles(text, n)
    except SimulationError as exc:
        return ReadsResult(np.full((n, 1), np.nan), False, str(exc), sim.name, version, (key,),
                           time.perf_counter() - t0, False)
    dt = time.perf_counter() - t0
    if cache_dir is not None:
        _store_cached(_cache_path(cache_dir, key), cur, {}, sim.name, version)
    return ReadsResult(cur, True, "", sim.name, version, (key,), dt, False)


def _reads_chunk_job(job: tuple) -> ReadsResult:
    spec, g, v, sim_name, cdir, parent = job
    exit_with_parent(parent)
    sim = get_simulator(sim_name)
    res = solve_reads_text(sim.emit_reads(spec, g, v), len(v), sim, cdir)
    if res.ok and res.currents_a.shape != (len(v), spec.cols):
        res.ok, res.error = False, (f"expected {len(v)}×{spec.cols} sense currents, got "
                                    f"{res.currents_a.shape}")
    return res


def _chunk_bounds(n: int, chunk: int) -> list[tuple[int, int]]:
    """Equal consecutive slices of ``range(n)``, each at most ``chunk`` long."""
    if chunk < 1:
        raise ValueError(f"chunk must be ≥ 1 input vector, got {chunk}")
    parts = -(-n // chunk)
    if parts == 0:
        return []
    edges = [round(k * n / parts) for k in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def distinct_rows(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(d, index)``: the rows of ``v`` without repeats, in the order of their first appearance,
    and for each row of ``v`` its row in ``d`` (``d[index] == v``)."""
    if len(v) == 0:
        return v, np.zeros(0, np.int64)
    _, first, inverse = np.unique(v, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return v[first[order]], rank[inverse.reshape(-1)]


@dataclass
class ReadsPlan:
    """The simulator runs of one programmed tile's reads: ``jobs`` (one per chunk of distinct
    input vectors) and ``index``, the row of the distinct vectors each input vector reads."""

    jobs: list[tuple]
    index: np.ndarray


def _reads_jobs(spec: TileSpec, g_s: np.ndarray, v_batch_v: np.ndarray, sim: Simulator,
                cdir: Path | None, chunk: int) -> ReadsPlan:
    """Chunks of the distinct input vectors (a repeated vector on one programmed tile reads the
    same currents, so it is solved once: the MNIST check samples repeat ~17 % of theirs)."""
    g = spec.check_conductances(g_s)
    v, index = distinct_rows(np.atleast_2d(spec.check_inputs(v_batch_v, "input batch")))
    return ReadsPlan([(spec, g, v[a:b], sim.name, cdir, os.getpid())
                      for a, b in _chunk_bounds(len(v), chunk)], index)


def _merge_reads(spec: TileSpec, plan: ReadsPlan, parts: list[ReadsResult],
                 sim: Simulator) -> ReadsResult:
    if not parts:
        return ReadsResult(np.empty((0, spec.cols)), True, "", sim.name, sim.version())
    rows, errors, start = [], [], 0
    for (_, _, v, *_), res in zip(plan.jobs, parts):
        rows.append(res.currents_a if res.ok else np.full((len(v), spec.cols), np.nan))
        if not res.ok:
            errors.append(f"distinct vectors {start}–{start + len(v) - 1}: {res.error}")
        start += len(v)
    return ReadsResult(np.vstack(rows)[plan.index], not errors, "; ".join(errors), sim.name,
                       parts[0].simulator_version,
                       tuple(h for p in parts for h in p.netlist_hashes),
                       sum(p.seconds for p in parts), all(p.cached for p in parts))


def solve_reads(spec: TileSpec, g_s: np.ndarray, v_batch_v: np.ndarray,
                backend: str = "vacask", cache_dir: Path | None | str = "default",
                chunk: int = READS_CHUNK_MAX) -> ReadsResult:
    """Many reads of one programmed tile (G in S, shape (rows, cols)) with input vectors
    ``v_batch_v`` (V, shape (n, rows)): one simulator run per chunk of at most ``chunk``
    vectors instead of one per vector, each chunk cached by its netlist's content hash; a vector
    given more than once is solved once (:func:`distinct_rows`).

    The currents equal one ``.op`` per vector (:func:`solve_tile`) to ≤ 1e-9 relative
    (tests/test_reads.py). Failures come back as ``ok=False``.
    """
    sim = choose_simulator(spec, backend)
    plan = _reads_jobs(spec, g_s, v_batch_v, sim, resolve_cache_dir(cache_dir), chunk)
    return _merge_reads(spec, plan, [_reads_chunk_job(j) for j in plan.jobs], sim)


def solve_many_reads(jobs: Sequence[tuple[TileSpec, np.ndarray, np.ndarray]],
                     backend: str = "vacask", n_jobs: int | None = None,
                     parallel_backend: str = "loky", scheduler: str | None = None,
                     cache_dir: Path | None | str = "default", progress: bool = True,
                     desc: str = "solving reads", chunk: int = READS_CHUNK_MAX,
                     superpose: bool = False) -> list[ReadsResult]:
    """:func:`solve_reads` for many programmed tiles, ``jobs`` = [(spec, G in S, V batch in
    V), …], in input order. Every job's chunks go through the same joblib/dask machinery as
    :func:`solve_many` (so one large batch also spreads over the workers). ``superpose``: a
    linear tile read with more vectors than rows is solved for its unit vectors and the
    currents follow by superposition (:mod:`~spicecross.spice.superposition`)."""
    from .superposition import combine, superpose_jobs

    jobs, plan = superpose_jobs(list(jobs)) if superpose else (jobs, [])
    cdir = resolve_cache_dir(cache_dir)
    per_job, sims = [], []
    for spec, g, v in jobs:
        sims.append(choose_simulator(spec, backend))
        per_job.append(_reads_jobs(spec, g, v, sims[-1], cdir, chunk))
    flat = [j for p in per_job for j in p.jobs]
    parts = _run_parallel(_reads_chunk_job, flat, n_jobs, parallel_backend, scheduler,
                          progress, desc)
    out, k = [], 0
    for (spec, _, _), p, sim in zip(jobs, per_job, sims):
        out.append(_merge_reads(spec, p, parts[k:k + len(p.jobs)], sim))
        k += len(p.jobs)
    return combine(plan, out)
