"""spicecross.devices: memristor models, each in three forms that must agree.

VTEAM (Kvatinsky et al., IEEE TCAS-II 62(8), 2015):

* :mod:`.vteam` — parameter sets (``PARAMETER_SETS``, ``get_parameter_set``) and the numpy
  reference (``simulate``);
* :mod:`.behavioural` — the ngspice behavioural subcircuit and its transient deck;
* :mod:`.verilog_a` — the Verilog-A source ``spicecross/devices/vteam.va`` (package data),
  compiled with OpenVAF and run in VACASK;
* :mod:`.transient` — what the two SPICE forms share: run checks, names, reading results back.
"""
from .vteam import (PARAMETER_SETS, WINDOWS, VTEAMParams, conductance_s, current_a,
                    get_parameter_set, resistance_ohm, state_derivative_m_per_s,
                    state_for_conductance, window)
from .vteam_reference import SineDrive, full_switching_frequency_hz, simulate, simulate_sine
from .behavioural import ngspice_transient_deck, run_ngspice_transient, vteam_subckt
from .verilog_a import (compile_vteam_osdi, run_vacask_transient, va_source_path,
                        vacask_transient_netlist)
from ..spice.simulators import NGSPICE, VACASK

#: The SPICE transient runner of each simulator (by Simulator.name), each
#: ``run(params, t_stop_s, drive, x0_m) -> (t_s, v_v, i_a, x_m)``.
TRANSIENT_RUNNERS = {NGSPICE.name: run_ngspice_transient, VACASK.name: run_vacask_transient}

__all__ = [
    "PARAMETER_SETS", "WINDOWS", "window", "SineDrive", "VTEAMParams", "conductance_s", "current_a",
    "full_switching_frequency_hz", "get_parameter_set", "resistance_ohm", "simulate",
    "simulate_sine", "state_derivative_m_per_s", "state_for_conductance",
    "ngspice_transient_deck", "run_ngspice_transient", "vteam_subckt",
    "compile_vteam_osdi", "run_vacask_transient", "va_source_path", "vacask_transient_netlist",
    "TRANSIENT_RUNNERS",
]
