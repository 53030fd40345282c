"""Golden references: fixed cases whose emitted netlists and ngspice results ship as package
data (``spicecross/data/golden/``: ``<case>[_k].cir``, ``<case>.h5`` and ``manifest.json``
with every case's files and their sha256) and are checked on every test run.

For each case three things are compared:

1. the netlist emitted now against the kept one, as text after normalising numbers (6
   significant digits) and dropping comments, so an accidental change to what we emit (a
   default, a node name, an element) is caught with the differing lines shown;
2. a fresh ngspice run of the kept netlist against the stored result (tolerance per case);
3. the surrogate against the stored SPICE result, within the case's stated error bound.

``spicecross golden check`` verifies the files against the manifest, then runs them;
``spicecross golden update`` regenerates the files (into the package's data directory, or
``--root DIR``), rewrites the manifest and prints what changed. Cases use the package defaults (TileSpec's wire resistances, the selector,
the pt_hf_ti device set), so changing a default shows up here.
"""
from __future__ import annotations

import difflib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from .circuit.netlist import ngspice_netlist
from .circuit.tile import TileSpec
from .golden_manifest import (MANIFEST, GoldenRoot, package_root, read_manifest, verify_manifest,
                              writable_package_root, write_manifest)
from .errors import unreadable
from .store import atomic_h5, write_text_atomic

__all__ = ["GoldenCase", "CaseResult", "cases", "check_case", "update_case", "normalise_netlist",
           "package_root", "writable_package_root", "read_manifest", "verify_manifest", "MANIFEST"]

_NUM = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")


def normalise_netlist(text: str) -> list[str]:
    """Netlist lines without comments/blank lines, numbers rounded to 6 significant digits."""
    out = []
    for ln in text.splitlines():
        s = ln.strip()
        if not s or s.startswith(("*", "//")) or s.lower().startswith(".title"):
            continue
        out.append(_NUM.sub(lambda m: f"{float(m.group()):.6g}", s))
    return out


@dataclass
class CaseResult:
    name: str
    ok: bool
    messages: list[str] = field(default_factory=list)


@dataclass
class GoldenCase:
    """One golden case: how to emit its netlist, run it and read SPICE and surrogate results."""

    name: str
    description: str
    build: Callable[[], dict]            # → {"netlists": [text...], "meta": {...}}
    spice: Callable[[dict], dict]        # ngspice results (arrays) for built netlists
    surrogate: Callable[[dict, dict], dict]   # surrogate results for the stored SPICE arrays
    spice_rtol: float
    bounds: dict[str, float]             # surrogate output → relative error bound

    def netlist_name(self, k: int) -> str:
        return f"{self.name}{'' if k == 0 else f'_{k}'}.cir"

    def result_name(self) -> str:
        return f"{self.name}.h5"

    def netlist_path(self, root: GoldenRoot, k: int) -> GoldenRoot:
        return root / self.netlist_name(k)

    def result_path(self, root: GoldenRoot) -> GoldenRoot:
        return root / self.result_name()


# ---- tile cases ---------------------------------------------------------------------------
def _tile_read(spec: TileSpec, n_reads: int, seed: int, v_max: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    from .devices.vteam import get_parameter_set

    dev = get_parameter_set(spec.device_set)
    rng = np.random.default_rng(seed)
    g = rng.uniform(1 / dev.r_off_ohm, 1 / dev.r_on_ohm, (spec.rows, spec.cols))
    v = rng.uniform(0, v_max, (n_reads, spec.rows))
    return g, v


def _tile_case(name: str, spec_fn: Callable[[], TileSpec], n_reads: int, seed: int, desc: str,
               bounds: dict[str, float], read_fn=None) -> GoldenCase:
    def build() -> dict:
        spec = spec_fn()
        g, v = (read_fn or (lambda s: _tile_read(s, n_reads, seed)))(spec)
        return {"netlists": [ngspice_netlist(spec, g, vk) for vk in v],
                "meta": {"spec": spec, "g": g, "v": v}}

    def spice(built: dict) -> dict:
        from .spice.solve import solve_text

        res = [solve_text(t, "ngspice", cache_dir=None) for t in built["netlists"]]
        bad = [r.error for r in res if not r.ok]
        if bad:
            raise RuntimeError(f"ngspice failed: {bad[0]}")
        return {"sense_currents_a": np.array([r.sense_currents_a for r in res])}

    def surrogate(built: dict, stored: dict) -> dict:
        from .surrogate.tile_model import TileSurrogate

        m = built["meta"]
        modes = ["linear"] + (["nonlinear"] if m["spec"].cell == "1t1r" else [])
        return {mode: TileSurrogate(m["spec"], m["g"], mode).read(m["v"]) for mode in modes}

    return GoldenCase(name, desc, build, spice, surrogate, 1e-7, bounds)


def _mnist_layer_read(spec: TileSpec) -> tuple[np.ndarray, np.ndarray]:
    """The first conv layer of the shipped MNIST model on patches of the first bundled test
    images: positive array of the double-column mapping (9 inputs × 16 outputs), inputs scaled
    to ±0.2 V read voltages."""
    import torch

    from .devices.vteam import get_parameter_set
    from .nn.datasets import load_mnist_sample
    from .nn.train import load_pretrained

    dev = get_parameter_set(spec.device_set)
    g_off, g_on = 1 / dev.r_off_ohm, 1 / dev.r_on_ohm
    model = load_pretrained("mnist")
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    w = conv.weight.detach().double().reshape(conv.out_channels, -1).T.numpy()   # (9, 16)
    g = g_off + (g_on - g_off) * np.clip(w, 0, None) / np.abs(w).max()
    images = load_mnist_sample().tensors[0][:2].double()
    patches = torch.nn.functional.unfold(images, 3, padding=1)      # (2, 9, 784)
    patches = patches.permute(0, 2, 1).reshape(-1, 9)
    pick = torch.argsort(patches.abs().sum(1), descending=True)[::97][:6]
    x = patches[pick].numpy()
    return g, 0.2 * x / np.abs(x).max()


def _vteam_case() -> GoldenCase:
    def params():
        from .devices.vteam import get_parameter_set
        from .devices.vteam_reference import SineDrive

        p = get_parameter_set("pt_hf_ti")
        return p, SineDrive(1.0, 0.5), 2.0, p.x_on_m

    def build() -> dict:
        from .devices.behavioural import ngspice_transient_deck

        p, drive, t_stop, x0 = params()
        return {"netlists": [ngspice_transient_deck(p, t_stop, drive, x0)], "meta": {}}

    def spice(built: dict) -> dict:
        from .devices.behavioural import run_ngspice_transient

        p, drive, t_stop, x0 = params()
        t, v, i, x = run_ngspice_transient(p, t_stop, drive, x0)
        return {"t_s": t, "i_a": i, "x_m": x}

    def surrogate(built: dict, stored: dict) -> dict:
        from .devices.iv import rms_difference_pct
        from .devices.vteam_reference import simulate_sine

        p, drive, t_stop, x0 = params()
        t, v, i, x = simulate_sine(p, drive, t_stop, x0, n_points=4001)
        # an error, not an output: RMS of (SPICE − reference) on the reference grid / peak
        return {"reference_rms_of_peak": rms_difference_pct(t, i, stored["t_s"], stored["i_a"]) / 100}

    return GoldenCase("vteam_iv", "VTEAM pt_hf_ti, 1 V 0.5 Hz sine, one cycle from ON (ngspice "
                      "behavioural subcircuit vs numpy reference)", build, spice, surrogate, 1e-6,
                      {"reference_rms_of_peak": 0.01})


#: The whole-network case: tile size (rows = cols), test images and calibration images.
NETWORK_TILE = 16
NETWORK_IMAGES = 2
NETWORK_CALIBRATION_IMAGES = 32


def _network_case() -> GoldenCase:
    """The shipped MNIST CNN on 0T1R tiles of the package defaults, its first
    ``NETWORK_IMAGES`` bundled test images with every array read solved in ngspice (the SPICE
    loop, :mod:`spicecross.nn.spice_loop`); stored: the SPICE logits. The kept netlist is one
    of those reads (first layer, tile (0, 0), G⁺ array, the image patch of largest input)."""

    def build() -> dict:
        import torch

        from .circuit.netlist import ngspice_netlist
        from .nn.analog import analog_layers, patch_model
        from .nn.inference import load_eval_data, load_network
        from .surrogate.config import AnalogConfig

        config = AnalogConfig.build(tile_rows=NETWORK_TILE, tile_cols=NETWORK_TILE)
        data = load_eval_data("mnist", None, NETWORK_IMAGES, NETWORK_CALIBRATION_IMAGES)
        analog = patch_model(load_network("mnist"), config, data.calibration)
        x = data.test.tensors[0]
        layer = analog_layers(analog)[0][1]
        _, v = layer._dac(x[:1], layer.calibration)[0]
        cols = torch.nn.functional.unfold(v, layer.kernel_size, layer.dilation, layer.padding,
                                          layer.stride)[0].T.double().numpy()   # (L, K) in V
        vec = np.zeros(NETWORK_TILE)
        vec[:cols.shape[1]] = cols[int(np.argmax(cols.sum(axis=1)))]
        text = ngspice_netlist(layer.array.spec.for_solvers(), layer.array.g_dev[0, 0, 0], vec)
        return {"netlists": [text], "meta": {"analog": analog, "x": x}}

    def spice(built: dict) -> dict:
        from .nn.spice_loop import SpiceLoopSettings, forward_in_spice

        m = built["meta"]
        logits, _ = forward_in_spice(m["analog"], m["x"], SpiceLoopSettings(
            simulator="ngspice", cache_dir=None, progress=False))
        return {"logits_spice": logits.double().numpy()}

    def surrogate(built: dict, stored: dict) -> dict:
        import torch

        m = built["meta"]
        with torch.no_grad():
            sur = m["analog"](m["x"]).double().numpy()
        # an error, not an output: the surrogate's logits against the stored SPICE logits
        return {"logits_rel": _rel(sur, stored["logits_spice"])}

    return GoldenCase(
        "mnist_network", f"shipped MNIST CNN, {NETWORK_IMAGES} bundled test images, every read "
        f"of {NETWORK_TILE}×{NETWORK_TILE} 0T1R tiles in ngspice (SPICE loop), logits vs the "
        "linear surrogate", build, spice, surrogate, 1e-7, {"logits_rel": 1e-6})


def cases() -> list[GoldenCase]:
    return [
        _vteam_case(),
        _tile_case("passive_16x16", lambda: TileSpec(rows=16, cols=16), 4, 16,
                   "passive 16×16 tile, default wires, 4 reads", {"linear": 1e-6}),
        _tile_case("1t1r_16x16", lambda: TileSpec(rows=16, cols=16, cell="1t1r"), 4, 161,
                   "1T1R 16×16 tile with default wire parasitics, 4 reads",
                   {"nonlinear": 1e-6, "linear": 0.02}),
        _tile_case("1t1r_32x32", lambda: TileSpec(rows=32, cols=32, cell="1t1r"), 3, 321,
                   "1T1R 32×32 tile with default wire parasitics, 3 reads",
                   {"nonlinear": 1e-6, "linear": 0.02}),
        _tile_case("mnist_layer", lambda: TileSpec(rows=9, cols=16, cell="1t1r"), 0, 0,
                   "first conv layer of the shipped MNIST CNN (positive array, 9×16 1T1R) on "
                   "6 image patches, bipolar ±0.2 V reads", {"nonlinear": 1e-6, "linear": 0.02},
                   read_fn=_mnist_layer_read),
        _network_case(),
    ]


def _describe_diff(kept: list[str], now: list[str], pairs: int = 3) -> str:
    """'N lines differ, e.g.' followed by kept (-) / emitted (+) line pairs."""
    shown: list[str] = []
    n = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, kept, now, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        n += max(i2 - i1, j2 - j1)
        for k in range(max(i2 - i1, j2 - j1)):
            if len(shown) >= 2 * pairs:
                break
            if i1 + k < i2:
                shown.append(f"-{kept[i1 + k]}")
            if j1 + k < j2:
                shown.append(f"+{now[j1 + k]}")
    return f"{n} lines differ (- kept, + emitted now), e.g.:\n      " + "\n      ".join(shown)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _read_h5(path: GoldenRoot) -> dict:
    try:
        with h5py.File(io.BytesIO(path.read_bytes()), "r") as f:
            return {k: f[k][()] for k in f.keys()}
    except FileNotFoundError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:   # corrupt or truncated HDF5
        raise unreadable(path, "golden results file", exc) from None


def check_case(case: GoldenCase, root: GoldenRoot | None = None, run_spice: bool = True) -> CaseResult:
    """Compare what the code emits and computes now with the case's golden files under ``root``
    (default: the package's own)."""
    root = package_root() if root is None else root
    res = CaseResult(case.name, True)
    built = case.build()
    for k, text in enumerate(built["netlists"]):
        path = case.netlist_path(root, k)
        if not path.is_file():
            res.ok = False
            res.messages.append(f"missing {case.netlist_name(k)}: run 'spicecross golden update'")
            continue
        kept, now = normalise_netlist(path.read_text()), normalise_netlist(text)
        if kept != now:
            res.ok = False
            res.messages.append(f"emitted netlist differs from {case.netlist_name(k)}: "
                                + _describe_diff(kept, now))
    rpath = case.result_path(root)
    if not rpath.is_file():
        res.ok = False
        res.messages.append(f"missing {case.result_name()}: run 'spicecross golden update'")
        return res
    stored = _read_h5(rpath)
    if run_spice:
        kept_built = {"netlists": [case.netlist_path(root, k).read_text()
                                   for k in range(len(built["netlists"]))], "meta": built["meta"]}
        fresh = case.spice(kept_built)
        for key, arr in fresh.items():
            if key == "t_s":
                continue
            ref = stored[key]
            if key in ("i_a", "x_m") and "t_s" in stored:
                arr = np.interp(stored["t_s"], fresh["t_s"], arr)
            err = _rel(arr, ref) if arr.shape == ref.shape else np.inf
            if not err <= case.spice_rtol:
                res.ok = False
                res.messages.append(f"fresh ngspice {key} differs from the stored result by "
                                    f"{err:.3g} (relative, tolerance {case.spice_rtol:g})")
    spice_ref = stored.get("sense_currents_a", stored.get("i_a"))
    for key, pred in case.surrogate(built, stored).items():
        if np.ndim(pred) == 0:      # the case computed its error itself
            err = float(pred)
        else:
            err = _rel(pred, spice_ref) if np.shape(pred) == spice_ref.shape else np.inf
        if not err <= case.bounds[key]:
            res.ok = False
            res.messages.append(f"surrogate '{key}' is {err:.3g} from the stored SPICE result "
                                f"(bound {case.bounds[key]:g})")
    return res


def update_case(case: GoldenCase, root: Path | None = None) -> list[str]:
    """Regenerate the case's netlists and stored result under ``root`` (default: the package's
    own golden directory, which must be writable) and rewrite the manifest; return a
    description of the changes."""
    root = writable_package_root() if root is None else Path(root)
    changes: list[str] = []
    built = case.build()
    for k, text in enumerate(built["netlists"]):
        path = case.netlist_path(root, k)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            changes.append(f"new {path.relative_to(root)}")
        elif normalise_netlist(path.read_text()) != normalise_netlist(text):
            n = sum(1 for d in difflib.ndiff(normalise_netlist(path.read_text()), normalise_netlist(text))
                    if d[:1] in "+-")
            changes.append(f"{path.relative_to(root)}: {n} lines changed")
        write_text_atomic(path, text)
    fresh = case.spice(built)
    rpath = case.result_path(root)
    if rpath.exists():
        old = _read_h5(rpath)
        for key, arr in fresh.items():
            if key in old and old[key].shape == arr.shape and key != "t_s":
                err = _rel(arr, old[key])
                if err > 0:
                    changes.append(f"{rpath.relative_to(root)}:{key} changed by {err:.3g} (relative)")
            elif key not in old or old[key].shape != arr.shape:
                changes.append(f"{rpath.relative_to(root)}:{key} changed shape")
    else:
        changes.append(f"new {rpath.relative_to(root)}")
    from .spice.executables import ngspice_version

    with atomic_h5(rpath) as f:
        for key, arr in fresh.items():
            f.create_dataset(key, data=arr)
        f.attrs["case"] = case.name
        f.attrs["description"] = case.description
        f.attrs["simulator_version"] = ngspice_version()
    write_manifest(root, case.name, case.description,
                   [case.netlist_name(k) for k in range(len(built["netlists"]))] + [case.result_name()])
    return changes
