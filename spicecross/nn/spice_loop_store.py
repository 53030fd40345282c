"""The SPICE loop's results file (HDF5, one row per image, written atomically per batch).

Layout: root datasets ``image_index``, ``image_id`` (content hash), ``label``,
``logits_spice``, ``logits_surrogate``, ``logits_digital`` (NaN when not run), ``seconds``
(wall time per image, its batch's share); per analog layer a group ``layers/<name>`` with
per-image ``max_err_lsb``, ``sumsq_err_lsb`` and ``count`` (RMS = sqrt(sumsq/count)),
``code_mismatch`` (ADC codes that differ), ``hist`` (images × bins of log10 |ΔI|/LSB, edges in
the root attribute ``hist_edges_log10``) and ``array_reads`` (distinct reads solved, the batch's
share); attributes ``simulators``. Root attributes: provenance, ``fingerprint`` (what must match
to resume), ``layers`` and the caller's metadata (model, configuration, data source).

Every append copies the file, adds the batch and moves it into place (:func:`~spicecross.store.
atomic_h5`), so an interruption leaves the last complete batch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from ..store import atomic_h5, provenance, read_attrs, set_attrs

__all__ = ["append_images", "load_results", "open_run", "summarize"]

_LAYER_KEYS = ("max_err_lsb", "sumsq_err_lsb", "count", "code_mismatch", "hist", "array_reads")


def open_run(path: str | Path, fingerprint: str, layers: list[str], meta: Mapping[str, Any]
             ) -> dict[int, bytes]:
    """Create ``path`` for a new run, or check that it belongs to this run (same
    ``fingerprint``); returns the finished images, index → content id."""
    from .spice_loop import HIST_EDGES_LOG10

    path = Path(path)
    if path.exists():
        with h5py.File(path, "r") as f:
            attrs = read_attrs(f)
            if attrs.get("fingerprint") != fingerprint:
                raise ValueError(f"{path} holds a SPICE loop of another network, configuration, "
                                 "calibration or simulator; remove it or pass another output file")
            if "image_index" not in f:
                return {}
            return dict(zip(f["image_index"][()].tolist(), f["image_id"][()].tolist()))
    with atomic_h5(path) as f:
        set_attrs(f, provenance(command="spice-loop", fingerprint=fingerprint, layers=list(layers),
                                hist_edges_log10=HIST_EDGES_LOG10, **meta))
    return {}


def _append(g: h5py.Group, key: str, arr: np.ndarray) -> None:
    arr = np.asarray(arr)
    if key in g:
        arr = np.concatenate([g[key][()], arr.astype(g[key].dtype)])
        del g[key]
    g.create_dataset(key, data=arr)


def append_images(path: str | Path, arrays: Mapping[str, np.ndarray], readers: Mapping) -> None:
    """Add one batch: the per-image ``arrays`` (see module doc) and each layer's
    :class:`~spicecross.nn.spice_loop.SpiceReader` errors, atomically."""
    with atomic_h5(path, copy_existing=True) as f:
        for k, v in arrays.items():
            _append(f, k, v)
        n = len(arrays["image_index"])
        for name, r in readers.items():
            g = f.require_group(f"layers/{name}")
            e = r.errors
            vals = (e.max_lsb, e.sumsq_lsb, e.count, e.code_mismatch, e.hist,
                    np.full(n, r.reads / n))
            for k, v in zip(_LAYER_KEYS, vals):
                _append(g, k, v)
            used = set(read_attrs(g).get("simulators", [])) | set(r.simulators)
            set_attrs(g, {"simulators": sorted(used)})


def load_results(path: str | Path) -> dict[str, Any]:
    """Everything in a results file: root arrays, ``"layers"`` {name: arrays + simulators}
    in layer order, ``"attrs"``."""
    with h5py.File(path, "r") as f:
        attrs = read_attrs(f)
        out: dict[str, Any] = {k: f[k][()] for k in f.keys() if isinstance(f[k], h5py.Dataset)}
        out["attrs"] = attrs
        out["layers"] = {}
        for name in attrs.get("layers", []):
            key = f"layers/{name}"
            if key in f:
                g = f[key]
                out["layers"][name] = {**{k: g[k][()] for k in _LAYER_KEYS},
                                       "simulators": read_attrs(g).get("simulators", [])}
    return out


def summarize(res: Mapping[str, Any]) -> dict[str, Any]:
    """The comparison of SPICE and surrogate over every image in the file: accuracies (%),
    the share of images whose class differs, the largest logit difference (absolute, and
    relative to the image's largest |SPICE logit|) and per layer the current error in ADC
    steps (max, RMS), the share of ADC codes that differ and the array reads solved."""
    if "image_index" not in res or len(res["image_index"]) == 0:
        return {"images": 0, "per_layer": []}
    sp, su, dg = res["logits_spice"], res["logits_surrogate"], res["logits_digital"]
    y = res["label"]
    c_sp, c_su = sp.argmax(1), su.argmax(1)
    diff = np.abs(sp - su)
    scale = np.maximum(np.abs(sp).max(axis=1), 1e-300)
    out: dict[str, Any] = {
        "images": int(len(y)),
        "accuracy_spice": float(100 * np.mean(c_sp == y)),
        "accuracy_surrogate": float(100 * np.mean(c_su == y)),
        "accuracy_digital": (None if np.isnan(dg).any() else float(100 * np.mean(dg.argmax(1) == y))),
        "class_differs_share": float(np.mean(c_sp != c_su)),
        "max_logit_abs_diff": float(diff.max()),
        "max_logit_rel_diff": float((diff.max(axis=1) / scale).max()),
        "seconds_per_image": float(np.mean(res["seconds"])),
        "simulator": res["attrs"].get("simulator"),
    }
    per_layer = []
    for name, g in res["layers"].items():
        count = float(g["count"].sum())
        per_layer.append({
            "layer": name,
            "max_err_lsb": float(g["max_err_lsb"].max()),
            "rms_err_lsb": float(np.sqrt(g["sumsq_err_lsb"].sum() / max(count, 1.0))),
            "code_mismatch_share": float(g["code_mismatch"].sum() / max(count, 1.0)),
            "array_reads": int(round(float(g["array_reads"].sum()))),
            "simulators": list(g["simulators"]),
        })
    out["per_layer"] = per_layer
    out["max_err_lsb"] = max(p["max_err_lsb"] for p in per_layer) if per_layer else 0.0
    return out
