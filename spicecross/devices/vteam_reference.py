"""VTEAM drives and the numpy reference integrator: the sine drive all three device forms use,
the frequency at which a sine fully switches a device, and :func:`simulate` (clipped forward
Euler with the chosen window), the reference the ngspice and Verilog-A forms are checked against.
The model itself (parameter sets, R(x), the state equation, windows) is :mod:`.vteam`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .vteam import VTEAMParams, current_a, state_derivative_m_per_s, window

MAX_SUBSTEPS = 2e8      # refuse reference runs longer than this many Euler sub-steps
_BLOCK = 1 << 20        # sub-steps handled per vectorised block


# -- drives -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SineDrive:
    """v(t) = amplitude sin(2π f t), the drive used by all three forms."""

    amplitude_v: float
    frequency_hz: float

    def __post_init__(self) -> None:
        for name in ("amplitude_v", "frequency_hz"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(float(value)):
                raise ValueError(f"SineDrive.{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.frequency_hz <= 0:
            raise ValueError(f"SineDrive.frequency_hz must be > 0, got {self.frequency_hz!r}")

    @property
    def period_s(self) -> float:
        return 1.0 / self.frequency_hz

    def __call__(self, t_s) -> np.ndarray:
        return self.amplitude_v * np.sin(2.0 * np.pi * self.frequency_hz * np.asarray(t_s, float))


def _half_cycle_integral(amplitude: float, threshold: float, alpha: float, n: int = 20001) -> float:
    """∫ (A sinθ / v_th - 1)^alpha dθ over θ in [0, π] where A sinθ > v_th (v_th > 0)."""
    if amplitude <= threshold:
        return 0.0
    theta = np.linspace(math.asin(threshold / amplitude), math.pi - math.asin(threshold / amplitude), n)
    return float(np.trapezoid(np.maximum(amplitude * np.sin(theta) / threshold - 1.0, 0.0) ** alpha, theta))


def full_switching_frequency_hz(params: VTEAMParams, amplitude_v: float,
                                margin: float = 1.5) -> float:
    """The highest sine frequency at which each half cycle of amplitude ``amplitude_v`` moves the
    state across ``margin`` × its whole range in both directions (a fully switching, clearly
    pinched hysteresis loop). ValueError if the amplitude is below both thresholds."""
    amplitude_v = abs(float(amplitude_v))
    rates = []
    for k, th, a in ((params.k_off_m_per_s, params.v_off_v, params.alpha_off),
                     (-params.k_on_m_per_s, -params.v_on_v, params.alpha_on)):
        integral = _half_cycle_integral(amplitude_v, th, a)
        if integral > 0:
            rates.append(k * integral / (2.0 * math.pi * margin * params.x_span_m))
    if not rates:
        raise ValueError(f"amplitude {amplitude_v:g} V is below both switching thresholds "
                         f"(v_on {params.v_on_v:g} V, v_off {params.v_off_v:g} V): the state "
                         "cannot move, so give the frequency explicitly")
    return min(rates)


# -- reference integrator -----------------------------------------------------------------------
def _clipped_cumsum(x0: float, steps: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """x_{k+1} = clip(x_k + steps_k, lo, hi) for every k, returned as x_1 … x_n.

    Vectorised: runs of free motion are a cumulative sum; when the sum leaves [lo, hi] the state
    is clamped there and stays pinned until a step points back inside (the drive changes
    sign), so the work is one cumsum per bound contact rather than a Python loop per step.
    """
    n = steps.size
    out = np.empty(n)
    k = 0
    x = min(max(float(x0), lo), hi)
    while k < n:
        # pinned at a bound: skip the steps that push outwards (or do not move)
        if x >= hi:
            nxt = np.flatnonzero(steps[k:] < 0)
            stop = k + (nxt[0] if nxt.size else n - k)
            out[k:stop] = hi
            k = stop
            if k >= n:
                break
        elif x <= lo:
            nxt = np.flatnonzero(steps[k:] > 0)
            stop = k + (nxt[0] if nxt.size else n - k)
            out[k:stop] = lo
            k = stop
            if k >= n:
                break
        # free motion, chunked so a long free run does not redo one huge cumsum per contact
        chunk_end = min(n, k + (1 << 16))
        traj = x + np.cumsum(steps[k:chunk_end])
        outside = np.flatnonzero((traj > hi) | (traj < lo))
        if outside.size:
            j = outside[0]
            out[k:k + j] = traj[:j]
            x = hi if traj[j] > hi else lo
            out[k + j] = x
            k += j + 1
        else:
            out[k:chunk_end] = traj
            x = float(traj[-1])
            k = chunk_end
    return out


def _windowed_euler(params: VTEAMParams, x0_m: np.ndarray, steps_m: np.ndarray) -> np.ndarray:
    """x_{k+1} = clip(x_k + steps_k·f(w_k), x_on, x_off) for every sub-step k (axis 0), all
    devices (axis 1) at once; ``steps_m`` are the window-free increments dx/dt·h (m)."""
    out = np.empty_like(steps_m)
    x = np.array(x0_m, dtype=np.float64)
    for k in range(steps_m.shape[0]):
        s = steps_m[k]
        if s.any():
            w = (x - params.x_on_m) / params.x_span_m
            x = np.clip(x + s * window(params, w, s), params.x_on_m, params.x_off_m)
        out[k] = x
    return out


def simulate(params: VTEAMParams, t_s, v_v, x0_m, *, max_step_s: float | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Forward-Euler reference solution on the time grid ``t_s``.

    ``v_v`` holds the voltage across each device at the times ``t_s`` (time on axis 0; further
    axes are devices, broadcast against ``x0_m``). Each grid interval is split into sub-steps no
    longer than ``max_step_s`` (default ``params.dt_s``; ``math.inf`` for none), with the voltage
    linearly interpolated inside the interval; the state update is
    ``x <- clip(x + dx/dt(v) f(w) h, x_on, x_off)`` (``f`` the window, 1 for ``none``; a window
    other than ``none`` steps one sub-step at a time, so keep the run short). Returns ``(i_a, x_m)`` at the grid times, with
    ``i = v / R(x)`` and ``x[0] = x0``. (MemTorch updates x with v[k] before computing i[k]; here
    i[k] uses the state reached at t[k], the usual forward-Euler ordering.)
    """
    t = np.asarray(t_s, dtype=np.float64)
    v = np.asarray(v_v, dtype=np.float64)
    if t.ndim != 1 or t.size < 1:
        raise ValueError(f"simulate: t_s must be a 1-D array of times, got shape {t.shape}")
    if v.shape[:1] != t.shape:
        raise ValueError(f"simulate: v_v must have len(t_s)={t.size} rows (time on axis 0), "
                         f"got shape {v.shape}")
    dt = np.diff(t)
    if np.any(~np.isfinite(t)) or np.any(dt <= 0):
        raise ValueError("simulate: t_s must be finite and strictly increasing")
    h = params.dt_s if max_step_s is None else float(max_step_s)
    if not h > 0:
        raise ValueError(f"simulate: max_step_s must be > 0, got {max_step_s!r}")
    x0 = np.asarray(x0_m, dtype=np.float64)
    if not np.all(np.isfinite(x0)):
        raise ValueError("simulate: x0_m must be finite")
    dev_shape = np.broadcast_shapes(v.shape[1:], x0.shape)
    # time stays on axis 0; the device axes broadcast against x0 (a 1-D v drives every device)
    v = v.reshape(t.shape + (1,) * (len(dev_shape) - (v.ndim - 1)) + v.shape[1:])
    v = np.broadcast_to(v, t.shape + dev_shape)
    x0 = np.broadcast_to(x0, dev_shape)

    if np.any(x0 < params.x_on_m) or np.any(x0 > params.x_off_m):
        raise ValueError(f"simulate: x0_m must lie in [x_on_m, x_off_m] = [{params.x_on_m!r}, "
                         f"{params.x_off_m!r}]")

    n_sub = np.maximum(1, np.ceil(dt / h - 1e-9)).astype(np.int64)
    total = int(n_sub.sum())
    if total > MAX_SUBSTEPS:
        raise ValueError(f"simulate: {total:.3g} Euler sub-steps (step {h:g} s over "
                         f"{t[-1] - t[0]:g} s) exceed {MAX_SUBSTEPS:.0e}; pass a larger max_step_s")
    v_flat = v.reshape(t.size, -1)
    x_flat = np.empty_like(v_flat)
    x_flat[0] = x0.reshape(-1)
    ends = np.cumsum(n_sub)
    k0 = 0
    while k0 < dt.size:     # blocks of grid intervals, ≤ _BLOCK sub-steps each (bounded memory)
        base = ends[k0 - 1] if k0 else 0
        k1 = max(k0 + 1, int(np.searchsorted(ends, base + _BLOCK, side="right")))
        ns = n_sub[k0:k1]
        interval = np.repeat(np.arange(k0, k1), ns)
        first = np.repeat(ends[k0:k1] - ns, ns)
        frac = (np.arange(base, ends[k1 - 1]) - first) / n_sub[interval]
        h_sub = dt[interval] / n_sub[interval]
        last = ends[k0:k1] - 1 - base     # the last sub-step of every interval in the block
        if params.window != "none":       # the step depends on the state: one step at a time
            v_sub = v_flat[interval] + frac[:, None] * (v_flat[interval + 1] - v_flat[interval])
            steps = state_derivative_m_per_s(params, v_sub) * h_sub[:, None]
            x_flat[k0 + 1:k1 + 1] = _windowed_euler(params, x_flat[k0], steps)[last]
            k0 = k1
            continue
        for j in range(v_flat.shape[1]):
            vj = v_flat[:, j]
            v_sub = vj[interval] + frac * (vj[interval + 1] - vj[interval])
            steps = state_derivative_m_per_s(params, v_sub) * h_sub
            x_sub = _clipped_cumsum(x_flat[k0, j], steps, params.x_on_m, params.x_off_m)
            x_flat[k0 + 1:k1 + 1, j] = x_sub[last]
        k0 = k1
    x = x_flat.reshape(t.shape + dev_shape)
    return current_a(params, v, x), x


def simulate_sine(params: VTEAMParams, drive: SineDrive, t_stop_s: float, x0_m: float, *,
                  n_points: int = 4001, max_step_s: float | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The reference form under a sine drive, on a uniform grid of ``n_points``:
    ``(t, v, i, x)`` like the SPICE runners return."""
    if not t_stop_s > 0:
        raise ValueError(f"t_stop_s must be > 0, got {t_stop_s!r}")
    t = np.linspace(0.0, float(t_stop_s), int(n_points))
    v = drive(t)
    i, x = simulate(params, t, v, x0_m, max_step_s=max_step_s)
    return t, v, i, x
