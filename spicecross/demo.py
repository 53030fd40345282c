"""``spicecross demo``: the main job end to end on its embedded default, in a few minutes.

1. VTEAM (pt_hf_ti) driven by a sine in the three forms → hysteresis-loop PNG;
2. a 32×32 1T1R tile with wire parasitics emitted as an ngspice netlist, solved in ngspice, and
   compared with the surrogate in every mode;
3. a short calibration of the surrogate against ngspice (held-out error per mode, parity and
   IR-drop PNGs);
4. MNIST inference with the calibrated surrogate: the real test set if a dataset directory is
   found (``--data``, ``$SPICECROSS_DATA`` or ``shared/data`` beside the checkout; see
   :func:`spicecross.nn.datasets.data_root`), else the package's bundled 1000-image sample →
   accuracy PNG;
5. a summary table on stdout (and ``summary.json``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def _step(k: int, text: str) -> float:
    print(f"\n[{k}/5] {text}", flush=True)
    return time.perf_counter()


#: What the demo needs of a data root: the MNIST test images in torchvision's layout.
MNIST_TEST_FILE = "MNIST/raw/t10k-images-idx3-ubyte"


def run_demo(out_dir: Path, data: str | None = None, limit: int | None = None) -> dict:
    """Run the five steps into ``out_dir``; ``data`` is a dataset root (see the module doc),
    ``limit`` caps the MNIST test images. Returns the summary also written to summary.json."""
    from .calibration import calibrate
    from .store import write_text_atomic
    from .calibration.plots import ir_drop_map, parity_plot
    from .circuit.netlist import write_netlist
    from .circuit.tile import TileSpec
    from .devices.iv import plot_iv, rms_difference_pct, run_forms
    from .devices.vteam import get_parameter_set
    from .devices.vteam_reference import SineDrive
    from .spice.solve import solve_tile
    from .surrogate.tile_model import TileSurrogate

    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict = {"outputs": {}}

    t = _step(1, "VTEAM memristor (pt_hf_ti): numpy reference, ngspice behavioural, Verilog-A in VACASK")
    params = get_parameter_set("pt_hf_ti")
    drive = SineDrive(1.0, 0.5)
    forms = run_forms(params, drive, 2.0, params.x_on_m, ["ngspice", "vacask"])
    plot_iv(forms, params, "pt_hf_ti", drive, out_dir / "vteam_iv.png")
    t_ref, _, i_ref, _ = forms["reference"]
    dev = {f: rms_difference_pct(t_ref, i_ref, forms[f][0], forms[f][2]) for f in ("ngspice", "vacask")}
    summary["device_rms_pct_of_peak"] = dev
    summary["outputs"]["hysteresis"] = str(out_dir / "vteam_iv.png")
    print(f"    I(t) vs reference: ngspice {dev['ngspice']:.3g} %, VACASK {dev['vacask']:.3g} % RMS of peak "
          f"({time.perf_counter() - t:.1f} s)")

    spec = TileSpec(rows=32, cols=32, cell="1t1r")
    t = _step(2, f"32x32 1T1R tile with {spec.r_wire_wl_ohm:g} Ω wire segments (the default): emit, "
                 "solve in ngspice, compare the surrogate")
    rng = np.random.default_rng(0)
    g = rng.uniform(1 / params.r_off_ohm, 1 / params.r_on_ohm, (32, 32))
    v = rng.uniform(0, 0.2, 32)
    cir = write_netlist(out_dir / "tile_32x32_1t1r.cir", spec, g, v)
    ref = solve_tile(spec, g, v, backend="ngspice")
    if not ref.ok:
        raise RuntimeError(f"ngspice failed on the demo tile: {ref.error}")
    tile = {}
    for mode in ("ideal", "linear", "polynomial", "nonlinear"):
        out = TileSurrogate(spec, g, mode).read(v)
        tile[mode] = float(np.max(np.abs(out - ref.sense_currents_a)) / np.max(np.abs(ref.sense_currents_a)))
    summary["tile_rel_max_error"] = tile
    summary["outputs"]["netlist"] = str(cir)
    print(f"    netlist {cir} (run it by hand: ngspice -b {cir})")
    took = "from the solve cache" if ref.cached else f"{ref.seconds:.2f} s"
    print(f"    ngspice {ref.simulator_version}: {took}; surrogate max rel. error: "
          + ", ".join(f"{m} {e:.3g}" for m, e in tile.items()) + f" ({time.perf_counter() - t:.1f} s)")

    from .nn.demo_inference import DEMO_CONFIG

    net_spec = DEMO_CONFIG.tile
    t = _step(3, f"short calibration of the surrogate against VACASK on the network's own tile "
                 f"({net_spec.rows}x{net_spec.cols} {net_spec.cell}, reads 0-"
                 f"{DEMO_CONFIG.read_voltage_v:g} V, 6 tiles x 4 reads)")
    cal, arrays = calibrate(net_spec, n_tiles=6, reads_per_tile=4, seed=1, backend="vacask",
                            v_read_max_v=DEMO_CONFIG.read_voltage_v, out=out_dir / "calibration.h5")
    parity_plot(cal, arrays, out_dir / "calibration_parity.png")
    ir_drop_map(cal, arrays, out_dir / "calibration_irdrop.png")
    summary["calibration"] = cal.summary()
    summary["outputs"]["parity"] = str(out_dir / "calibration_parity.png")
    summary["outputs"]["ir_drop"] = str(out_dir / "calibration_irdrop.png")
    print(f"    fitted selector g_sel = {cal.g_sel_s:.4g} S; held-out RMS error: "
          + ", ".join(f"{m} {100 * e['rel_rms']:.3g} %" for m, e in cal.errors.items())
          + f" ({time.perf_counter() - t:.1f} s)")

    t = _step(4, f"MNIST inference with the calibrated surrogate (64x64 1T1R tiles, 8-bit DAC/ADC, "
                 f"two-phase reads at {DEMO_CONFIG.read_voltage_v:g} V), SPICE-checked")
    from .nn.datasets import data_root

    root = data_root(data, contains=MNIST_TEST_FILE)
    summary["inference"] = _demo_inference(root, cal, limit, out_dir)
    inf = summary["inference"]
    summary["outputs"]["accuracy"] = inf.get("plot")
    chk = inf["spice_check"]
    print(f"    {inf['images']} images ({inf['dataset']}): digital {inf['digital_accuracy']:.2f} %, "
          f"memristive {inf['accuracy']:.2f} % in {inf['seconds']:.1f} s ({time.perf_counter() - t:.1f} s)")
    print(f"    SPICE check ({chk['simulator']}, {chk['reads']} sampled tile reads): max error "
          f"{chk['max_err_lsb']:.3g} ADC steps, {100 * chk['share_within_1_lsb']:.1f} % of reads "
          f"within 1 step, max relative current error {chk['max_rel_err']:.3g}")

    _step(5, "summary")
    rows = [
        ("VTEAM ngspice vs reference", f"{dev['ngspice']:.3g} % RMS of peak"),
        ("VTEAM Verilog-A/VACASK vs reference", f"{dev['vacask']:.3g} % RMS of peak"),
        ("32x32 1T1R tile: ideal vs ngspice", f"{100 * tile['ideal']:.3g} % max"),
        ("32x32 1T1R tile: linear vs ngspice", f"{100 * tile['linear']:.3g} % max"),
        ("32x32 1T1R tile: polynomial vs ngspice", f"{100 * tile['polynomial']:.3g} % max"),
        ("32x32 1T1R tile: nonlinear vs ngspice", f"{100 * tile['nonlinear']:.3g} % max"),
        ("calibrated linear, held out", f"{100 * cal.errors['linear']['rel_rms']:.3g} % RMS"),
        ("MNIST digital", f"{inf['digital_accuracy']:.2f} % ({inf['images']} images)"),
        ("MNIST memristive (polynomial mode)", f"{inf['accuracy']:.2f} % in {inf['seconds']:.1f} s"),
        ("  its SPICE check (max error)", f"{chk['max_err_lsb']:.3g} ADC steps over {chk['reads']} reads"),
    ]
    w = max(len(r[0]) for r in rows)
    print("\n".join(f"    {a:<{w}}  {b}" for a, b in rows))
    print("    plots: " + ", ".join(str(p) for p in summary["outputs"].values() if p))
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2, default=str))
    return summary


def _demo_inference(root: Path | None, cal, limit: int | None, out_dir: Path) -> dict:
    from .nn.demo_inference import infer_demo

    return infer_demo(root, cal, limit=limit, plot=out_dir / "mnist_accuracy.png")
