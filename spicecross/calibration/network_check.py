"""The SPICE error bar of a network answer: tile reads sampled from the patched network itself
(its programmed arrays, the word-line voltages that real images put on them, every read phase),
solved in SPICE, compared with the surrogate's reads of the same arrays.

Per analog layer a few tiles are drawn (one per :data:`VECTORS_PER_TILE` reads) and, for each,
several input vectors among those the images actually apply (vectors that are all zero on the
tile are skipped), so reads of one array share one programmed state and one simulator run.
Both arrays of every double-column pair are solved. Reported per layer and overall:

* ``max_err_lsb`` / ``rms_err_lsb``: the differential current error ``|ΔI⁺ − ΔI⁻|`` in units of
  the column's ADC step (range / (2^(bits−1) − 1)); with an ideal ADC, 8-bit steps of the
  calibrated range are used as the yardstick;
* ``max_rel_err``: the largest array current error relative to that array's largest SPICE
  current in the read (well conditioned: array currents are positive);
* ``rms_err_pct_fs``: RMS differential error in % of the ADC full scale;
* ``code_mismatch_share``: the share of (read, column) pairs whose ADC code differs.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..nn.calibrator import adc_codes, adc_yardstick
from ..spice.simulators import DEFAULT_CHECK_BACKEND

#: Input vectors read per sampled tile (reads of one programmed array): 32 reads per layer
#: sample 2 tiles. Each sampled tile costs its two arrays a simulator run whose parsing,
#: elaboration, first factorisation and (1T1R) cold first point are paid once per run, about
#: 3 reads' worth of a 64×64 deck; 16 vectors per tile instead of 8 cut a 32-read check from
#: 30 to 18 runs (benchmarks/spice_check.py --solve-only). Fewer tiles per layer: the check
#: samples fewer programmed states (arrays) and more input vectors on each.
VECTORS_PER_TILE = 16


@dataclass
class SampledTile:
    """Reads of one tile (r, c) of one layer: word-line voltages (n, rows) in V."""

    layer: str
    r: int
    c: int
    v: np.ndarray


def _layer_inputs(model: nn.Module, images: Tensor) -> dict[str, Tensor]:
    from ..nn.calibrator import run_with_layer_inputs

    seen: dict[str, Tensor] = {}
    run_with_layer_inputs(model, images, lambda name, layer, x: seen.__setitem__(name, x))
    return seen


def _word_line_vectors(layer, x: Tensor) -> np.ndarray:
    """All crossbar input vectors (M, K) in V that ``x`` puts on the layer, every phase."""
    import torch.nn.functional as F

    out = []
    for _, v in layer._dac(x, layer.calibration):
        if v.dim() == 4:
            cols = F.unfold(v, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
            v = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        out.append(v.reshape(-1, layer.array.k_in).to(torch.float64).numpy())
    return np.concatenate(out)


def sample_tile_reads(model: nn.Module, images: Tensor, reads_per_layer: int, seed: int = 0,
                      vectors_per_tile: int = VECTORS_PER_TILE) -> dict[str, list[SampledTile]]:
    """Up to ``reads_per_layer`` reads per analog layer of a calibrated patched ``model`` on
    ``images``, grouped by tile, about ``vectors_per_tile`` per tile (see module doc)."""
    from ..nn.analog import analog_layers

    if isinstance(vectors_per_tile, bool) or not isinstance(vectors_per_tile, int) \
            or vectors_per_tile < 1:
        raise ValueError(f"vectors per tile must be a positive integer, got {vectors_per_tile!r}")
    rng = np.random.default_rng(seed)
    inputs = _layer_inputs(model, images)
    out: dict[str, list[SampledTile]] = {}
    for name, layer in analog_layers(model):
        vecs = _word_line_vectors(layer, inputs[name])
        arr = layer.array
        R = layer.config.tile_rows
        n_tiles = arr.n_row_tiles * arr.n_col_tiles
        want_tiles = min(n_tiles, max(1, -(-reads_per_layer // vectors_per_tile)))
        picks = rng.choice(n_tiles, want_tiles, replace=False)
        left = reads_per_layer
        tiles = []
        for k, t in enumerate(picks):
            r, c = divmod(int(t), arr.n_col_tiles)
            rows = arr.tile_rows_of(r)
            block = np.zeros((len(vecs), R))
            block[:, :rows.stop - rows.start] = vecs[:, rows]
            live = np.flatnonzero(np.abs(block).max(axis=1) > 0)
            n = min(len(live), -(-left // (want_tiles - k)))
            if n == 0:
                continue
            tiles.append(SampledTile(name, r, c, block[rng.choice(live, n, replace=False)]))
            left -= n
        out[name] = tiles
    return out


def solve_sampled_arrays(jobs: list[tuple], backend: str, n_jobs: int | None, parallel_backend: str,
                         scheduler: str | None, cache_dir, progress: bool) -> list[np.ndarray]:
    """SPICE sense currents (n, cols) in A for each (spec, g, v (n, rows)) job: all reads of one
    array in one simulator run (:func:`~spicecross.spice.solve.solve_many_reads`)."""
    from ..spice.solve import solve_many_reads

    return _currents(solve_many_reads(jobs, backend=backend, n_jobs=n_jobs,
                                      parallel_backend=parallel_backend, scheduler=scheduler,
                                      cache_dir=cache_dir, progress=progress, desc="SPICE check"))


def _currents(res: list) -> list[np.ndarray]:
    """The sense currents (A) of the check's ReadsResults; SimulationError if any failed."""
    from ..spice.simulators import SimulationError

    bad = [r for r in res if not r.ok]
    if bad:
        raise SimulationError(f"SPICE check: {len(bad)} of {len(res)} arrays failed; first: "
                              f"{bad[0].error}")
    return [r.currents_a for r in res]


class CoreGate:
    """At most ``slots`` holders at a time (a ``with`` block each); :meth:`widen` raises the
    limit and wakes the waiting ones."""

    def __init__(self, slots: int) -> None:
        import threading

        if slots < 1:
            raise ValueError(f"a gate needs at least 1 slot, got {slots}")
        self._cv = threading.Condition()
        self.slots, self.held = slots, 0

    def __enter__(self) -> "CoreGate":
        with self._cv:
            self._cv.wait_for(lambda: self.held < self.slots)
            self.held += 1
        return self

    def __exit__(self, *exc) -> None:
        with self._cv:
            self.held -= 1
            self._cv.notify()

    def widen(self, slots: int) -> None:
        with self._cv:
            self.slots = max(self.slots, slots)
            self._cv.notify_all()


def _summary(d_err: np.ndarray, lsb: np.ndarray, fs: np.ndarray, codes_differ: np.ndarray,
             rel: np.ndarray) -> dict[str, float]:
    e_lsb = np.abs(d_err) / lsb
    return {"reads": int(len(rel)), "max_err_lsb": float(e_lsb.max()),
            "rms_err_lsb": float(np.sqrt(np.mean(e_lsb ** 2))),
            "share_within_1_lsb": float(np.mean(e_lsb.max(axis=1) <= 1.0)),
            "max_rel_err": float(rel.max()),
            "rms_err_pct_fs": float(100 * np.sqrt(np.mean((d_err / fs) ** 2))),
            "code_mismatch_share": float(np.mean(codes_differ))}


@dataclass
class PreparedCheck:
    """The SPICE jobs of a check, ``(spec, g, v)`` per array, where each belongs (layer, sampled
    tile, array index), the simulator (and why it was changed, if it was) and the start time."""

    sampled: dict[str, list[SampledTile]]
    jobs: list[tuple]
    where: list[tuple]
    backend: str
    note: str | None
    t0: float


def prepare_spice_check(model: nn.Module, images: Tensor, reads_per_layer: int = 32,
                        backend: str = DEFAULT_CHECK_BACKEND, seed: int = 0) -> PreparedCheck:
    """Sample the check's reads from the calibrated patched ``model`` running ``images`` and
    list the SPICE jobs (solve them with :func:`solve_sampled_arrays`, then
    :func:`compare_spice_check`; :func:`spice_check` does all three)."""
    from ..nn.analog import analog_layers

    if isinstance(reads_per_layer, bool) or not isinstance(reads_per_layer, int) or reads_per_layer < 1:
        raise ValueError(f"reads per layer must be a positive integer, got {reads_per_layer!r}")
    t0 = time.perf_counter()
    layers = dict(analog_layers(model))
    sampled = sample_tile_reads(model, images, reads_per_layer, seed)
    note = None
    negative = any(float(t.v.min()) < 0 for tiles in sampled.values() for t in tiles)
    if negative and backend == "vacask" and any(m.config.cell == "1t1r" for m in layers.values()):
        # VACASK's sp_mos1 keeps a stale junction-limiting voltage and reports a forward-biased
        # drain junction as nearly open (tests/test_selector.py documents it): use ngspice
        backend = "ngspice"
        note = ("negative word-line voltages on 1T1R tiles: checked with ngspice, since VACASK's "
                "sp_mos1 mis-solves forward-biased junctions")
    jobs, where = [], []
    for name, tiles in sampled.items():
        arr = layers[name].array
        for t in tiles:
            for s in (0, 1):
                jobs.append((arr.spec.for_solvers(), arr.g_dev[s, t.r, t.c], t.v))
                where.append((name, t, s))
    return PreparedCheck(sampled, jobs, where, backend, note, t0)


def spice_check(model: nn.Module, images: Tensor, reads_per_layer: int = 32,
                backend: str = DEFAULT_CHECK_BACKEND, n_jobs: int | None = None,
                parallel_backend: str = "loky", scheduler: str | None = None,
                cache_dir="default", seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Compare the surrogate with SPICE on reads sampled from the calibrated patched ``model``
    running ``images``; returns the report described in the module doc (``"per_layer"`` a list
    in layer order) and warns when any read is more than 1 ADC step off."""
    prep = prepare_spice_check(model, images, reads_per_layer, backend, seed)
    spice = solve_sampled_arrays(prep.jobs, prep.backend, n_jobs, parallel_backend, scheduler,
                                 cache_dir, progress)
    return compare_spice_check(model, prep, spice)


def check_beside(model: nn.Module, images: Tensor, work: Callable[[], Any],
                 reads_per_layer: int = 32, backend: str = DEFAULT_CHECK_BACKEND,
                 n_jobs: int | None = None, seed: int = 0, cache_dir="default"
                 ) -> tuple[Any, dict[str, Any]]:
    """Run ``work()`` (e.g. the inference of the test set) while the SPICE check of ``model``
    solves beside it: while ``work`` runs it keeps one core (one torch thread) and the
    simulator runs get the others (at least one run at a time); once it ends they get all
    ``n_jobs`` (default one per core). Each array's reads are one simulator run, started from a
    background thread, so the check costs the wall time by which it outlasts ``work``, and
    never slows ``work`` below its one-core pace with more runs than free cores (2 cores, 1T1R
    before: two runs beside a one-thread inference). Returns ``(work(), report)``; the report
    is :func:`spice_check`'s."""
    from concurrent.futures import ThreadPoolExecutor

    from ..spice.solve import solve_many_reads
    from ..threads import available_cores, limited_threads

    prep = prepare_spice_check(model, images, reads_per_layer, backend, seed)
    cores = available_cores()
    workers = cores if n_jobs is None else int(n_jobs)
    if workers < 1:
        raise ValueError(f"n_jobs must be ≥ 1, got {n_jobs!r}")
    gate = CoreGate(max(1, min(workers, cores - 1)))

    def solve(job: tuple):
        with gate:
            return solve_many_reads([job], backend=prep.backend, n_jobs=1, cache_dir=cache_dir,
                                    progress=False)[0]

    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(solve, job) for job in prep.jobs]
        try:
            with limited_threads(max(1, cores - gate.slots)):
                result = work()
        except BaseException:
            for f in futures:       # runs not started yet are dropped; a failed work() ends
                f.cancel()          # after the running ones, not after the whole check
            raise
        finally:
            gate.widen(workers)
        spice = _currents([f.result() for f in futures])
    return result, compare_spice_check(model, prep, spice)


def compare_spice_check(model: nn.Module, prep: PreparedCheck, spice: list[np.ndarray]
                        ) -> dict[str, Any]:
    """The check's report from the SPICE currents of ``prep.jobs`` (see :func:`spice_check`)."""
    from ..nn.analog import analog_layers

    layers = dict(analog_layers(model))
    sampled, where, backend, note, t0 = prep.sampled, prep.where, prep.backend, prep.note, prep.t0
    by_tile: dict[tuple, dict[int, np.ndarray]] = {}
    for (name, t, s), cur in zip(where, spice):
        by_tile.setdefault((name, id(t)), {})[s] = cur
    per_layer = []
    pooled: dict[str, list] = {k: [] for k in ("d", "lsb", "fs", "codes", "rel")}
    for name, tiles in sampled.items():
        layer = layers[name]
        cfg, arr, cal = layer.config, layer.array, layer.calibration
        acc: dict[str, list] = {k: [] for k in pooled}
        for t in tiles:
            C = cfg.tile_cols
            cols = slice(t.c * C, min((t.c + 1) * C, arr.c_out))
            n_cols = cols.stop - cols.start
            ref = by_tile[(name, id(t))]
            ip, im = arr.read_tile(t.r, t.c, t.v)
            d_sur = (ip - im)[:, :n_cols]
            d_ref = (ref[0] - ref[1])[:, :n_cols]
            fs, steps = adc_yardstick(cal, cfg.adc_bits, t.r, cols, d_ref)
            fs = np.broadcast_to(fs, d_ref.shape)
            lsb = fs / steps
            codes_differ = adc_codes(d_sur, fs, steps) != adc_codes(d_ref, fs, steps)
            rel = np.maximum(np.abs(ip - ref[0]).max(1) / np.abs(ref[0]).max(1),
                             np.abs(im - ref[1]).max(1) / np.abs(ref[1]).max(1))
            for k, val in zip(acc, (d_sur - d_ref, lsb, fs, codes_differ, rel)):
                acc[k].append(val)
        if not tiles:
            continue
        stacked = {k: np.concatenate(v) for k, v in acc.items()}
        per_layer.append({"layer": name, **_summary(stacked["d"], stacked["lsb"], stacked["fs"],
                                                    stacked["codes"], stacked["rel"])})
        for k in pooled:
            pooled[k].append(stacked[k])
    if not per_layer:
        raise ValueError("SPICE check: the images put no non-zero input on any sampled tile")
    # layers differ in column count: pool per-read maxima
    reads = sum(p["reads"] for p in per_layer)
    report = {"reads": reads, "simulator": backend, **({"simulator_note": note} if note else {}),
              "max_err_lsb": max(p["max_err_lsb"] for p in per_layer),
              "max_rel_err": max(p["max_rel_err"] for p in per_layer),
              "share_within_1_lsb": float(sum(p["share_within_1_lsb"] * p["reads"]
                                              for p in per_layer) / reads),
              "code_mismatch_share": float(np.mean(np.concatenate(
                  [c.ravel() for c in pooled["codes"]]))),
              "per_layer": per_layer, "seconds": time.perf_counter() - t0}
    if report["max_err_lsb"] > 1.0:
        worst = max(per_layer, key=lambda p: p["max_err_lsb"])
        warnings.warn(f"surrogate differs from {backend} by up to {report['max_err_lsb']:.3g} ADC "
                      f"steps (layer {worst['layer']}); the accuracy carries that error",
                      RuntimeWarning, stacklevel=2)
    return report


__all__ = ["CoreGate", "PreparedCheck", "SampledTile", "check_beside", "compare_spice_check",
           "prepare_spice_check", "sample_tile_reads", "solve_sampled_arrays", "spice_check"]
