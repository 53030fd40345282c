"""VTEAM memristor model (Kvatinsky, Ramadan, Friedman, Kolodny, "VTEAM: A General Model for
Voltage-Controlled Memristors", IEEE TCAS-II 62(8):786-790, 2015): the parameter sets, R(x) and
its inverse, the state equation and its windows (the drives and the numpy reference integrator
are in :mod:`.vteam_reference`).

This is one of three forms of the same model that must agree (see also
:mod:`spicecross.devices.behavioural` for the ngspice subcircuit and
:mod:`spicecross.devices.verilog_a` for the Verilog-A source run in VACASK).

Model, as in MemTorch's ``memtorch/bh/memristor/VTEAM.py`` (by default no window function, the
state is clipped to its bounds):

* state ``x`` (m) in ``[x_on, x_off]``; ``x_on`` is the low-resistance (ON) end;
* ``dx/dt = k_off (v/v_off - 1)^alpha_off`` for ``v > v_off > 0`` (``k_off > 0``: x grows, R grows),
  ``dx/dt = k_on (v/v_on - 1)^alpha_on`` for ``v < v_on < 0`` (``k_on < 0``: x shrinks, R falls),
  ``0`` in between — a read below both thresholds leaves the state exactly unchanged;
* linear ``R(x) = r_on + (r_off - r_on) (x - x_on)/(x_off - x_on)`` or exponential
  ``R(x) = r_on exp(lambda (x - x_on)/(x_off - x_on))``, ``lambda = ln(r_off/r_on)``;
* ohmic port: ``I = V / R(x)`` (so every I-V loop is pinched at the origin).

Window functions (VTEAM paper, Sec. II; ``window``/``window_p`` of :class:`VTEAMParams`):
``dx/dt`` is multiplied by ``f(w)`` at the normalised state ``w`` (clamped to [0, 1]):

* ``none``: ``f = 1`` (the clip alone; MemTorch's model and the default);
* ``joglekar``: ``f = 1 − |2w − 1|^(2p)`` (Joglekar & Wolf, Eur. J. Phys. 30, 2009);
* ``biolek``: ``f = 1 − |w − stp(−v)|^(2p)``, i.e. ``1 − w^(2p)`` while x grows (v > v_off)
  and ``1 − (1 − w)^(2p)`` while it shrinks (Biolek et al., Radioengineering 18(2), 2009);
* ``prodromakis``: ``f = 1 − ((w − 1/2)² + 3/4)^p`` (Prodromakis et al., IEEE TED 58(9), 2011,
  with its scale j = 1).

Joglekar and Prodromakis vanish at both bounds: a device exactly at ``w = 0`` or ``1`` never
moves (their terminal-state problem). The clip stays on for every window.

Sign convention: a positive voltage across the device (p above n) above ``v_off`` switches it OFF
(towards ``r_off``); a negative voltage below ``v_on`` switches it ON.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

R_MODELS = ("linear", "exponential")
#: Window functions of the state equation, by name (see the module docstring).
WINDOWS = ("none", "joglekar", "biolek", "prodromakis")


_FLOAT_FIELDS = ("r_on_ohm", "r_off_ohm", "d_m", "k_on_m_per_s", "k_off_m_per_s", "alpha_on",
                 "alpha_off", "v_on_v", "v_off_v", "x_on_m", "x_off_m", "dt_s", "window_p")


@dataclass(frozen=True)
class VTEAMParams:
    """One VTEAM parameter set, in SI units (the unit is part of every name).

    ``d_m`` is the device thickness; the model itself only uses ``x_on_m``/``x_off_m`` (MemTorch
    uses ``d`` where ``x_off - x_on`` belongs, which is the same thing for its sets, x_on = 0 and
    x_off = d). ``dt_s`` is the time step of the reference integrator (MemTorch's
    ``time_series_resolution``); the SPICE forms choose their own steps. ``window`` names the
    window function (:data:`WINDOWS`) and ``window_p`` is its exponent p (> 0). ``source`` cites
    where the numbers come from.
    """

    r_on_ohm: float
    r_off_ohm: float
    d_m: float
    k_on_m_per_s: float
    k_off_m_per_s: float
    alpha_on: float
    alpha_off: float
    v_on_v: float
    v_off_v: float
    x_on_m: float
    x_off_m: float
    r_model: str = "linear"
    dt_s: float = 1e-10
    window: str = "none"
    window_p: float = 1.0
    source: str = field(default="user-defined", compare=False)

    def __post_init__(self) -> None:
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"VTEAMParams.{name} must be a real number, got {value!r}")
            if not math.isfinite(float(value)):
                raise ValueError(f"VTEAMParams.{name} must be finite, got {value!r}")
            object.__setattr__(self, name, float(value))

        def bad(name: str, rule: str) -> ValueError:
            return ValueError(f"VTEAMParams.{name} must be {rule}, got {getattr(self, name)!r}")

        if self.r_on_ohm <= 0:
            raise bad("r_on_ohm", "> 0")
        if self.r_off_ohm <= self.r_on_ohm:
            raise bad("r_off_ohm", f"> r_on_ohm ({self.r_on_ohm!r})")
        if self.d_m <= 0:
            raise bad("d_m", "> 0")
        if self.k_on_m_per_s >= 0:
            raise bad("k_on_m_per_s", "< 0 (VTEAM convention: v < v_on moves x towards x_on)")
        if self.k_off_m_per_s <= 0:
            raise bad("k_off_m_per_s", "> 0 (VTEAM convention: v > v_off moves x towards x_off)")
        if self.alpha_on <= 0:
            raise bad("alpha_on", "> 0")
        if self.alpha_off <= 0:
            raise bad("alpha_off", "> 0")
        if self.v_on_v >= 0:
            raise bad("v_on_v", "< 0 (the ON threshold is negative)")
        if self.v_off_v <= 0:
            raise bad("v_off_v", "> 0 (the OFF threshold is positive)")
        if self.x_off_m <= self.x_on_m:
            raise bad("x_off_m", f"> x_on_m ({self.x_on_m!r})")
        if self.r_model not in R_MODELS:
            raise bad("r_model", "'linear' or 'exponential'")
        if self.dt_s <= 0:
            raise bad("dt_s", "> 0")
        if self.window not in WINDOWS:
            raise bad("window", f"one of {', '.join(WINDOWS)}")
        if self.window_p <= 0:
            raise bad("window_p", "> 0")
        if not isinstance(self.source, str):
            raise bad("source", "a string (a citation)")

    # -- derived quantities -------------------------------------------------------------------
    @property
    def x_span_m(self) -> float:
        return self.x_off_m - self.x_on_m

    @property
    def lambda_(self) -> float:
        """ln(r_off/r_on), the exponent of the exponential R(x)."""
        return math.log(self.r_off_ohm / self.r_on_ohm)

    def replace(self, **changes) -> "VTEAMParams":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


PARAMETER_SETS: dict[str, VTEAMParams] = {
    "memtorch_default": VTEAMParams(
        r_on_ohm=50.0, r_off_ohm=1000.0, d_m=3e-9, k_on_m_per_s=-10.0, k_off_m_per_s=5e-4,
        alpha_on=3.0, alpha_off=1.0, v_on_v=-0.2, v_off_v=0.02, x_on_m=0.0, x_off_m=3e-9,
        r_model="linear", dt_s=1e-10,
        source=("MemTorch VTEAM defaults: memtorch/bh/memristor/VTEAM.py, "
                "github.com/coreylammie/MemTorch (Lammie et al., Neurocomputing 485, 2022)")),
    "pt_hf_ti": VTEAMParams(
        r_on_ohm=100.0, r_off_ohm=2.5e3, d_m=10e-9, k_on_m_per_s=-80.0, k_off_m_per_s=4.03e-8,
        alpha_on=3.0, alpha_off=1.0, v_on_v=-0.53, v_off_v=0.5, x_on_m=0.0, x_off_m=10e-9,
        r_model="linear", dt_s=1e-6,
        source=("Pt/Hf/Ti VTEAM set of MemTorch's case study (github.com/coreylammie/MemTorch "
                "v1.1.6, memtorch/examples/legacy/CaseStudy.ipynb, reference_memristor_params): "
                "r_on 100 Ω, r_off 2.5 kΩ, d 10 nm, x_on 0, x_off 10 nm, k_on -80 m/s, "
                "k_off 4.03e-8 m/s, alpha_on 3, alpha_off 1, v_on -0.53 V, v_off 0.5 V, "
                "time_series_resolution 1e-6 s (dt_s); r_model linear: R = r_on + "
                "(r_off - r_on)·x/d as memtorch/bh/memristor/VTEAM.py current() and "
                "set_conductance() compute it (VTEAM: Kvatinsky et al., IEEE TCAS-II 62(8), "
                "2015)")),
}


def get_parameter_set(name: str) -> VTEAMParams:
    """The named parameter set; ValueError naming the known sets otherwise."""
    try:
        return PARAMETER_SETS[name]
    except KeyError:
        raise ValueError(f"unknown VTEAM parameter set {name!r}; known: "
                         f"{', '.join(sorted(PARAMETER_SETS))}") from None


# -- model equations ----------------------------------------------------------------------------
def normalised_state(params: VTEAMParams, x_m) -> np.ndarray:
    """w = (x - x_on)/(x_off - x_on), clipped to [0, 1]."""
    w = (np.asarray(x_m, dtype=np.float64) - params.x_on_m) / params.x_span_m
    return np.clip(w, 0.0, 1.0)


def resistance_at_state_ohm(w, r_on_ohm, r_off_ohm, r_model: str = "linear") -> np.ndarray:
    """R (Ω) at the normalised state ``w`` in [0, 1] for bounds ``r_on``/``r_off`` (Ω, scalars
    or per-device arrays): linear ``R_on + (R_off − R_on)·w`` or exponential
    ``R_on·exp(ln(R_off/R_on)·w)`` (Kvatinsky et al. 2015)."""
    w = np.asarray(w, dtype=np.float64)
    if r_model == "exponential":
        return r_on_ohm * np.exp(np.log(np.divide(r_off_ohm, r_on_ohm)) * w)
    return r_on_ohm + (np.subtract(r_off_ohm, r_on_ohm)) * w


def state_at_resistance(r_ohm, r_on_ohm, r_off_ohm, r_model: str = "linear") -> np.ndarray:
    """The inverse of :func:`resistance_at_state_ohm`: the normalised state ``w`` (not clipped)
    at which a device with bounds ``r_on``/``r_off`` (Ω) has resistance ``r_ohm``."""
    r = np.asarray(r_ohm, dtype=np.float64)
    if r_model == "exponential":
        return np.log(r / r_on_ohm) / np.log(np.divide(r_off_ohm, r_on_ohm))
    return (r - r_on_ohm) / np.subtract(r_off_ohm, r_on_ohm)


def resistance_ohm(params: VTEAMParams, x_m) -> np.ndarray:
    """R(x) (Ω); x outside [x_on, x_off] is taken at the nearer bound."""
    return resistance_at_state_ohm(normalised_state(params, x_m), params.r_on_ohm,
                                   params.r_off_ohm, params.r_model)


def conductance_s(params: VTEAMParams, x_m) -> np.ndarray:
    """1/R(x) (S)."""
    return 1.0 / resistance_ohm(params, x_m)


def conductance_at_state_s(params: VTEAMParams, w) -> np.ndarray:
    """1/R (S) at normalised states ``w`` (clipped to [0, 1])."""
    w = np.clip(np.asarray(w, dtype=np.float64), 0.0, 1.0)
    return 1.0 / resistance_at_state_ohm(w, params.r_on_ohm, params.r_off_ohm, params.r_model)


def state_at_conductance(params: VTEAMParams, g_s) -> np.ndarray:
    """Normalised states w in [0, 1] of conductances ``g_s`` (S), g clipped to
    [1/r_off, 1/r_on] first (0 S reads as r_off)."""
    r = 1.0 / np.clip(np.asarray(g_s, dtype=np.float64), 1.0 / params.r_off_ohm,
                      1.0 / params.r_on_ohm)
    w = state_at_resistance(r, params.r_on_ohm, params.r_off_ohm, params.r_model)
    return np.clip(w, 0.0, 1.0)


def state_for_conductance(params: VTEAMParams, g_s) -> np.ndarray:
    """The state x (m) whose conductance is g; g is clipped to [1/r_off, 1/r_on] first (as
    MemTorch's ``set_conductance`` does). ValueError for g <= 0 or not finite."""
    g = np.asarray(g_s, dtype=np.float64)
    if not np.all(np.isfinite(g)) or np.any(g <= 0):
        raise ValueError("state_for_conductance: conductances must be finite and > 0 S")
    return params.x_on_m + state_at_conductance(params, g) * params.x_span_m


def state_derivative_m_per_s(params: VTEAMParams, v_v) -> np.ndarray:
    """dx/dt (m/s) at voltage v (V) before clipping: k_off (v/v_off - 1)^alpha_off above v_off,
    k_on (v/v_on - 1)^alpha_on below v_on, else 0."""
    v = np.asarray(v_v, dtype=np.float64)
    off = np.maximum(v / params.v_off_v - 1.0, 0.0)     # > 0 only for v > v_off
    on = np.where(v < params.v_on_v, v / params.v_on_v - 1.0, 0.0)  # > 0 only for v < v_on
    return (params.k_off_m_per_s * np.where(v > params.v_off_v, off ** params.alpha_off, 0.0)
            + params.k_on_m_per_s * np.where(v < params.v_on_v, on ** params.alpha_on, 0.0))


def window(params: VTEAMParams, w, rate) -> np.ndarray:
    """The window ``f(w)`` of ``params.window`` at normalised state ``w`` (clamped to [0, 1])
    for motion of sign ``rate`` (only Biolek's depends on it: > 0 while x grows)."""
    w = np.clip(np.asarray(w, dtype=np.float64), 0.0, 1.0)
    p2 = 2.0 * params.window_p
    if params.window == "joglekar":
        return 1.0 - np.abs(2.0 * w - 1.0) ** p2
    if params.window == "biolek":
        return 1.0 - np.where(np.asarray(rate) > 0, w, 1.0 - w) ** p2
    if params.window == "prodromakis":
        return 1.0 - ((w - 0.5) ** 2 + 0.75) ** params.window_p
    return np.ones_like(w)


def current_a(params: VTEAMParams, v_v, x_m) -> np.ndarray:
    """I = V / R(x) (A), current flowing from p through the device to n."""
    return np.asarray(v_v, dtype=np.float64) / resistance_ohm(params, x_m)
