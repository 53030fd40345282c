"""Solving tile reads with a real simulator: one tile or thousands, in parallel through joblib,
with a content-hash cache so the same netlist is never solved twice.

Backends: ``ngspice`` (the reference users know; Sparse 1.3 makes it slow past 64×64),
``vacask`` (KLU-based, the same SPICE device models as OSDI modules) and ``auto``, which picks
ngspice up to :data:`AUTO_NGSPICE_MAX_CELLS` cells and VACASK above (see BENCHMARKS.md for the
measurement behind that threshold).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..circuit.netlist import netlist_hash
from ..circuit.tile import TileSpec
from .simulators import (NGSPICE, SIMULATOR_NAMES, VACASK, SimulationError, Simulator,
                         get_simulator, simulator_for_path)

BACKENDS = ("auto", *SIMULATOR_NAMES)
AUTO_NGSPICE_MAX_CELLS = 12 * 12


@dataclass
class SolveResult:
    """The outcome of one simulated tile read.

    ``sense_currents_a``: (cols,) currents into the 0 V sense sources in A (NaN on failure);
    ``node_voltages_v``: node name → voltage in V (empty on failure).
    """

    sense_currents_a: np.ndarray
    node_voltages_v: dict[str, float] = field(default_factory=dict)
    ok: bool = True
    error: str = ""
    simulator: str = ""
    simulator_version: str = ""
    netlist_hash: str = ""
    seconds: float = 0.0
    cached: bool = False
    label: str = ""

    def to_json(self) -> dict:
        d: dict = {"sense_currents": [float(x) for x in self.sense_currents_a] if self.ok else None}
        if not self.ok:
            d["error"] = self.error
        if self.label:
            d["file"] = self.label
        return d


def default_cache_dir() -> Path:
    """``$SPICECROSS_CACHE`` or ``~/.cache/spicecross/solves``."""
    env = os.environ.get("SPICECROSS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "spicecross" / "solves"


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


def _cache_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / key[:2] / f"{key}.npz"


def _load_cached(path: Path) -> tuple[np.ndarray, dict[str, float], dict[str, str]] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            names = [str(n) for n in z["node_names"]]
            return (z["sense_currents_a"].copy(), dict(zip(names, z["node_voltages_v"].tolist())),
                    {"simulator": str(z["simulator"]), "version": str(z["version"])})
    except (OSError, KeyError, ValueError):
        return None


def _store_cached(path: Path, currents: np.ndarray, nodes: dict[str, float], simulator: str,
                  version: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, sense_currents_a=currents, node_names=np.array(list(nodes), dtype=str),
             node_voltages_v=np.array(list(nodes.values()), dtype=np.float64),
             simulator=simulator, version=version)
    os.replace(tmp, path)


def solve_text(text: str, simulator: str | Simulator, cache_dir: Path | None = None,
               label: str = "") -> SolveResult:
    """Solve one tile-read netlist text (``simulator`` 'ngspice', 'vacask' or a Simulator),
    through the cache.

    Never raises for simulator failures: they come back as ``ok=False`` with the simulator's
    own message in ``error``. A missing simulator still raises (nothing can be solved).
    """
    sim = get_simulator(simulator)
    key = f"{sim.name}-{netlist_hash(text)}"
    version = sim.version()
    if cache_dir is not None:
        hit = _load_cached(_cache_path(cache_dir, key))
        if hit is not None:
            cur, nodes, meta = hit
            return SolveResult(cur, nodes, True, "", sim.name, meta["version"], key, 0.0, True, label)
    t0 = time.perf_counter()
    try:
        cur, nodes = sim.read_tile(text)
    except SimulationError as exc:
        return SolveResult(np.array([np.nan]), {}, False, str(exc), sim.name, version, key,
                           time.perf_counter() - t0, False, label)
    dt = time.perf_counter() - t0
    if cache_dir is not None:
        _store_cached(_cache_path(cache_dir, key), cur, nodes, sim.name, version)
    return SolveResult(cur, nodes, True, "", sim.name, version, key, dt, False, label)


def tile_netlist(spec: TileSpec, g_s: np.ndarray, v_in_v: np.ndarray,
                 simulator: str | Simulator) -> str:
    """The tile read (G in S, V in V) as ``simulator``'s netlist text."""
    return get_simulator(simulator).emit(spec, g_s, v_in_v)


def solve_tile(spec: TileSpec, g_s: np.ndarray, v_in_v: np.ndarray, backend: str = "auto",
               cache_dir: Path | None | str = "default") -> SolveResult:
    """Solve one tile read (G in S, shape (rows, cols); V in V, shape (rows,)) with a simulator."""
    sim = choose_simulator(spec, backend)
    res = solve_text(sim.emit(spec, g_s, v_in_v), sim, _resolve_cache_dir(cache_dir))
    if res.ok and res.sense_currents_a.shape != (spec.cols,):
        res.ok, res.error = False, f"expected {spec.cols} sense currents, got {res.sense_currents_a.shape}"
    return res


def _resolve_cache_dir(cache_dir: Path | None | str) -> Path | None:
    return default_cache_dir() if cache_dir == "default" else (Path(cache_dir) if cache_dir else None)


def _solve_job(job: tuple) -> SolveResult:
    spec, g, v, sim, cdir = job
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
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    from .cluster import parallel_context

    gs, vs = list(conductances), list(inputs)
    if len(gs) != len(vs):
        raise ValueError(f"got {len(gs)} conductance maps but {len(vs)} input vectors")
    specs = list(spec) if isinstance(spec, (list, tuple)) else [spec] * len(gs)
    if len(specs) != len(gs):
        raise ValueError(f"got {len(specs)} TileSpecs for {len(gs)} reads")
    cdir = _resolve_cache_dir(cache_dir)
    jobs = [(s, g, v, choose_backend(s, backend), cdir) for s, g, v in zip(specs, gs, vs)]
    n_jobs = n_jobs or os.cpu_count() or 1
    if n_jobs == 1 and parallel_backend == "loky":
        return [_solve_job(j) for j in tqdm(jobs, desc=desc, disable=not progress)]
    with parallel_context(parallel_backend, scheduler, n_jobs):
        gen = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(_solve_job)(j) for j in jobs)
        return list(tqdm(gen, total=len(jobs), desc=desc, disable=not progress))


def solve_files(paths: Sequence[str | Path], n_jobs: int | None = None,
                cache_dir: Path | None | str = "default", progress: bool = True) -> list[SolveResult]:
    """Solve netlist files as written (``.cir`` → ngspice, ``.sim`` → VACASK)."""
    from joblib import Parallel, delayed

    cdir = _resolve_cache_dir(cache_dir)
    jobs = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"netlist not found: {path}")
        jobs.append((path.read_text(), simulator_for_path(path).name, cdir, str(path)))
    n_jobs = min(n_jobs or os.cpu_count() or 1, max(len(jobs), 1))
    if n_jobs == 1:
        return [solve_text(*j) for j in jobs]
    return Parallel(n_jobs=n_jobs)(delayed(solve_text)(*j) for j in jobs)
