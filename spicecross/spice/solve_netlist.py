"""Solving one netlist text (or file) as written: one simulator run, parsed to sense currents
(A) and node voltages (V), through a content-hash cache so the same netlist is never solved
twice.

This is what ``spicecross solve`` runs, so it starts fast: without a cache (``--no-cache``)
nothing here imports numpy (the raw file is read into Python floats); the cache's ``.npz``
entries import it when they are read or written. Without a cache the simulator starts before
the netlist's hash is taken (and before hashlib is imported): that work overlaps the run, and
the node voltages are only read from the raw file when :attr:`SolveResult.node_voltages_v` is
first used. :mod:`spicecross.spice.solve` builds tiles, many reads and
the parallel machinery on top and re-exports these names.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from pathlib import Path

from ..errors import UserError
from .simulators import SimulationError, Simulator, get_simulator, simulator_for_path
from .untrusted import check_currents, check_trusted, lines_holding, plain_lines

TYPE_CHECKING = False   # typing, dataclasses and hashlib would cost the simulator's start
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy as np

__all__ = ["SolveResult", "default_cache_dir", "netlist_hash", "read_netlist", "solve_files",
           "solve_text"]


class SolveResult:
    """The outcome of one simulated tile read.

    ``sense_currents``: (cols,) currents into the 0 V sense sources in A as Python floats
    ([NaN] on failure; :attr:`sense_currents_a` is the same as a numpy array);
    ``node_voltages_v``: node name → voltage in V (empty on failure; given as a dict, or as a
    function returning it, called when the attribute is first read).
    """

    _FIELDS = ("sense_currents", "node_voltages_v", "ok", "error", "simulator",
               "simulator_version", "netlist_hash", "seconds", "cached", "label")

    def __init__(self, sense_currents: list[float],
                 node_voltages_v: dict[str, float] | Callable[[], dict[str, float]] | None = None,
                 ok: bool = True, error: str = "", simulator: str = "",
                 simulator_version: str = "", netlist_hash: str = "", seconds: float = 0.0,
                 cached: bool = False, label: str = ""):
        self.sense_currents, self._nodes, self.ok, self.error = (
            sense_currents, {} if node_voltages_v is None else node_voltages_v, ok, error)
        self.simulator, self.simulator_version, self.netlist_hash = (
            simulator, simulator_version, netlist_hash)
        self.seconds, self.cached, self.label = seconds, cached, label

    @property
    def node_voltages_v(self) -> dict[str, float]:
        if callable(self._nodes):
            self._nodes = self._nodes()
        return self._nodes

    @node_voltages_v.setter
    def node_voltages_v(self, value: dict[str, float]) -> None:
        self._nodes = value

    def _values(self) -> tuple:
        return tuple(getattr(self, f) for f in self._FIELDS)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it was

    def __repr__(self) -> str:
        return f"SolveResult({', '.join(f'{f}={getattr(self, f)!r}' for f in self._FIELDS)})"

    def __getstate__(self) -> dict:
        # Node voltages not read yet travel as the plot they are read from (a worker's result
        # to its parent: the raw bytes, about the parsed dict's size, instead of parsing 8 000
        # names of a 64×64 tile there, 3.4 ms of a 120 ms solve); any other reader is called.
        if callable(self._nodes) and not isinstance(self._nodes, functools.partial):
            self.node_voltages_v  # noqa: B018
        return self.__dict__

    @property
    def sense_currents_a(self) -> np.ndarray:
        """:attr:`sense_currents` (A) as a float64 array."""
        import numpy as np

        return np.asarray(self.sense_currents, dtype=np.float64)

    def to_json(self) -> dict:
        d: dict = {"sense_currents": list(self.sense_currents) if self.ok else None}
        if not self.ok:
            d["error"] = self.error
        if self.label:
            d["file"] = self.label
        return d


def _without_comment_lines(text: str) -> str:
    """A :func:`~spicecross.spice.untrusted.plain_lines` text without its comment lines (``*``
    or ``//`` after spaces/tabs), each removed with its ``\n``."""
    comments = {start: end for marker in ("*", "//")
                for start, pos, end in lines_holding(text, marker)
                if not text[start:pos].strip(" \t")}
    parts, prev = [], 0
    for start in sorted(comments):
        parts.append(text[prev:start])
        prev = comments[start] + 1
    parts.append(text[prev:])
    return "".join(parts)


def netlist_hash(text: str) -> str:
    """Content hash (sha256 hex) of a netlist, ignoring comment lines; the cache key.

    Defined as the hash of ``"\\n".join`` of the lines of ``text.splitlines()`` that do not
    start (after blanks) with ``*`` or ``//``. A :func:`~spicecross.spice.untrusted.plain_lines`
    text (the emitters' output) reaches the same string without splitting it into lines
    (tests/test_solve_startup.py holds the two equal)."""
    import hashlib

    if plain_lines(text):
        body = _without_comment_lines(text)
        body = body[:-1] if body.endswith("\n") else body
    else:
        body = "\n".join(ln for ln in text.splitlines()
                         if not ln.lstrip().startswith(("*", "//")))
    return hashlib.sha256(body.encode()).hexdigest()


def default_cache_dir() -> Path:
    """``$SPICECROSS_CACHE`` or ``~/.cache/spicecross/solves``."""
    env = os.environ.get("SPICECROSS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "spicecross" / "solves"


def resolve_cache_dir(cache_dir: Path | None | str) -> Path | None:
    """The cache folder of a ``cache_dir`` argument: "default" → :func:`default_cache_dir`,
    None (or "") → no cache, anything else as a path."""
    return default_cache_dir() if cache_dir == "default" else (Path(cache_dir) if cache_dir else None)


def _cache_path(cache_dir: Path, key: str) -> Path:
    """``<cache>/<first two hex digits of the hash>/<key>.npz`` (keys are
    ``<simulator>[-reads]-<sha256>``: sharding by the hash spreads them over 256 folders)."""
    return cache_dir / key.rsplit("-", 1)[-1][:2] / f"{key}.npz"


def _load_cached(path: Path) -> tuple[np.ndarray, dict[str, float], dict[str, str]] | None:
    """A cache entry, or None when there is none. An entry that cannot be read (truncated,
    corrupt, wrong keys, non-physical values) is deleted, so the netlist is solved again."""
    if not path.is_file():
        return None
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            names = [str(n) for n in z["node_names"]]
            cur = check_currents(z["sense_currents_a"].copy(), "cache")
            return (cur, dict(zip(names, z["node_voltages_v"].tolist())),
                    {"simulator": str(z["simulator"]), "version": str(z["version"])})
    except Exception:  # noqa: BLE001 - any unreadable entry (BadZipFile, EOFError, …) is dropped
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def _store_cached(path: Path, currents: Sequence[float] | np.ndarray, nodes: dict[str, float],
                  simulator: str, version: str) -> None:
    import numpy as np

    from ..store import atomic_path

    with atomic_path(path) as tmp:
        np.savez(tmp, sense_currents_a=np.asarray(currents, dtype=np.float64),
                 node_names=np.array(list(nodes), dtype=str),
                 node_voltages_v=np.array(list(nodes.values()), dtype=np.float64),
                 simulator=simulator, version=version)


def solve_text(text: str, simulator: str | Simulator, cache_dir: Path | None = None,
               label: str = "", while_running: Callable[[], object] | None = None
               ) -> SolveResult:
    """Solve one tile-read netlist text (``simulator`` 'ngspice', 'vacask' or a Simulator),
    through the cache. ``while_running``: called once while the simulator runs (without a
    cache; with one, before it starts).

    Never raises for simulator failures: they come back as ``ok=False`` with the simulator's
    own message in ``error``. A missing simulator still raises (nothing can be solved).
    """
    sim = get_simulator(simulator)
    key = version = ""

    def identify() -> None:     # without a cache: while the simulator runs
        nonlocal key, version
        key, version = f"{sim.name}-{netlist_hash(text)}", sim.version()
        if while_running is not None:
            while_running()

    if cache_dir is not None:
        identify()
        hit = _load_cached(_cache_path(cache_dir, key))
        if hit is not None:
            cur, nodes, meta = hit
            return SolveResult(cur.tolist(), nodes, True, "", sim.name, meta["version"], key,
                               0.0, True, label)
    t0 = time.perf_counter()
    try:
        plot = sim.run(text, while_running=None if cache_dir is not None else identify)[0]
        cur = check_currents(sim.sense_currents(plot), sim.label)
        # read when first used (33 000 names of a 128×128 tile: ~30 ms), unless stored now;
        # a partial of the simulator's reader pickles (SolveResult.__getstate__)
        nodes = (sim.node_voltages(plot) if cache_dir is not None
                 else functools.partial(sim.node_voltages, plot))
    except SimulationError as exc:     # the simulator ran: identify() has been called
        return SolveResult([math.nan], {}, False, str(exc), sim.name, version, key,
                           time.perf_counter() - t0, False, label)
    dt = time.perf_counter() - t0
    if cache_dir is not None:
        _store_cached(_cache_path(cache_dir, key), cur, nodes, sim.name, version)
    return SolveResult(cur, nodes, True, "", sim.name, version, key, dt, False, label)


def read_netlist(path: str | Path) -> str:
    """A netlist file's text: UTF-8, or Latin-1 when it is not valid UTF-8 (comments with µ or
    Ω written by older tools; ngspice reads such files as bytes). UserError naming the file
    when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"netlist not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"netlist {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    if b"\0" in data:
        raise UserError(f"netlist {str(path)!r} is a binary file, not a netlist")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def solve_files(paths: Sequence[str | Path], n_jobs: int | None = None,
                cache_dir: Path | None | str = "default", progress: bool = True,
                trust: bool = False, while_running: Callable[[], object] | None = None
                ) -> list[SolveResult]:
    """Solve netlist files as written (``.cir`` → ngspice, ``.sim`` → VACASK), in threads (the
    work is in the simulator processes, which end with this one). ``cache_dir``: a folder,
    None (no cache) or "default" (:func:`default_cache_dir`).

    Every file is read and, unless ``trust``, checked to be inert
    (:func:`~spicecross.spice.untrusted.unsafe_line`) before any simulator runs: a netlist with
    ``.control`` blocks, ``shell`` or ``postprocess`` lines raises UserError naming the line.
    ``while_running``: called once, while the first simulator runs (:func:`solve_text`).
    """
    cdir = resolve_cache_dir(cache_dir)
    jobs = []
    for p in paths:
        text = read_netlist(p)
        sim = simulator_for_path(p).name
        if not trust:
            check_trusted(text, sim, str(p))
        jobs.append((text, sim, cdir, str(p)))
    n_jobs = min(n_jobs or os.cpu_count() or 1, max(len(jobs), 1))
    if n_jobs == 1:
        return [solve_text(*j, while_running=while_running if k == 0 else None)
                for k, j in enumerate(jobs)]
    if while_running is not None:
        while_running()
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs, backend="threading")(delayed(solve_text)(*j) for j in jobs)
