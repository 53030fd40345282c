"""The seed paper's five experiments as sweep presets, run point by point into an HDF5 file that
is rewritten atomically after every finished point, so an interrupted sweep resumes where it
stopped without redoing finished points.

Presets (grids like the paper's):

* ``max-input-voltage``: MIV 1, 2, …, 9 V. In the physical ``ideal`` and ``linear`` modes the
  read is a linear network and the scaling back is the known inverse, so accuracy does not
  depend on MIV (the seed paper's MIV dependence comes from MemTorch's ``naive_scale``, which
  rescales a layer's input to ±MIV whenever it exceeds MIV and never scales the output back:
  ``compat="memtorch"`` reproduces it); what MIV does change physically is recorded per point as
  ``read_disturb_fraction`` — the share of word-line reads above the device's switching
  threshold (0.5 V for Pt/Hf/Ti), reads a real array would not survive unchanged — and, in the
  (slow) ``nonlinear`` 1T1R mode, the selector's saturation;
* ``tile-adc``: tiles 64×64, 128×128, 256×256 × ADC 2…8 bits;
* ``variability-states``: σ of R_on and R_off 0, 10, 25, 50, 100 Ω × 2, 4, 8, 16, 32, 64, 128,
  256 conductance states;
* ``stuck-at``: P(stuck HRS) × P(stuck LRS) in 0, 1, 2, 5, 10 %;
* ``endurance-retention``: endurance 10¹…10⁹ SET/RESET cycles under both endurance parameter
  sets (:data:`~spicecross.nn.nonidealities.ENDURANCE_MODELS`), and retention 10¹…10⁹ s of
  conductance drift.

File layout: root attributes ``preset``, ``model``, ``base_config`` (JSON), ``digital_accuracy``,
``images``, ``data`` and the standard provenance; one group ``points/<key>`` per finished point
with attributes ``key``, ``overrides`` (JSON), ``config`` (JSON of the full AnalogConfig),
``seed``, ``device_set``, ``device_source``, ``accuracy``, ``seconds``, ``program_seconds``,
``endurance_source`` where relevant, ``compat`` and, with drift re-calibration,
``recalibrate_after_s`` and ``last_recalibration_s``. ``run_sweep(compat_modes=("physical",
"memtorch"))`` (CLI ``--compat both``) runs every point in each setting (keys end in
``,compat=…``).
"""
from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

from ..errors import unreadable
from ..spice.simulators import DEFAULT_CHECK_BACKEND
from ..store import atomic_h5, provenance, read_attrs, save_figure_atomic
from ..surrogate.config import AnalogConfig
from ..surrogate.nonidealities import ENDURANCE_MODELS
from .presets import PRESET_NAMES

__all__ = ["PRESETS", "SweepPoint", "preset_points", "read_sweep", "run_sweep", "plot_sweep"]


@dataclass(frozen=True)
class SweepPoint:
    """One point: a stable key and the AnalogConfig fields it changes."""

    key: str
    overrides: dict[str, Any]


def _key(d: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in d.items())


def _points(rows: list[dict[str, Any]]) -> list[SweepPoint]:
    return [SweepPoint(_key(r), r) for r in rows]


def _grid_miv() -> list[SweepPoint]:
    return _points([{"max_input_voltage_v": float(v)} for v in range(1, 10)])


def _grid_tile_adc() -> list[SweepPoint]:
    return _points([{"tile_rows": n, "tile_cols": n, "adc_bits": b}
                    for n in (64, 128, 256) for b in range(2, 9)])


def _grid_var_states() -> list[SweepPoint]:
    return _points([{"sigma_r_on_ohm": s, "sigma_r_off_ohm": s, "conductance_states": n}
                    for s in (0.0, 10.0, 25.0, 50.0, 100.0) for n in (2, 4, 8, 16, 32, 64, 128, 256)])


def _grid_stuck() -> list[SweepPoint]:
    ps = (0.0, 0.01, 0.02, 0.05, 0.1)
    return _points([{"stuck_hrs_p": h, "stuck_lrs_p": l} for h in ps for l in ps])


def _grid_end_ret() -> list[SweepPoint]:
    rows: list[dict[str, Any]] = []
    for model in ENDURANCE_MODELS:
        rows += [{"endurance_model": model, "endurance_cycles": float(10 ** k)} for k in range(1, 10)]
    rows += [{"retention_s": float(10 ** k)} for k in range(1, 10)]
    return _points(rows)


PRESETS: dict[str, Callable[[], list[SweepPoint]]] = {
    "max-input-voltage": _grid_miv,
    "tile-adc": _grid_tile_adc,
    "variability-states": _grid_var_states,
    "stuck-at": _grid_stuck,
    "endurance-retention": _grid_end_ret,
}
assert tuple(PRESETS) == PRESET_NAMES, "spicecross/experiments/presets.py is out of date"


def preset_points(preset: str, compat_modes: tuple[str, ...] | None = None) -> list[SweepPoint]:
    """The preset's points; with ``compat_modes`` every point once per setting."""
    if preset not in PRESETS:
        raise ValueError(f"unknown sweep {preset!r}: expected one of {', '.join(PRESETS)}")
    points = PRESETS[preset]()
    if not compat_modes:
        return points
    return _points([{**p.overrides, "compat": c} for c in compat_modes for p in points])


def read_sweep(path: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Root attributes and ``{key: point attributes}`` of a sweep file (UserError naming the
    file when it is corrupt or not a sweep file)."""
    try:
        with h5py.File(path, "r") as f:
            root = read_attrs(f)
            pts = {}
            if "points" in f:
                for name in f["points"]:
                    a = read_attrs(f["points"][name])
                    pts[a["key"]] = a
    except FileNotFoundError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise unreadable(path, "sweep file", exc) from None
    return root, pts


def _group_name(key: str) -> str:
    return key.replace("/", "_")


def run_sweep(preset: str, model_name: str, data_root: str | Path | None, base: AnalogConfig,
              out: str | Path, limit: int | None = None, batch_size: int = 500,
              weights: str | Path | None = None, plot: str | Path | None = None,
              progress: bool = True, on_point: Callable[[int, SweepPoint, dict], None] | None = None,
              spice_check_reads: int = 0, spice_backend: str = DEFAULT_CHECK_BACKEND,
              compat_modes: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Run (or resume) sweep ``preset`` and return ``{"computed": [keys], "skipped": [keys],
    "results": {key: accuracy}}``. ``on_point(index, point, result)`` is called after each point
    is safely written (an exception from it stops the sweep; the file keeps every point so far).
    With ``spice_check_reads`` > 0 every point carries its SPICE check (``spice_check`` JSON and
    ``spice_max_err_lsb`` beside the accuracy in the point's HDF5 attributes).
    """
    from tqdm.auto import tqdm

    from ..nn.inference import _accuracy, load_eval_data, load_network, run_analog

    points = preset_points(preset, compat_modes)
    out = Path(out)
    done: dict[str, dict[str, Any]] = {}
    if out.exists():
        root, done = read_sweep(out)
        mine = {"preset": preset, "model": model_name, "base_config": base.to_dict(),
                "limit": -1 if limit is None else int(limit)}
        theirs = {k: root.get(k) for k in mine}
        if theirs != mine:
            diff = [k for k in mine if theirs[k] != mine[k]]
            raise ValueError(f"{out} holds a different sweep (differs in {', '.join(diff)}); "
                             "use another --out or delete it")
    model = load_network(model_name, weights)
    data = load_eval_data(model_name, data_root, limit, base.calibration_images)
    if not out.exists():
        digital, _ = _accuracy(model, data.test, batch_size)
        with atomic_h5(out) as f:
            f.attrs.update({k: v for k, v in _root_attrs(preset, model_name, base, limit, digital,
                                                          data).items()})
    computed, skipped = [], []
    todo = [(i, p) for i, p in enumerate(points) if p.key not in done]
    skipped = [p.key for p in points if p.key in done]
    bar = tqdm(total=len(points), initial=len(skipped), desc=f"sweep {preset}", disable=not progress,
               unit="pt")
    try:
        for i, pt in todo:
            cfg = base.with_(**pt.overrides)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                res = run_analog(model, cfg, data, batch_size, spice_check_reads, spice_backend)
            attrs = _point_attrs(pt, cfg, res)
            with atomic_h5(out, copy_existing=True) as f:
                grp = f.require_group("points").create_group(_group_name(pt.key))
                for k, v in attrs.items():
                    grp.attrs[k] = v
                f.attrs["updated_utc"] = provenance()["created_utc"]
            computed.append(pt.key)
            done[pt.key] = attrs
            bar.update(1)
            bar.set_postfix_str(f"{pt.key}: {res['accuracy']:.2f} %")
            if on_point is not None:
                on_point(i, pt, res)
    finally:
        bar.close()
    if plot is not None:
        plot_sweep(out, plot)
    _, pts = read_sweep(out)
    return {"computed": computed, "skipped": skipped,
            "results": {k: pts[k]["accuracy"] for k in (p.key for p in points) if k in pts}}


def _root_attrs(preset: str, model: str, base: AnalogConfig, limit: int | None, digital: float,
                data) -> dict[str, Any]:
    dev = base.device_params()
    prov = provenance(preset=preset, model=model, base_config=json.dumps(base.to_dict(), sort_keys=True),
                      limit=-1 if limit is None else int(limit), digital_accuracy=float(digital),
                      images=int(len(data.test.tensors[1])), data=data.source, seed=int(base.seed),
                      device_set=base.device_set, device_source=dev.source)
    return {k: v for k, v in prov.items() if v is not None}


def _point_attrs(pt: SweepPoint, cfg: AnalogConfig, res: dict[str, Any]) -> dict[str, Any]:
    dev = cfg.device_params()
    attrs: dict[str, Any] = {
        "key": pt.key, "overrides": json.dumps(pt.overrides, sort_keys=True),
        "config": cfg.to_json(), "seed": int(cfg.seed), "device_set": cfg.device_set,
        "device_source": dev.source, "accuracy": float(res["accuracy"]),
        "seconds": float(res["seconds"]), "program_seconds": float(res["program_seconds"]),
        "images": int(res["images"]),
        "read_disturb_fraction": float(res["read_disturb_fraction"]),
        "headroom": json.dumps(res["headroom"]),
        "compensation_residual": json.dumps(res["compensation_residual"]),
        "read_voltage_v": float(res["read_voltage_v"]), "read_scheme": res["read_scheme"],
        "peak_rss_mib": float(res["peak_rss_mib"]),   # the sweep process's peak so far (MiB)
    }
    attrs["compat"] = cfg.compat
    if cfg.recalibrate_after_s is not None:
        from ..nn.calibrator import last_recalibration_s
        t_last = last_recalibration_s(cfg)
        attrs["recalibrate_after_s"] = float(cfg.recalibrate_after_s)
        attrs["last_recalibration_s"] = -1.0 if t_last is None else t_last
    if "spice_check" in res:
        attrs["spice_check"] = json.dumps(res["spice_check"], sort_keys=True)
        attrs["spice_max_err_lsb"] = float(res["spice_check"]["max_err_lsb"])
    nid = cfg.nonideal
    if nid.endurance_cycles > 0:
        attrs["endurance_source"] = ENDURANCE_MODELS[nid.endurance_model].source
    if nid.retention_s > 0:
        attrs["retention_source"] = ("Boybat et al., NVMTS 2018, conductance drift "
                                     f"G·(t/t0)^-nu, nu={nid.drift_coefficient}, t0={nid.retention_t0_s} s")
    return attrs


# ---- plots ---------------------------------------------------------------------------------------
def plot_sweep(path: str | Path, png: str | Path) -> Path:
    """A PNG like the paper's figure for the sweep stored in ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    root, pts = read_sweep(path)
    preset = root["preset"]
    digital = float(root["digital_accuracy"])
    rows = [(json.loads(a["overrides"]) if isinstance(a["overrides"], str) else a["overrides"],
             float(a["accuracy"])) for a in pts.values()]
    disturb: dict[str, float] = {}
    for a in pts.values():
        o = json.loads(a["overrides"]) if isinstance(a["overrides"], str) else a["overrides"]
        if o.get("compat", "physical") == "physical":      # reads at the physical voltage
            o = {k: v for k, v in o.items() if k != "compat"}
            disturb[json.dumps(o, sort_keys=True)] = float(a.get("read_disturb_fraction", 0.0))
    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    title = f"{root['model']}: {preset} ({root['images']} images)"
    base_compat = json.loads(root["base_config"]).get("compat", "physical") \
        if isinstance(root.get("base_config"), str) else "physical"
    modes = sorted({o.get("compat", base_compat) for o, _ in rows})

    def of_mode(c: str) -> list:
        return [({k: v for k, v in o.items() if k != "compat"}, acc) for o, acc in rows
                if o.get("compat", base_compat) == c]

    def draw(rows: list, sfx: str, first: bool) -> None:
        if preset == "max-input-voltage":
            xs = sorted((o["max_input_voltage_v"], acc) for o, acc in rows)
            ax.plot([x for x, _ in xs], [a for _, a in xs], "o-", label="memristive" + sfx)
            ax.set_xlabel("max input voltage (V)")
            if not first:
                return
            ax2 = ax.twinx()
            ds = sorted((o["max_input_voltage_v"], 100 * disturb[json.dumps(o, sort_keys=True)])
                        for o, _ in rows if json.dumps(o, sort_keys=True) in disturb)
            ax2.plot([x for x, _ in ds], [d for _, d in ds], "r^--", label="reads above threshold")
            ax2.set_ylabel("word-line reads above the switching threshold (%)", color="r", fontsize=8)
            ax2.set_ylim(0, 100)
            ax2.legend(fontsize=8, loc="lower right")
        elif preset == "tile-adc":
            for n in sorted({o["tile_rows"] for o, _ in rows}):
                xs = sorted((o["adc_bits"], acc) for o, acc in rows if o["tile_rows"] == n)
                ax.plot([x for x, _ in xs], [a for _, a in xs], "o-", label=f"{n}x{n}" + sfx)
            ax.set_xlabel("ADC bits")
        elif preset == "variability-states":
            for s in sorted({o["sigma_r_on_ohm"] for o, _ in rows}):
                xs = sorted((o["conductance_states"], acc) for o, acc in rows if o["sigma_r_on_ohm"] == s)
                ax.plot([x for x, _ in xs], [a for _, a in xs], "o-", label=f"σ = {s:g} Ω" + sfx)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("conductance states")
        elif preset == "endurance-retention":
            for model in sorted({o["endurance_model"] for o, _ in rows if "endurance_model" in o}):
                xs = sorted((o["endurance_cycles"], acc) for o, acc in rows
                            if o.get("endurance_model") == model)
                ax.plot([x for x, _ in xs], [a for _, a in xs], "o-", label=f"endurance ({model}), cycles" + sfx)
            xs = sorted((o["retention_s"], acc) for o, acc in rows if "retention_s" in o)
            if xs:
                ax.plot([x for x, _ in xs], [a for _, a in xs], "s--", label="retention (drift), seconds" + sfx)
            ax.set_xscale("log")
            ax.set_xlabel("SET/RESET cycles or time since programming (s)")

    if preset != "stuck-at":
        for i, c in enumerate(modes):
            draw(of_mode(c), f" [{c}]" if len(modes) > 1 else "", i == 0 and c == "physical")
    else:
        rows = of_mode("physical" if "physical" in modes else modes[0])
        hs = sorted({o["stuck_hrs_p"] for o, _ in rows})
        ls = sorted({o["stuck_lrs_p"] for o, _ in rows})
        grid = np.full((len(hs), len(ls)), np.nan)
        for o, acc in rows:
            grid[hs.index(o["stuck_hrs_p"]), ls.index(o["stuck_lrs_p"])] = acc
        im = ax.imshow(grid, origin="lower", cmap="viridis", vmin=0, vmax=100, aspect="auto")
        for i in range(len(hs)):
            for j in range(len(ls)):
                if not math.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center",
                            color="white" if grid[i, j] < 60 else "black", fontsize=8)
        ax.set_xticks(range(len(ls)), [f"{100 * p:g}" for p in ls])
        ax.set_yticks(range(len(hs)), [f"{100 * p:g}" for p in hs])
        ax.set_xlabel("stuck at LRS (%)")
        ax.set_ylabel("stuck at HRS (%)")
        fig.colorbar(im, ax=ax, label="accuracy (%)")
        ax.set_title(f"{title}\ndigital {digital:.2f} %", fontsize=9)
        fig.tight_layout()
        save_figure_atomic(fig, png)
        return Path(png)
    ax.axhline(digital, color="gray", ls=":", label=f"digital {digital:.2f} %")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure_atomic(fig, png)
    return Path(png)
