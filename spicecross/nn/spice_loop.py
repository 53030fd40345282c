"""SPICE in the loop: a patched network whose every array read is solved by a circuit simulator.

The network, its DAC/ADC and its calibration stay exactly those of the surrogate run (the
converter ranges are calibrated by the surrogate, then frozen); only the reads change.
:func:`spice_reads` swaps each analog layer's read path (:attr:`ProgrammedArray.reader
<spicecross.surrogate.array.ProgrammedArray.reader>`) for a :class:`SpiceReader`, so the layers'
own forward code (DAC phases → reads → ADC → scaling back) runs unchanged.

Per layer call (one read phase of one batch), the reader takes the word-line vectors (M, K) in
V, cuts them per row tile, keeps each distinct vector once (identical word-line voltages on one
programmed array give identical currents), and sends one
:func:`~spicecross.spice.solve.solve_many_reads` job per (tile, array): all distinct vectors of
the batch on that array in one simulator run per chunk, cached by content, in parallel through
joblib (loky/threading) or a dask cluster (``parallel_backend="dask"`` with ``scheduler``).
The differential sense currents go back to the layer as its reads.

Beside it, the reader computes the surrogate's reads of the very same vectors (the configured
mode: transfer matrices, or the per-tile nonlinear solver) and records per image the current
error in ADC steps: ``|ΔI_SPICE − ΔI_surrogate| / LSB`` with ``LSB = ADC range / (2^(bits−1) −
1)`` per (row tile, column) from the layer's calibration (with an ideal ADC, 8-bit steps of the
largest SPICE current of the call per column are the yardstick).

Simulator: VACASK by default (one simulator for every tile size). 1T1R reads with negative
word-line voltages (``read_scheme="bipolar"``) go to ngspice, since VACASK's mos1 mis-solves
forward-biased junctions; the default two-phase reads never apply negative voltages.

The resumable driver over many images is :func:`run_spice_loop` (HDF5 via
:mod:`.spice_loop_store`).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from ..spice.simulators import DEFAULT_CHECK_BACKEND, SimulationError
from .calibrator import adc_codes, adc_yardstick

#: Bin edges of log10(|current error| / LSB) for the per-layer error distributions.
HIST_EDGES_LOG10 = np.linspace(-16.0, 4.0, 201)
#: Images per batch of the SPICE loop (one HDF5 write per batch).
DEFAULT_BATCH_IMAGES = 4


@dataclass
class SpiceLoopSettings:
    """How the reads are solved: ``simulator`` ('vacask' or 'ngspice'), ``n_jobs`` workers
    (default: cores), ``parallel_backend`` ('loky', 'threading', 'dask', 'ray'), ``scheduler``
    (a running dask scheduler's address), ``cache_dir`` ('default', a directory, or None for no
    cache), ``progress`` (a progress bar per layer call) and ``superpose_linear``: a linear
    (0T1R) array read with more distinct vectors than rows is solved in SPICE for its unit
    vectors and its reads follow by superposition, exact to ≤ 1e-9
    (:mod:`~spicecross.spice.superposition`; 3.4× fewer simulated reads for the first MNIST
    image at 64×64, and the unit-vector solves are cache hits for every later image)."""

    simulator: str = DEFAULT_CHECK_BACKEND
    n_jobs: int | None = None
    parallel_backend: str = "loky"
    scheduler: str | None = None
    cache_dir: Any = "default"
    progress: bool = True
    superpose_linear: bool = False

    def __post_init__(self) -> None:
        from ..spice.cluster import PARALLEL_BACKENDS
        from ..spice.simulators import SIMULATOR_NAMES

        if self.simulator not in SIMULATOR_NAMES:
            raise ValueError(f"simulator must be one of {SIMULATOR_NAMES}, got {self.simulator!r}")
        if self.parallel_backend not in PARALLEL_BACKENDS:
            raise ValueError(f"parallel backend must be one of {PARALLEL_BACKENDS}, got "
                             f"{self.parallel_backend!r}")
        if self.n_jobs is not None and (isinstance(self.n_jobs, bool) or self.n_jobs < 1):
            raise ValueError(f"n_jobs must be ≥ 1, got {self.n_jobs!r}")


@dataclass
class ImageErrors:
    """Per-image current errors of one layer in a batch (all phases and row tiles):
    ``max_lsb``, ``sumsq_lsb`` and ``count`` of |ΔI|/LSB (so RMS = sqrt(sumsq/count)),
    ``code_mismatch`` (ADC codes that differ) and ``hist`` (images, bins) over
    :data:`HIST_EDGES_LOG10` (errors below the first edge, e.g. exact zeros, in bin 0)."""

    max_lsb: np.ndarray
    sumsq_lsb: np.ndarray
    count: np.ndarray
    code_mismatch: np.ndarray
    hist: np.ndarray

    @classmethod
    def zeros(cls, n: int) -> "ImageErrors":
        return cls(np.zeros(n), np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.int64),
                   np.zeros((n, len(HIST_EDGES_LOG10) - 1), np.int64))


@dataclass
class SpiceReader:
    """The read path of one analog layer while SPICE is in the loop (see module doc).

    Set :meth:`start_batch` before each forward pass; after it, :attr:`errors` holds the
    per-image errors, :attr:`reads` the number of array reads solved (distinct vectors × arrays),
    :attr:`superposed` how many of them came from unit-vector solves by superposition and
    :attr:`simulators` the simulators used."""

    name: str
    layer: nn.Module
    settings: SpiceLoopSettings
    errors: ImageErrors = field(default_factory=lambda: ImageErrors.zeros(0))
    reads: int = 0
    superposed: int = 0
    vectors: int = 0
    seconds: float = 0.0
    simulators: set = field(default_factory=set)
    calls: int = 0

    def start_batch(self, n_images: int) -> None:
        self.errors = ImageErrors.zeros(n_images)
        self.reads = self.superposed = self.vectors = self.calls = 0
        self.seconds = 0.0

    def simulator_for(self, v: np.ndarray) -> str:
        """VACASK unless 1T1R reads apply negative word-line voltages (then ngspice)."""
        if (self.settings.simulator == "vacask" and self.layer.config.cell == "1t1r"
                and v.size and float(v.min()) < 0):
            return "ngspice"
        return self.settings.simulator

    def __call__(self, array, vmat: Tensor) -> list[Tensor]:
        from ..spice.solve import distinct_rows, solve_many_reads

        t0 = time.perf_counter()
        v = vmat.detach().to(torch.float64).numpy()
        M = v.shape[0]
        R, C = array.config.tile_rows, array.config.tile_cols
        spec = array.spec.for_solvers()
        jobs, distinct = [], []
        for r in range(array.n_row_tiles):
            rows = array.tile_rows_of(r)
            vt = np.zeros((M, R))
            vt[:, :rows.stop - rows.start] = v[:, rows]
            uniq, inverse = distinct_rows(vt)
            distinct.append((uniq, inverse))
            for c in range(array.n_col_tiles):
                for s in (0, 1):
                    jobs.append((spec, array.g_dev[s, r, c], uniq))
        sim = self.simulator_for(v)
        self.simulators.add(sim)
        self.calls += 1
        res = solve_many_reads(jobs, backend=sim, n_jobs=self.settings.n_jobs,
                               parallel_backend=self.settings.parallel_backend,
                               scheduler=self.settings.scheduler,
                               cache_dir=self.settings.cache_dir, progress=self.settings.progress,
                               desc=f"SPICE {self.name} ({self.calls})",
                               superpose=self.settings.superpose_linear)
        bad = [k for k, x in enumerate(res) if not x.ok]
        if bad:
            raise SimulationError(f"SPICE loop, layer {self.name}: {len(bad)} of {len(res)} "
                                  f"array reads failed; first: {res[bad[0]].error}")
        surrogate = surrogate_currents(array, v)
        out, k = [], 0
        for r, (uniq, inverse) in enumerate(distinct):
            cur = np.zeros((len(uniq), array.n_col_tiles * C))
            for c in range(array.n_col_tiles):
                cur[:, c * C:(c + 1) * C] = res[k].currents_a - res[k + 1].currents_a
                self.superposed += len(uniq) * (res[k].superposed + res[k + 1].superposed)
                k += 2
            d = cur[inverse, :array.c_out]                                # (M, C_out), A
            self._record(r, d, surrogate[r])
            self.reads += 2 * array.n_col_tiles * len(uniq)
            self.vectors += M * array.n_col_tiles
            out.append(torch.from_numpy(d).to(vmat.dtype))
        self.seconds += time.perf_counter() - t0
        return out

    def _record(self, r: int, d_spice: np.ndarray, d_sur: np.ndarray) -> None:
        """Add row tile r's per-image errors (|ΔI|/LSB per column) to :attr:`errors`."""
        cfg, cal = self.layer.config, self.layer.calibration
        fs, steps = adc_yardstick(cal, cfg.adc_bits, r, slice(None), d_spice)
        lsb = fs / steps
        e = np.abs(d_spice - d_sur) / lsb
        mismatch = adc_codes(d_spice, fs, steps) != adc_codes(d_sur, fs, steps)
        n = len(self.errors.max_lsb)
        e = e.reshape(n, -1)
        mismatch = mismatch.reshape(n, -1)
        er = self.errors
        er.max_lsb = np.maximum(er.max_lsb, e.max(axis=1))
        er.sumsq_lsb += (e ** 2).sum(axis=1)
        er.count += e.shape[1]
        er.code_mismatch += mismatch.sum(axis=1)
        lg = np.log10(np.maximum(e, 1e-300))
        lg = np.clip(lg, HIST_EDGES_LOG10[0], HIST_EDGES_LOG10[-1] - 1e-9)
        idx = np.searchsorted(HIST_EDGES_LOG10, lg, side="right") - 1
        for i in range(n):
            er.hist[i] += np.bincount(idx[i], minlength=er.hist.shape[1])


def surrogate_currents(array, v: np.ndarray) -> list[np.ndarray]:
    """The surrogate's differential currents (A) per row tile, (M, C_out) each, for word-line
    voltages ``v`` (M, K) in V (float64), in the array's configured mode."""
    if array.surrogate_uses_tile_reads:
        return [t.numpy() for t in array.surrogate_tile_read_currents(torch.from_numpy(v))]
    return [array.row_tile_currents(v[:, array.tile_rows_of(r)], r)
            for r in range(array.n_row_tiles)]


@contextlib.contextmanager
def spice_reads(model: nn.Module, settings: SpiceLoopSettings | None = None
                ) -> Iterator[dict[str, SpiceReader]]:
    """Within the block, every array read of the calibrated patched ``model`` is solved in
    SPICE; yields the :class:`SpiceReader` of each analog layer by module name. The surrogate
    read path is restored on exit."""
    from .analog import analog_layers

    settings = settings or SpiceLoopSettings()
    layers = analog_layers(model)
    if not layers:
        raise ValueError("model has no analog layers: patch it with patch_model first")
    missing = [n for n, m in layers if m.calibration is None]
    if missing:
        raise RuntimeError(f"analog layer(s) {', '.join(missing)} not calibrated: the SPICE loop "
                           "uses the surrogate's calibration (calibrate_model first)")
    readers = {}
    try:
        for name, m in layers:
            readers[name] = SpiceReader(name, m, settings)
            m.array.reader = readers[name]
        yield readers
    finally:
        for name, m in layers:
            m.array.__dict__.pop("reader", None)


def forward_in_spice(model: nn.Module, x: Tensor, settings: SpiceLoopSettings | None = None
                     ) -> tuple[Tensor, dict[str, SpiceReader]]:
    """Logits of ``x`` with every read in SPICE, and the layers' readers (errors, reads)."""
    with spice_reads(model, settings) as readers:
        for r in readers.values():
            r.start_batch(len(x))
        with torch.no_grad():
            logits = model(x)
    return logits, readers


def _sha(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Tensor):
            p = p.detach().cpu().contiguous().numpy()
        h.update(p.tobytes() if isinstance(p, np.ndarray) else str(p).encode())
    return h.hexdigest()


def run_fingerprint(model: nn.Module, config, calibration_images: Tensor, simulator: str) -> str:
    """What makes two SPICE-loop runs the same (so a results file can be resumed): the weights,
    the configuration, the calibration images and the simulator."""
    import json

    state = [t for _, t in sorted(model.state_dict().items())]
    return _sha(json.dumps(config.to_dict(), sort_keys=True, default=str), simulator,
                calibration_images, *state)


def image_ids(x: Tensor) -> np.ndarray:
    """A short content hash per image (so a resumed run refuses different images)."""
    return np.array([_sha(img)[:16] for img in x], dtype="S16")


def run_spice_loop(analog: nn.Module, x: Tensor, y: Tensor, out: str | Path,
                   settings: SpiceLoopSettings | None = None, fingerprint: str = "",
                   meta: dict | None = None, batch_images: int = DEFAULT_BATCH_IMAGES,
                   digital: nn.Module | None = None, max_batches: int | None = None,
                   log=None) -> dict[str, Any]:
    """Run test images ``x`` (labels ``y``) through the calibrated patched ``analog`` network
    (a float64 copy of it) with every read in SPICE and through its surrogate,
    ``batch_images`` at a time, appending
    each batch's per-image results atomically to the HDF5 file ``out``; images already in
    ``out`` (same ``fingerprint``, same image content) are skipped, so an interrupted run
    continues where it stopped. ``max_batches`` stops after that many new batches (resume
    tests). Returns :func:`~spicecross.nn.spice_loop_store.summarize` of the whole file."""
    from . import spice_loop_store as store
    from .analog import analog_layers

    if isinstance(batch_images, bool) or not isinstance(batch_images, int) or batch_images < 1:
        raise ValueError(f"images per SPICE batch must be ≥ 1, got {batch_images!r}")
    settings = settings or SpiceLoopSettings()
    names = [n for n, _ in analog_layers(analog)]
    ids = image_ids(x)
    done = store.open_run(out, fingerprint, names, {**(meta or {}),
                                                    "simulator": settings.simulator})
    todo = [i for i in range(len(x)) if i not in done]
    for i in done:
        if i < len(ids) and done[i] != ids[i]:
            raise ValueError(f"{out}: image {i} differs from the one stored there (other data); "
                             "remove the file or pass another output")
    # float64 throughout (the network's digital parts too; the surrogate then reads with its
    # float64 read matrices): SPICE's currents are float64, and in float32 the surrogate's own
    # rounding (~1e-7) flips ADC codes that sit on a step boundary, which SPICE did not flip
    analog = copy.deepcopy(analog).double().eval()
    for b, lo in enumerate(range(0, len(todo), batch_images)):
        if max_batches is not None and b >= max_batches:
            break
        idx = todo[lo:lo + batch_images]
        xb = x[idx].double()
        t0 = time.perf_counter()
        with torch.no_grad():
            sur = analog(xb)
            dig = (digital(xb.to(next(digital.parameters()).dtype)) if digital is not None
                   else torch.full_like(sur, float("nan")))
        spice, readers = forward_in_spice(analog, xb, settings)
        secs = time.perf_counter() - t0
        store.append_images(out, {
            "image_index": np.array(idx, np.int64), "image_id": ids[idx],
            "label": y[idx].numpy().astype(np.int64),
            "logits_spice": spice.double().numpy(), "logits_surrogate": sur.double().numpy(),
            "logits_digital": dig.double().numpy(),
            "seconds": np.full(len(idx), secs / len(idx)),
        }, {n: readers[n] for n in names})
        if log is not None:
            log(f"images {', '.join(map(str, idx))}: {secs:.1f} s, "
                f"{sum(r.reads for r in readers.values())} array reads")
    return store.summarize(store.load_results(out))


__all__ = ["DEFAULT_BATCH_IMAGES", "HIST_EDGES_LOG10", "ImageErrors", "SpiceLoopSettings",
           "SpiceReader", "forward_in_spice", "image_ids", "run_fingerprint", "run_spice_loop",
           "spice_reads", "surrogate_currents"]
