"""Where VACASK's time goes in one reads deck, and what a deck variant saves: the simulator CPU
(user + system of the VACASK process, min of ``--repeats``, variants interleaved) and, with
``--callgrind``, the instructions it executes (valgrind's callgrind: deterministic, so the
comparison holds on a loaded machine) split into KLU refactorisation, KLU factorisation,
netlist parsing and the rest, each variant's ratio against the baseline of the same run, and
the largest relative difference of its currents from the baseline's.

    .venv/bin/python benchmarks/spice_deck_cost.py                        # 64×64, 0T1R and 1T1R
    .venv/bin/python benchmarks/spice_deck_cost.py --cells 1t1r --vectors 8 --callgrind
    .venv/bin/python benchmarks/spice_deck_cost.py --data ../shared/data  # MNIST check vectors

Variants (VACASK reads decks of one programmed 64×64 array, ``--vectors`` input vectors):
``baseline`` one gate source per row of selectors (the deck before own gate sources), ``now``
the emitted deck (:func:`~spicecross.circuit.reads_netlist.vacask_reads_netlist`). 0T1R decks have
no selectors, so there the two are the same deck (a check of the method: ratio 1).

Vectors: random inputs in [0, 0.2] V with 10 % zeros (the two-phase reads apply no negative
voltage to 1T1R tiles), or with ``--data`` the word-line vectors the first MNIST test images
put on tile (0, 0) of the second conv layer.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (PASSIVE_G_RANGE_S, PT_HF_TI_G_RANGE_S, R_WIRE_OHM, V_READ_MAX_V,  # noqa: E402
                     header, load_str)

from spicecross.circuit.reads_netlist import vacask_reads_netlist  # noqa: E402
from spicecross.circuit.tile import TileSpec  # noqa: E402
from spicecross.spice.simulators import VACASK  # noqa: E402

#: callgrind function names → the part of the run they stand for.
PARTS = {"klu_refactor": "refactorisation", "klu_kernel": "factorisation",
         "dflparse": "parsing"}


def random_tile(cell: str, n: int, vectors: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    spec = TileSpec.uniform_wires(n, n, R_WIRE_OHM, cell=cell)
    g = rng.uniform(*(PT_HF_TI_G_RANGE_S if cell == "1t1r" else PASSIVE_G_RANGE_S), (n, n))
    v = rng.uniform(0.0, V_READ_MAX_V, (vectors, n))
    v[rng.random(v.shape) < 0.1] = 0.0
    return spec, g, v


def mnist_tile(cell: str, vectors: int, data: str):
    """The G⁺ array of tile (0, 0) of the second conv layer, programmed for the default
    AnalogConfig, and distinct word-line vectors the first 8 test images put on it."""
    from spicecross.calibration.network_check import _layer_inputs, _word_line_vectors
    from spicecross.nn.analog import analog_layers, patch_model
    from spicecross.nn.inference import load_eval_data, load_network
    from spicecross.surrogate.config import AnalogConfig

    cfg = AnalogConfig.build(cell=cell)
    ev = load_eval_data("mnist", data, 8, cfg.calibration_images)
    analog = patch_model(load_network("mnist"), cfg, ev.calibration)
    name, layer = analog_layers(analog)[1]
    vecs = _word_line_vectors(layer, _layer_inputs(analog, ev.test.tensors[0])[name])
    rows = layer.array.tile_rows_of(0)
    block = np.zeros((len(vecs), cfg.tile_rows))
    block[:, :rows.stop - rows.start] = vecs[:, rows]
    block = np.unique(block[np.abs(block).max(axis=1) > 0], axis=0)
    v = block[np.random.default_rng(0).permutation(len(block))[:vectors]]
    return layer.array.spec.for_solvers(), layer.array.g_dev[0, 0, 0], v


def vacask_cpu_s(text: str, n: int) -> tuple[float, np.ndarray]:
    """(CPU seconds of the VACASK process, sense currents (n, cols) in A)."""
    import resource

    def children() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    c0 = children()
    cur = VACASK.read_tiles(text, n)
    return children() - c0, cur


def callgrind_parts(text: str) -> dict[str, int]:
    """Instructions VACASK executes on ``text``: ``total`` and per :data:`PARTS`."""
    with tempfile.TemporaryDirectory() as tmp:
        deck, out = Path(tmp) / "deck.sim", Path(tmp) / "callgrind.out"
        deck.write_text(text)
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        VACASK.executable(), "-n", "1", "-b", "1", "-qp", str(deck)], cwd=tmp,
                       capture_output=True, check=True)
        ann = subprocess.run(["callgrind_annotate", str(out)], capture_output=True, text=True,
                             check=True).stdout
    counts = {"total": int(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", ann)
                           .group(1).replace(",", ""))}
    for ln in ann.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S+)", ln)
        if m:
            for key, part in PARTS.items():
                if key in m.group(2):
                    counts[part] = counts.get(part, 0) + int(m.group(1).replace(",", ""))
    return counts


def decks(spec, g, v) -> dict[str, str]:
    return {"baseline": vacask_reads_netlist(spec, g, v, own_gates=False),
            "now": vacask_reads_netlist(spec, g, v)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="+", default=["0t1r", "1t1r"], choices=["0t1r", "1t1r"])
    ap.add_argument("--vectors", type=int, default=16, help="input vectors per deck")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", default=None, help="MNIST data root: real word-line vectors")
    ap.add_argument("--callgrind", action="store_true", help="also count instructions")
    args = ap.parse_args()
    if args.callgrind and not shutil.which("valgrind"):
        raise SystemExit("--callgrind needs valgrind on PATH (apt-get install valgrind)")
    print(header("VACASK reads deck: where the time goes, and what a deck variant saves"))
    print(f"\n64×64, {args.vectors} vectors per deck, CPU min of {args.repeats} (interleaved)\n")
    print("| cell | variant | VACASK CPU (s) | ratio | instructions (G) | ratio | "
          "refactorisation | factorisation | parsing | max rel diff |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cell in args.cells:
        spec, g, v = (mnist_tile(cell, args.vectors, args.data) if args.data
                      else random_tile(cell, 64, args.vectors))
        texts = decks(spec, g, v)
        cpu = {k: np.inf for k in texts}
        cur = {}
        for _ in range(args.repeats):
            for name, text in texts.items():
                dt, cur[name] = vacask_cpu_s(text, len(v))
                cpu[name] = min(cpu[name], dt)
        ref = cur["baseline"]
        scale = np.maximum(np.abs(ref).max(axis=1), 1e-12)
        ins = {k: callgrind_parts(t) for k, t in texts.items()} if args.callgrind else {}
        for name in texts:
            diff = float((np.abs(cur[name] - ref).max(axis=1) / scale).max())
            counted = ins.get(name)
            cols = ["–"] * 5
            if counted:
                total = counted["total"]
                cols = [f"{total / 1e9:.2f}", f"{ins['baseline']['total'] / total:.2f}×",
                        *(f"{100 * counted.get(p, 0) / total:.0f} %"
                          for p in ("refactorisation", "factorisation", "parsing"))]
            print(f"| {cell} | {name} | {cpu[name]:.3f} | {cpu['baseline'] / cpu[name]:.2f}× | "
                  + " | ".join(cols) + f" | {diff:.1e} |", flush=True)
    print(f"\nat end: {load_str()}")


if __name__ == "__main__":
    main()
