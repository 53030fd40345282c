"""Network-level read disturb: the test set streams through tiles whose VTEAM devices move
with every read (``spicecross infer --read-disturb``).

The test images are taken in chunks of ``chunk`` images. Each chunk is inferred with the
devices' present conductances (its accuracy is recorded); then, per analog layer and row tile,
the read pulses that chunk applied — every word-line vector of every read, both phases of
two-phase reads (all first-phase reads of the chunk, then all second-phase ones), at the DAC's
voltages (full scale ``--v-read``), each a rectangular pulse of ``pulse.width_s`` — advance
every cell of the row tile's G⁺ and G⁻ arrays with its exact cell voltage
(:func:`~spicecross.surrogate.read_disturb_update.advance_arrays`); the read matrices
of the row tiles that moved are then rebuilt by the array's own path
(:meth:`~spicecross.surrogate.array.ProgrammedArray.refresh_row_tiles`; the transfer-matrix
disk cache bypassed: evolving arrays would only fill it) before that layer reads the next
chunk (:mod:`~spicecross.nn.read_disturb_steps`; with two or more threads the next chunk's
inference runs beside the updates, each layer waiting for its own). The converters
keep the calibration made on the programmed network (a chip calibrates once). A layer whose
DAC range itself stays within the thresholds (every read's span is at most the range's) is
skipped whole.

Only the reads a threshold can see are unfolded (:func:`candidate_reads`: the passive bound
of each whole vector, from its patch's extremes in float32, decides first; 8–17 % of the MNIST
network's reads at 0.7–1 V), as float64 (reads × inputs) arrays per layer and chunk; each row
tile gets the same live reads, in the same order, as from every vector
(tests/test_read_disturb_fast.py).

1T1R tiles: every read's memristor voltages come from the exact nonlinear solve with the
selectors (gates at their DC voltage), the passive bound counting the selectors' bulk voltage
as applied (:mod:`~spicecross.surrogate.read_disturb_update`).
"""
from __future__ import annotations

import math
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ..surrogate import transfer_cache
from ..surrogate.read_disturb_bounds import inert_reads, inert_spans
from ..surrogate.read_disturb_update import DisturbStats, ReadPulse
from .read_disturb_steps import LayerChain, LayerSteps, run_inline

__all__ = ["candidate_reads", "check_disturb_config", "disturb_network", "read_disturb_infer"]

#: Reads of one phase of a convolution from which :func:`candidate_reads` splits the images in
#: two halves, the second offered to another worker (:func:`~spicecross.threads.fork_join`).
FORK_MIN_READS = 20_000


def check_disturb_config(config) -> None:
    """One-line ValueError for configurations read disturb does not model."""
    if config.compat != "physical":
        raise ValueError(f"--read-disturb needs the physical read path, got --compat "
                         f"{config.compat}")
    nid = config.nonideal
    if nid.stuck_hrs_p or nid.stuck_lrs_p:
        raise ValueError(f"--read-disturb would move stuck devices (the programmed arrays keep "
                         f"no stuck-at mask): drop --stuck-hrs {nid.stuck_hrs_p:g} / --stuck-lrs "
                         f"{nid.stuck_lrs_p:g}")


def _infer_chunk(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits of ``x`` and every analog layer's input, from one forward pass."""
    from .calibrator import run_with_layer_inputs

    seen: dict[str, torch.Tensor] = {}
    out: list[torch.Tensor] = []
    hook = model.register_forward_hook(lambda m, i, o: out.append(o))
    try:
        run_with_layer_inputs(model, x, lambda name, layer, xin: seen.__setitem__(name, xin))
    finally:
        hook.remove()
    return out[0], seen


def _patches(v: torch.Tensor, layer, idx: np.ndarray, n_pos: int) -> torch.Tensor:
    """The unfolded inputs (m, C·kh·kw) of the convolution reads ``idx`` (flat indices
    image·``n_pos`` + output position) of ``v`` (N, C, H, W), the layer's inputs: the rows
    ``F.unfold`` gives them, in its order (channel, kernel row, kernel column), gathered
    without unfolding the other reads (per kernel offset, the reads' input pixels with all
    their channels, from a channels-last copy of the images they belong to)."""
    import torch.nn.functional as F

    (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
    (ph, pw), (dh, dw) = layer.padding, layer.dilation
    wo = layer._output_size(v.shape[2], v.shape[3])[1]
    i = torch.from_numpy(idx)
    images, img = torch.unique(i // n_pos, return_inverse=True)
    pixels = F.pad(v[images], (pw, pw, ph, ph)).permute(0, 2, 3, 1).contiguous()  # (n, Hp, Wp, C)
    pos = i % n_pos
    y0, x0 = pos // wo * sh, pos % wo * sw
    out = torch.stack([pixels[img, y0 + dh * a, x0 + dw * b]                # (m, C) each
                       for a in range(kh) for b in range(kw)], dim=2)       # (m, C, kh·kw)
    return out.reshape(len(idx), v.shape[1] * kh * kw)


def _patch_extremes(m: torch.Tensor, layer, largest: bool) -> torch.Tensor:
    """Per convolution read (image, output position, flat in that order) the largest (or
    smallest) of map ``m`` (N, 1, H, W) over its patch, the zero padding included: the
    elementwise extreme of the kh·kw shifted views (exact; ``F.max_pool2d`` on one channel
    took ≈ 6× longer)."""
    import torch.nn.functional as F

    (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
    (ph, pw), (dh, dw) = layer.padding, layer.dilation
    ho, wo = layer._output_size(m.shape[2], m.shape[3])
    padded = F.pad(m, (pw, pw, ph, ph))
    pick = torch.maximum if largest else torch.minimum
    out = None
    for a in range(kh):
        for b in range(kw):
            view = padded[:, :, a * dh:a * dh + (ho - 1) * sh + 1:sh,
                          b * dw:b * dw + (wo - 1) * sw + 1:sw]
            out = view.clone() if out is None else pick(out, view, out=out)
    return out.reshape(-1)


def candidate_reads(layer, x: torch.Tensor, v_bulk_v: float = 0.0) -> tuple[int, np.ndarray]:
    """All reads ``x`` puts on the layer (every phase, the order of
    :func:`~spicecross.calibration.network_check._word_line_vectors`): their number and the
    word-line vectors (m, K) in V, float64, of those the passive bound over the whole vector
    (:func:`~spicecross.surrogate.read_disturb_bounds.inert_spans` of its largest and smallest
    voltage) does not prove inert, in read order. Every other read is inert in every row tile
    (a row tile's span is at most the whole vector's), so the row tiles' live reads are the
    same as from all vectors.

    Only what the bound needs is converted: each phase of the DAC is an elementwise monotone
    function of the input (a scale, a clip and a rounding, non-decreasing for x⁺ and signed
    reads, non-increasing for x⁻), so a convolution read's largest and smallest voltage are the
    DAC's voltages of its patch's largest and smallest input (exactly: the extremes of f(x) are
    f of x's extremes), and only the candidates' patches are gathered, converted and promoted
    to float64 — the same values the DAC gives the whole input."""
    from ..threads import fork_join

    p = layer.config.device_params()
    cal = layer.calibration

    def conv_candidates(x: torch.Tensor) -> list[torch.Tensor]:
        ext = x if x.shape[1] == 1 else torch.cat([x.amax(1, keepdim=True),
                                                   x.amin(1, keepdim=True)], dim=1)
        n_pos = math.prod(layer._output_size(x.shape[2], x.shape[3]))
        out = []
        for k, (_, v) in enumerate(layer._dac(ext, cal)):   # (N, 2, H, W) V per phase
            hi = _patch_extremes(v.amax(1, keepdim=True), layer, largest=True)
            lo = _patch_extremes(v.amin(1, keepdim=True), layer, largest=False)
            idx = torch.nonzero(~inert_spans(hi, lo, p, v_bulk_v)).flatten().numpy()
            out.append(layer._dac(_patches(x, layer, idx, n_pos), cal)[k][1])
        return out

    if x.dim() == 4:
        n_reads = x.shape[0] * math.prod(layer._output_size(x.shape[2], x.shape[3]))
        h = len(x) // 2
        if n_reads >= FORK_MIN_READS and h:            # two halves of the images, in order
            first, second = fork_join(lambda: conv_candidates(x[:h]),
                                      lambda: conv_candidates(x[h:]))
            parts = [torch.cat(pair) for pair in zip(first, second)]
        else:
            parts = conv_candidates(x)
        total = n_reads * len(parts)
    else:
        total, parts = 0, []
        for _, v in layer._dac(x, cal):
            idx = torch.nonzero(~inert_spans(v.amax(1), v.amin(1), p, v_bulk_v)).flatten()
            total += len(v)
            parts.append(v[idx].reshape(len(idx), layer.array.k_in))
    return total, torch.cat(parts).to(torch.float64).numpy()


def live_row_reads(layer, x: torch.Tensor, stats: DisturbStats) -> list[tuple[int, np.ndarray]]:
    """The reads of inputs ``x`` on one analog layer that a threshold can see, per row tile:
    ``(row tile, word-line voltages (m, rows used) in V)`` for the row tiles with any; the
    inert reads only counted in ``stats``."""
    arr = layer.array
    p = layer.config.device_params()
    v_bulk = arr.spec.selector.v_bulk_v if arr.spec.cell == "1t1r" else 0.0
    dac_range = np.array([arr.read_range_v()])  # bounds every read of the layer (passive bound)
    if inert_reads(dac_range, p, v_bulk)[0]:
        n = candidate_reads(layer, x[:1], v_bulk)[0] * x.shape[0]   # reads per image × images
        stats.reads += n
        stats.inert_reads += n
        return []
    M, vecs = candidate_reads(layer, x, v_bulk)                       # M reads; (m, K) V
    out = []
    for r in range(arr.n_row_tiles):
        part = vecs[:, arr.tile_rows_of(r)]
        # the passive-network bound per row tile first, so inert reads are never copied
        idx = np.flatnonzero(~inert_reads(part, p, v_bulk))
        stats.reads += M - len(idx)
        stats.inert_reads += M - len(idx)
        if len(idx):
            out.append((r, np.ascontiguousarray(part[idx])))   # other word lines: 0 V
    return out


def _layer_state_change(layer, g_start: np.ndarray) -> tuple[int, int, float, float]:
    """One layer's cells whose state moved, its cell count, the sum and the largest of
    |Δstate| (of the state range) since the stream began (conductances ``g_start``)."""
    from ..devices.vteam import state_at_conductance

    arr = layer.array
    p = layer.config.device_params()
    d = np.abs(state_at_conductance(p, arr.g_dev) - state_at_conductance(p, g_start))
    return int((arr.g_dev != g_start).sum()), d.size, float(d.sum()), float(d.max())


def _unmoved(layer) -> tuple[int, int, float, float]:
    """:func:`_layer_state_change` of a layer no read has moved yet."""
    return 0, layer.array.g_dev.size, 0.0, 0.0


def _state_change(parts: list[tuple[int, int, float, float]]) -> tuple[float, float, float]:
    """Share of cells whose state moved, mean and largest |Δstate| over every array of every
    layer, from the layers' :func:`_layer_state_change` in module order."""
    moved = total = 0
    dsum = dmax = 0.0
    for m, n, s, x in parts:
        moved, total, dsum, dmax = moved + m, total + n, dsum + s, max(dmax, x)
    return moved / total, dsum / total, dmax


def _stream_inline(model, layers, chunks, steps, start, on_chunk) -> None:
    """The stream in this thread: each chunk inferred, then every layer's steps."""
    from ..threads import limited_threads

    parts = {name: _unmoved(layer) for name, layer in layers}
    with limited_threads(1):
        for x, y in chunks:
            logits, inputs = _infer_chunk(model, x)
            with torch.no_grad():
                for name, layer in layers:
                    if run_inline(steps, layer, inputs[name]):
                        parts[name] = _layer_state_change(layer, start[name])
            on_chunk(logits, y, _state_change([parts[n] for n, _ in layers]))


def _stream_pipelined(model, layers, chunks, steps, start, on_chunk, pool, workers: int
                      ) -> None:
    """The stream with the next chunk inferred while the last one's updates run: every layer's
    steps for a chunk go to ``pool`` (``workers`` single-threaded workers; a
    :class:`LayerChain`) as soon as the layer has read
    that chunk, and the layer reads the next chunk once they are done (it waits for its own
    chain only), so the answer is the inline stream's. The inference runs in this thread on
    one torch thread; its tile reads are offered to the pool's workers, and this thread runs
    those no idle worker has taken (:func:`~spicecross.threads.offering_to_pool`)."""
    from ..threads import limited_threads, offering_to_pool

    names = [n for n, _ in layers]
    parts = {name: _unmoved(layer) for name, layer in layers}
    chains: dict[str, Future] = {}
    reported: list[tuple[torch.Tensor, torch.Tensor, dict[str, Future]]] = []

    def after(name):
        return lambda layer, changed: _layer_state_change(layer, start[name]) if changed else None

    def before_read(name):
        def hook(module, inputs):
            if name in chains:                      # this layer's update of the last chunk
                chains[name].result()
        return hook

    def after_read(name):
        def hook(module, inputs, output):
            chains[name] = LayerChain(pool, steps, module, inputs[0], after(name)).done
        return hook

    def report(upto: int) -> None:
        while len(reported) > upto:
            logits, y, done = reported.pop(0)
            for n in names:
                got = done[n].result()
                if got is not None:
                    parts[n] = got
            on_chunk(logits, y, _state_change([parts[n] for n in names]))

    modules = dict(layers)
    hooks = [modules[n].register_forward_pre_hook(before_read(n)) for n in names]
    hooks += [modules[n].register_forward_hook(after_read(n)) for n in names]
    model.eval()
    try:
        with limited_threads(1), offering_to_pool(workers), torch.no_grad():
            for x, y in chunks:
                logits = model(x)
                reported.append((logits, y, dict(chains)))
                report(1)                           # the chunk before: all its chains waited for
        report(0)
    finally:
        for h in hooks:
            h.remove()
        wait(list(chains.values()))                # nothing left running on the arrays


def disturb_network(model: nn.Module, test: TensorDataset, pulse: ReadPulse, chunk: int = 100,
                    dw_max: float = 0.01, progress: bool = False) -> dict[str, Any]:
    """Stream ``test`` through the calibrated patched ``model`` in chunks, disturbing its
    arrays after each (module doc). Returns per chunk ``images`` (processed so far),
    ``accuracy`` (% of that chunk), ``moved_share``, ``mean_abs_dw`` and ``max_abs_dw`` (of the
    state range, since the stream began) after the chunk's update; the overall ``accuracy``,
    ``stats`` (:class:`DisturbStats` summed) and ``seconds`` (inference plus updates). With
    more than one torch thread the updates run on the single-threaded worker pool beside the
    next chunk's inference (:func:`_stream_pipelined`); the same answer either way."""
    from ..threads import single_thread_pool
    from .analog import analog_layers
    from .analog_base import torch_threads

    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"disturb chunk must be a positive number of images, got {chunk!r}")
    layers = list(analog_layers(model))
    start = {}
    for name, layer in layers:
        check_disturb_config(layer.config)
        start[name] = layer.array.g_dev
        layer.array.g_dev = layer.array.g_dev.copy()       # the stream writes its own copy
    x_all, y_all = test.tensors
    chunks = ((x_all[lo:lo + chunk], y_all[lo:lo + chunk]) for lo in range(0, len(y_all), chunk))
    stats = DisturbStats()
    steps = LayerSteps(pulse, dw_max, stats, live_row_reads)
    rows: list[dict[str, float]] = []
    correct = [0]

    def on_chunk(logits, y, change) -> None:
        ok = int((logits.argmax(1) == y).sum())
        correct[0] += ok
        share, mean_dw, max_dw = change
        rows.append({"images": (rows[-1]["images"] if rows else 0) + len(y),
                     "accuracy": 100.0 * ok / len(y), "moved_share": share,
                     "mean_abs_dw": mean_dw, "max_abs_dw": max_dw})
        if progress:
            print(f"read disturb: {rows[-1]['images']}/{len(y_all)} images, chunk accuracy "
                  f"{rows[-1]['accuracy']:.2f} %, cells moved {100 * share:.3g} %, mean |Δw| "
                  f"{mean_dw:.3g}", file=sys.stderr, flush=True)

    workers = torch_threads()
    pool = single_thread_pool(workers)
    t0 = time.perf_counter()
    with transfer_cache.disabled():                # evolving arrays would only fill it
        if pool is None:
            _stream_inline(model, layers, chunks, steps, start, on_chunk)
        else:
            _stream_pipelined(model, layers, chunks, steps, start, on_chunk, pool, workers)
    return {"chunks": rows, "accuracy": 100.0 * correct[0] / max(1, len(y_all)),
            "stats": stats, "seconds": time.perf_counter() - t0}


def _load_kernels(cell: str) -> None:
    """Load (or compile) the compiled kernels the stream uses: the 0T1R dose kernel, checked on
    a tiny case; for 1T1R tiles also the line solver of their nonlinear reads."""
    from ..surrogate import nonlinear_lines, read_disturb_kernel

    if not read_disturb_kernel.compile_kernel():
        raise RuntimeError("the compiled read-disturb kernel disagrees with numpy on its "
                           "check case")
    if cell == "1t1r":
        nonlinear_lines.compile_kernel()


def read_disturb_infer(model_name: str, data_root, config, *, pulse_width_s: float,
                       chunk: int = 100, limit: int | None = None, weights=None,
                       dw_max: float = 0.01, batch_size: int = 500,
                       progress: bool = False) -> dict[str, Any]:
    """``infer --read-disturb``: program and calibrate the network as ``infer`` does, measure
    the undisturbed accuracy on the test images, then stream them through the disturbed
    network (:func:`disturb_network`, rectangular read pulses of ``pulse_width_s``)."""
    from .analog import patch_model
    from .inference import _accuracy, load_eval_data, load_network

    check_disturb_config(config)
    pulse = ReadPulse(float(pulse_width_s))
    # the compiled kernels load from numba's cache (≈ 0.7 s, numba's own start-up) while the
    # network is programmed, not inside the stream's first update
    with ThreadPoolExecutor(1) as loader:
        loaded = loader.submit(_load_kernels, config.cell)
        model = load_network(model_name, weights)
        data = load_eval_data(model_name, data_root, limit, config.calibration_images)
        digital_acc, _ = _accuracy(model, data.test, batch_size)
        analog = patch_model(model, config, data.calibration)
        loaded.result()
    frozen_acc, frozen_s = _accuracy(analog, data.test, batch_size)
    res = disturb_network(analog, data.test, pulse, chunk, dw_max, progress)
    res.update(model=model_name, data=data.source, images=len(data.test.tensors[1]),
               digital_accuracy=digital_acc, no_disturb_accuracy=frozen_acc,
               no_disturb_seconds=frozen_s, read_voltage_v=config.read_voltage_v,
               read_scheme=config.read_scheme, pulse_width_s=pulse.width_s, chunk=chunk,
               device_set=config.device_set, tile=f"{config.tile_rows}x{config.tile_cols}",
               cell=config.cell)
    return res
