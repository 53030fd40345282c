"""A whole network in SPICE beside its surrogate: the driver behind ``spicecross infer
--spice-loop`` and ``spicecross verify-network``, and the plot of the per-layer read errors.

:func:`verify_network` loads the network and its data as :func:`~spicecross.nn.inference.infer`
does, patches and calibrates it with the surrogate (converter ranges then frozen), and runs the
test images through :func:`~spicecross.nn.spice_loop.run_spice_loop` (every read in SPICE,
resumable HDF5). The report: accuracy of SPICE, surrogate and digital network, the share of
images whose class differs, the largest logit difference (absolute and relative) and per layer
the read current error in ADC steps.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..surrogate.config import AnalogConfig
from .spice_loop import DEFAULT_BATCH_IMAGES, SpiceLoopSettings

__all__ = ["plot_layer_errors", "verify_network"]


def verify_network(model_name: str, data_root: str | Path | None, config: AnalogConfig,
                   out: str | Path, limit: int | None = None, weights: str | Path | None = None,
                   settings: SpiceLoopSettings | None = None,
                   batch_images: int = DEFAULT_BATCH_IMAGES, max_batches: int | None = None,
                   log=None) -> dict[str, Any]:
    """Run the first ``limit`` test images of ``model_name`` through the SPICE loop and the
    surrogate (see module doc); results go to (and resume from) the HDF5 file ``out``. With
    the dask backend and no scheduler, one ``LocalCluster`` serves the whole run.
    Returns the summary of every image in ``out`` plus ``program_seconds``, ``seconds``
    (this call's loop), ``tiles``, ``data``, ``model`` and ``config``."""
    from .analog import analog_layers, patch_model
    from .inference import load_eval_data, load_network
    from .spice_loop import run_fingerprint, run_spice_loop

    if not isinstance(config, AnalogConfig):
        raise ValueError("config must be an AnalogConfig")
    settings = settings or SpiceLoopSettings()
    model = load_network(model_name, weights)
    data = load_eval_data(model_name, data_root, limit, config.calibration_images)
    t0 = time.perf_counter()
    analog = patch_model(model, config, data.calibration)
    program_s = time.perf_counter() - t0
    fingerprint = run_fingerprint(model, config, data.calibration, settings.simulator)
    meta = {"model": model_name, "config": config.to_dict(), "data": data.source}
    x, y = data.test.tensors
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if settings.parallel_backend == "dask" and not settings.scheduler:
            # one LocalCluster for the whole run, not one per layer call of every batch
            from ..spice.cluster import local_cluster

            cluster = stack.enter_context(local_cluster(settings.n_jobs))
            settings = dataclasses.replace(settings, scheduler=cluster.scheduler_address)
        summary = run_spice_loop(analog, x, y, out, settings, fingerprint, meta, batch_images,
                                 digital=model, max_batches=max_batches, log=log)
    layers = analog_layers(analog)
    summary.update(program_seconds=program_s, seconds=time.perf_counter() - t0,
                   tiles=sum(2 * m.n_row_tiles * m.n_col_tiles for _, m in layers),
                   data=data.source, model=model_name, config=config.to_dict(), out=str(out),
                   read_voltage_v=config.read_voltage_v, read_scheme=config.read_scheme)
    return summary


def plot_layer_errors(results: dict[str, Any], path: str | Path) -> Path:
    """PNG of each layer's distribution of read current errors |ΔI_SPICE − ΔI_surrogate| in
    ADC steps (log scale; the share of column reads per bin), from
    :func:`~spicecross.nn.spice_loop_store.load_results`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.asarray(results["attrs"]["hist_edges_log10"], dtype=float)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    lo_used, hi_used = len(edges), 0
    for name, g in results["layers"].items():
        counts = g["hist"].sum(axis=0).astype(float)
        if counts.sum() == 0:
            continue
        share = counts / counts.sum()
        nz = np.flatnonzero(counts)
        lo_used, hi_used = min(lo_used, nz[0]), max(hi_used, nz[-1] + 1)
        ax.stairs(share, edges, label=f"{name} (max {g['max_err_lsb'].max():.2g} steps)",
                  linewidth=1.6)
    if hi_used > lo_used:       # the used bins, and always the 1-step line
        ax.set_xlim(edges[max(lo_used - 2, 0)], max(edges[min(hi_used + 2, len(edges) - 1)], 0.5))
    ax.axvline(0.0, color="k", linestyle="--", linewidth=1)
    ax.text(0.02, 0.97, f"dashed: 1 ADC step; leftmost bin: ≤ 1e{edges[0]:.0f} steps, incl. "
            "exact agreement", transform=ax.transAxes, va="top", fontsize=8)
    ax.set_xlabel("log10 |I_SPICE − I_surrogate| / ADC step (per row tile, column and read)")
    ax.set_ylabel("share of column reads")
    attrs = results["attrs"]
    cfg = attrs.get("config", {})
    tile = cfg.get("tile", {})
    what = [f"{len(results['label'])} image(s)"]
    if tile:
        what.append(f"{tile.get('rows')}x{tile.get('cols')} {tile.get('cell')}")
    what.append(f"{attrs.get('simulator', 'SPICE')} vs "
                f"{cfg.get('mode', 'the')} surrogate")
    model = attrs.get("model")
    ax.set_title((f"{model}: " if model else "") + ", ".join(what), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
