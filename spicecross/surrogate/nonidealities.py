"""Device non-idealities of a programmed crossbar, each a documented model with its source.

All functions take and return device conductances in S as float64 numpy arrays of any shape
(the analog layers pass ``(2, row_tiles, col_tiles, rows, cols)``: both arrays of every
double-column pair). Random draws come from a ``numpy.random.Generator`` the caller seeds, so
every result is reproducible from ``AnalogConfig.seed`` (see :mod:`spicecross.surrogate.array`).

Order in which the analog layers apply them, and why:

* at programming time (the array as it leaves the write step; the DAC and ADC ranges are
  calibrated on this array): finite conductance states → device-to-device variability →
  stuck-at faults;
* in the field, after calibration and without recalibrating (the ADC range is fixed hardware):
  endurance (the array has been reprogrammed ``cycles`` times) → retention (``time`` seconds
  since programming).

Models
------
Finite conductance states (:func:`quantize_states`)
    ``n`` levels linearly spaced in conductance between ``1/R_off`` and ``1/R_on`` (MemTorch's
    ``FiniteConductanceStates``); each target is rounded to the nearest level. Unlike MemTorch
    (its issue #140: any error silently fell back to unquantized weights), nothing here falls
    back: a bad ``n`` is a ValueError.

Device-to-device variability (:func:`apply_variability`)
    Each device gets its own ``R_on,i ~ N(R_on, σ_on)`` and ``R_off,i ~ N(R_off, σ_off)``, as in
    MemTorch's case study (``r_off ~ N(2.5e3, 50)``, ``r_on ~ N(100, 25)`` for Pt/Hf/Ti), and
    is programmed open loop to the VTEAM state ``w`` that gives the target conductance on a
    nominal device; its actual resistance is then ``R(w)`` with its own bounds (linear
    ``R = R_on,i + (R_off,i − R_on,i)·w``, or exponential ``R = R_on,i·(R_off,i/R_on,i)^w``,
    Kvatinsky et al. 2015). So variability acts on every level, not only where a target hits
    the nominal bounds (MemTorch's write only clips to each device's own range, which
    ``compat="memtorch"`` reproduces with
    :func:`~spicecross.surrogate.memtorch_compat.program_clip`). Samples are truncated at
    ``R_on,i ≥ 1 Ω`` and ``R_off,i ≥ 1.01·R_on,i`` to stay physical.

Stuck-at faults (:func:`apply_stuck_at`)
    Each device independently stuck in its high-resistance state (``1/R_off,i``) with
    probability ``p_hrs`` or in its low-resistance state (``1/R_on,i``) with probability
    ``p_lrs`` (MemTorch's ``DeviceFaults``, ``lrs_proportion``/``hrs_proportion``). A device
    stuck at LRS turns a (usually small) weight into a full-scale one, which is why LRS faults
    hurt far more than HRS faults.

Endurance (:func:`apply_endurance`)
    The empirical metal-oxide RRAM endurance/retention model of C. Lammie, M. Rahimi Azghadi
    and D. Ielmini, "Empirical metal-oxide RRAM device endurance and retention model for deep
    learning simulations", Semicond. Sci. Technol. 36 065003 (2021), as MemTorch implements it
    (``memtorch/bh/nonideality/endurance_retention_models/empirical_metal_oxide_RRAM.py`` and
    the ``GeneralModel`` of github.com/coreylammie/SST-Reproducibility), equations re-derived
    here:

    * failure threshold ``x_th = p0·exp(p1·s + p2·τ)``, ``s`` the cell size (nm),
      ``τ = min(T_thr/T, 1)`` (temperature T in K, T_thr the temperature at which devices
      start to fail);
    * devices below the convergence resistance ``R_c`` (LRS) use ``p_lrs``, those above (HRS)
      ``p_hrs``; for ``x ≤ x_th`` nothing changes;
    * ``sudden`` mode: for ``x > x_th`` the resistance jumps to the stable value
      (``R_stable,lrs`` / ``R_stable,hrs``);
    * ``gradual`` mode: ``R(x) = R_0·(x/x_th)^(p3·(p1·s + p2·τ))``, i.e.
      ``log10 R`` grows linearly in ``log10 x`` past the threshold.

    Differences from MemTorch, on purpose: ``R_c = (R_on + R_off)/2`` of the device set
    (MemTorch writes ``r_on_mean + r_off_mean/2``, an operator-precedence slip, and its means
    are VTEAM's class defaults whatever device set is passed, so its R_c is 550 Ω; the
    ``compat="memtorch"`` setting passes that value, see
    :func:`~spicecross.surrogate.memtorch_compat.endurance_convergence_ohm`); and in
    ``gradual`` mode the resistances are not allowed to cross ``R_c`` (the model's
    convergence point; unbounded they would, as in MemTorch). ``τ = min(T_thr/T, 1)`` is the
    builtin ``min`` of two numbers, as MemTorch writes it. Two
    named parameter sets (:data:`ENDURANCE_MODELS`): ``lammie2021_gradual``, the fit to HfO2
    devices of the SST paper (Fig. 6A, ``simulate_6A.py``: p0 = 10, p1 = ln(1000)/10,
    p3 = 0.01762 (LRS) / −0.02295 (HRS), cell size 10 nm, threshold 10⁴ cycles; p2 = 0: the
    fit has no temperature dependence, so ``temperature_k`` has no effect with this set), and
    ``memtorch_tutorial_sudden``, the values of MemTorch's tutorial notebook
    (``memtorch/examples/Tutorial.ipynb``: sudden, p = [1, 0, 0, 0] → threshold 1 cycle,
    stable 100 Ω / 1000 Ω, 10 nm, 350 K), which the seed paper most likely ran.

Retention (:func:`apply_retention`)
    Power-law conductance drift ``G(t) = G(t0)·(t/t0)^(−ν)`` for ``t > t0`` (I. Boybat et al.,
    "Impact of conductance drift on multi-PCM synaptic architectures", NVMTS 2018), as
    MemTorch's ``conductance_drift.py`` (its tutorial: ``t0 = 1 s``, ``ν = 0.1``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from ..devices.vteam import resistance_at_state_ohm, state_at_resistance

__all__ = [
    "DeviceWindow",
    "EnduranceParams",
    "ENDURANCE_MODELS",
    "NonIdealityConfig",
    "apply_endurance",
    "apply_retention",
    "apply_stuck_at",
    "apply_variability",
    "quantize_states",
    "sample_device_windows",
]


@dataclass(frozen=True)
class EnduranceParams:
    """One parameter set of the Lammie–Rahimi Azghadi–Ielmini endurance model (see module doc).

    ``p_lrs``/``p_hrs`` are ``(p0, p1, p2, p3)``; ``stable_*_ohm`` are used by ``sudden`` mode
    (``None``: the device set's R_on / R_off).
    """

    mode: str
    p_lrs: tuple[float, float, float, float]
    p_hrs: tuple[float, float, float, float]
    stable_lrs_ohm: float | None = None
    stable_hrs_ohm: float | None = None
    cell_size_nm: float = 10.0
    temperature_threshold_k: float = 298.0
    source: str = ""

    def threshold_cycles(self, p: tuple[float, float, float, float], temperature_k: float) -> float:
        """``x_th = p0·exp(p1·s + p2·min(T_thr/T, 1))``."""
        tau = min(self.temperature_threshold_k / temperature_k, 1.0)
        return p[0] * math.exp(p[1] * self.cell_size_nm + p[2] * tau)

    def exponent(self, p: tuple[float, float, float, float], temperature_k: float) -> float:
        """Gradual-mode slope of log10 R against log10 x: ``p3·(p1·s + p2·τ)``."""
        tau = min(self.temperature_threshold_k / temperature_k, 1.0)
        return p[3] * (p[1] * self.cell_size_nm + p[2] * tau)


ENDURANCE_MODELS: dict[str, EnduranceParams] = {
    "lammie2021_gradual": EnduranceParams(
        mode="gradual",
        p_lrs=(10.0, math.log(1000.0) / 10.0, 0.0, 0.01761938501608977),
        p_hrs=(10.0, math.log(1000.0) / 10.0, 0.0, -0.022953419050669107),
        cell_size_nm=10.0, temperature_threshold_k=298.0,
        source=("Lammie, Rahimi Azghadi, Ielmini, Semicond. Sci. Technol. 36 065003 (2021), "
                "HfO2 endurance fit of Fig. 6A (github.com/coreylammie/SST-Reproducibility, "
                "simulate_6A.py, v_stop at its optimum 1.5 V)")),
    "memtorch_tutorial_sudden": EnduranceParams(
        mode="sudden", p_lrs=(1.0, 0.0, 0.0, 0.0), p_hrs=(1.0, 0.0, 0.0, 0.0),
        stable_lrs_ohm=100.0, stable_hrs_ohm=1000.0, cell_size_nm=10.0,
        temperature_threshold_k=298.0,
        source=("MemTorch tutorial notebook memtorch/examples/Tutorial.ipynb "
                "(github.com/coreylammie/MemTorch): sudden failure, p = [1, 0, 0, 0], "
                "stable 100 Ω / 1000 Ω")),
}


@dataclass(frozen=True)
class NonIdealityConfig:
    """Non-ideality settings (all off by default). Resistances in Ω, times in s, T in K."""

    sigma_r_on_ohm: float = 0.0          # device-to-device σ of R_on
    sigma_r_off_ohm: float = 0.0         # device-to-device σ of R_off
    stuck_hrs_p: float = 0.0             # probability a device is stuck at HRS
    stuck_lrs_p: float = 0.0             # probability a device is stuck at LRS
    endurance_cycles: float = 0.0        # SET/RESET cycles the array has been through (0: fresh)
    endurance_model: str = "lammie2021_gradual"
    temperature_k: float = 300.0         # operating temperature of the endurance model
    retention_s: float = 0.0             # time since programming (0: none)
    drift_coefficient: float = 0.1       # ν of the drift power law
    retention_t0_s: float = 1.0          # time at which the programmed conductances hold

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> ValueError:
            return ValueError(f"{name} must be {rule}, got {getattr(self, name)!r}")

        for f in fields(self):
            if f.name == "endurance_model":
                continue
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(float(v)):
                raise bad(f.name, "a finite number")
        for name in ("sigma_r_on_ohm", "sigma_r_off_ohm", "endurance_cycles", "retention_s"):
            if getattr(self, name) < 0:
                raise bad(name, "≥ 0")
        for name in ("stuck_hrs_p", "stuck_lrs_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "a probability in [0, 1]")
        if self.stuck_hrs_p + self.stuck_lrs_p > 1.0:
            raise ValueError(f"stuck_hrs_p + stuck_lrs_p must be ≤ 1, got "
                             f"{self.stuck_hrs_p} + {self.stuck_lrs_p}")
        if self.endurance_model not in ENDURANCE_MODELS:
            raise ValueError(f"endurance_model must be one of {sorted(ENDURANCE_MODELS)}, "
                             f"got {self.endurance_model!r}")
        if self.temperature_k <= 0:
            raise bad("temperature_k", "> 0 K")
        if not 0.0 <= self.drift_coefficient <= 1.0:
            raise bad("drift_coefficient", "in [0, 1]")
        if self.retention_t0_s <= 0:
            raise bad("retention_t0_s", "> 0 s")

    @property
    def aging_active(self) -> bool:
        return bool(self.endurance_cycles > 0 or self.retention_s > self.retention_t0_s)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NonIdealityConfig":
        known = {f.name for f in fields(cls)}
        extra = set(d) - known
        if extra:
            raise ValueError(f"unknown non-ideality setting(s): {', '.join(sorted(extra))}")
        return cls(**d)


@dataclass
class DeviceWindow:
    """Per-device R_on/R_off (Ω), shape of the device array (nominal values when σ = 0)."""

    r_on_ohm: np.ndarray
    r_off_ohm: np.ndarray
    nominal_r_on_ohm: float = field(default=0.0)
    nominal_r_off_ohm: float = field(default=0.0)


def sample_device_windows(shape: tuple[int, ...], r_on_ohm: float, r_off_ohm: float,
                          sigma_r_on_ohm: float, sigma_r_off_ohm: float,
                          rng: np.random.Generator) -> DeviceWindow:
    """Draw each device's R_on ~ N(r_on, σ_on), R_off ~ N(r_off, σ_off) (truncated, see module)."""
    r_on = np.full(shape, float(r_on_ohm))
    r_off = np.full(shape, float(r_off_ohm))
    if sigma_r_on_ohm > 0:
        r_on = rng.normal(r_on_ohm, sigma_r_on_ohm, shape)
    if sigma_r_off_ohm > 0:
        r_off = rng.normal(r_off_ohm, sigma_r_off_ohm, shape)
    r_on = np.maximum(r_on, 1.0)
    r_off = np.maximum(r_off, 1.01 * r_on)
    return DeviceWindow(r_on, r_off, float(r_on_ohm), float(r_off_ohm))


def quantize_states(g_s: np.ndarray, g_min_s: float, g_max_s: float, n_states: int | None
                    ) -> np.ndarray:
    """Round conductances to the nearest of ``n_states`` levels linearly spaced in
    ``[g_min, g_max]`` (S); ``None`` leaves them continuous (clipped to the range)."""
    g = np.clip(np.asarray(g_s, dtype=np.float64), g_min_s, g_max_s)
    if n_states is None:
        return g
    if isinstance(n_states, bool) or not isinstance(n_states, (int, np.integer)) or n_states < 2:
        raise ValueError(f"conductance states must be an integer ≥ 2 (or None), got {n_states!r}")
    step = (g_max_s - g_min_s) / (n_states - 1)
    return g_min_s + np.round((g - g_min_s) / step) * step


def apply_variability(g_target_s: np.ndarray, window: DeviceWindow, r_model: str = "linear"
                      ) -> np.ndarray:
    """Conductances (S) the devices reach when programmed open loop to the VTEAM state that
    gives ``g_target`` on a nominal device (see module doc). Identity when σ = 0."""
    g = np.asarray(g_target_s, dtype=np.float64)
    w = np.clip(state_at_resistance(1.0 / g, window.nominal_r_on_ohm, window.nominal_r_off_ohm,
                                    r_model), 0.0, 1.0)
    return 1.0 / resistance_at_state_ohm(w, window.r_on_ohm, window.r_off_ohm, r_model)


def apply_stuck_at(g_s: np.ndarray, window: DeviceWindow, p_hrs: float, p_lrs: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stick devices at 1/R_off,i (prob. ``p_hrs``) or 1/R_on,i (prob. ``p_lrs``).

    Returns the new conductances and an int8 map (0 ok, 1 stuck HRS, 2 stuck LRS). One uniform
    draw per device decides, so the faults at p and p' > p are nested (same seed).
    """
    g = np.array(g_s, dtype=np.float64, copy=True)
    fault = np.zeros(g.shape, dtype=np.int8)
    if p_hrs <= 0 and p_lrs <= 0:
        return g, fault
    u = rng.random(g.shape)
    hrs = u < p_hrs
    lrs = (u >= 1.0 - p_lrs) & ~hrs
    g[hrs] = 1.0 / window.r_off_ohm[hrs]
    g[lrs] = 1.0 / window.r_on_ohm[lrs]
    fault[hrs] = 1
    fault[lrs] = 2
    return g, fault


def apply_endurance(g_s: np.ndarray, cycles: float, params: EnduranceParams, r_on_ohm: float,
                    r_off_ohm: float, temperature_k: float = 300.0,
                    convergence_ohm: float | None = None, bounded: bool = True) -> np.ndarray:
    """Conductances (S) after ``cycles`` SET/RESET cycles (module doc: Lammie et al. 2021).
    ``convergence_ohm``: the LRS/HRS split R_c (default ``(R_on + R_off)/2``); ``bounded``:
    gradual-mode resistances stop at R_c (MemTorch does not stop them)."""
    g = np.asarray(g_s, dtype=np.float64)
    if cycles <= 0:
        return g.copy()
    r = 1.0 / g
    r_c = 0.5 * (r_on_ohm + r_off_ohm) if convergence_ohm is None else float(convergence_ohm)
    out = r.copy()
    for p, sel, stable, lrs in ((params.p_lrs, r < r_c, params.stable_lrs_ohm or r_on_ohm, True),
                                (params.p_hrs, r > r_c, params.stable_hrs_ohm or r_off_ohm, False)):
        x_th = params.threshold_cycles(p, temperature_k)
        if not cycles > x_th or not np.any(sel):
            continue
        if params.mode == "sudden":
            out[sel] = stable
        else:
            moved = r[sel] * (cycles / x_th) ** params.exponent(p, temperature_k)
            # the model converges towards R_c; do not let it cross
            if bounded:
                moved = np.minimum(moved, r_c) if lrs else np.maximum(moved, r_c)
            out[sel] = moved
    return 1.0 / out


def apply_retention(g_s: np.ndarray, time_s: float, drift_coefficient: float = 0.1,
                    t0_s: float = 1.0) -> np.ndarray:
    """Conductances (S) after ``time_s`` of drift: ``G·(t/t0)^(−ν)`` for t > t0 (Boybat 2018)."""
    g = np.asarray(g_s, dtype=np.float64)
    if time_s <= t0_s or drift_coefficient == 0:
        return g.copy()
    return g * (time_s / t0_s) ** (-drift_coefficient)
