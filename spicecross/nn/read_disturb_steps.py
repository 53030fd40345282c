"""The three steps that advance one analog layer's arrays by the reads of one chunk of the
read-disturb stream (:mod:`~spicecross.nn.read_disturb`), and how they run.

Per layer: its live reads per row tile (:func:`~spicecross.nn.read_disturb.live_row_reads`);
every row tile advanced on its own (its G⁺ and G⁻ arrays share its reads,
:func:`~spicecross.surrogate.read_disturb_update.advance_arrays`); the read matrices of its row
tiles that moved rebuilt (:meth:`~spicecross.surrogate.array.ProgrammedArray.refresh_row_tiles`).
Each step runs on one torch thread and reads and writes its own layer's arrays alone (a row
tile's advance its own row tile), so the answer does not depend on where or in which order
the steps run: :func:`run_inline` runs them one after the other in the calling thread;
a :class:`LayerChain` runs one layer's on the single-threaded worker pool, each step submitted
as soon as the one it needs has finished (from the finishing worker), so that the calling
thread can go on (the stream infers the next chunk meanwhile).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from ..surrogate.read_disturb_transfer import TransferCache
from ..surrogate.read_disturb_update import DisturbStats, ReadPulse, advance_arrays

__all__ = ["LayerChain", "LayerSteps", "run_inline"]


class LayerSteps:
    """The steps with what they share across layers and chunks: the read ``pulse``, ``dw_max``,
    the transfer-matrix caches per (layer, row tile) and the summed ``stats`` (added under a
    lock: chains apply from worker threads). ``live_reads(layer, x, stats)``: a layer's live
    reads per row tile (:func:`~spicecross.nn.read_disturb.live_row_reads`)."""

    def __init__(self, pulse: ReadPulse, dw_max: float, stats: DisturbStats,
                 live_reads: Callable) -> None:
        self.pulse, self.dw_max, self.stats = pulse, dw_max, stats
        self._live_reads = live_reads
        self.caches: dict = {}
        self._lock = threading.Lock()

    def count(self, st: DisturbStats) -> None:
        with self._lock:
            self.stats.add(st)

    def live(self, layer, x) -> list[tuple[int, np.ndarray]]:
        st = DisturbStats()
        rows = self._live_reads(layer, x, st)
        self.count(st)
        return rows

    def advance(self, layer, r: int, v: np.ndarray) -> tuple[np.ndarray, DisturbStats]:
        cfg, arr = layer.config, layer.array
        g = arr.g_dev[:, r].reshape(-1, cfg.tile_rows, cfg.tile_cols)     # (2·nc, R, C)
        return advance_arrays(arr.spec, cfg.device_params(), g, v, self.pulse,
                              dw_max=self.dw_max, wires=cfg.wires,
                              cache=self.caches.setdefault((id(layer), r), TransferCache()))

    def apply(self, layer, r: int, g_new: np.ndarray, st: DisturbStats) -> bool:
        """Write row tile ``r``'s new conductances; True if any changed."""
        self.count(st)
        arr = layer.array
        if np.array_equal(g_new, arr.g_dev[:, r].reshape(g_new.shape)):
            return False
        arr.g_dev[:, r] = g_new.reshape(arr.g_dev[:, r].shape)
        return True

    @staticmethod
    def refresh(layer, rows: list[int]) -> None:
        layer.array.refresh_row_tiles(rows)


def run_inline(steps: LayerSteps, layer, x) -> bool:
    """One layer's steps one after the other in this thread; True if a conductance changed."""
    moved = [r for r, v in steps.live(layer, x)
             if steps.apply(layer, r, *steps.advance(layer, r, v))]
    if moved:
        steps.refresh(layer, moved)
    return bool(moved)


class LayerChain:
    """One layer's steps for one chunk on ``pool`` (single-threaded workers). ``done``
    resolves, once no step of it runs any more, to ``after(layer, changed)`` (called in the
    worker that finished last), or to the first error a step raised."""

    def __init__(self, pool, steps: LayerSteps, layer, x, after) -> None:
        self.done: Future = Future()
        self._pool, self._steps, self._layer, self._after = pool, steps, layer, after
        self._lock = threading.Lock()
        self._running = 0
        self._error: BaseException | None = None
        self._left = 0
        self._moved: list[int] = []
        self._spawn(steps.live, (layer, x), self._after_live)

    def _spawn(self, fn, args, then) -> None:
        with self._lock:
            self._running += 1
        self._pool.submit(fn, *args).add_done_callback(lambda f: self._landed(f, then))

    def _landed(self, f: Future, then) -> None:
        try:
            if self._error is None:
                then(f.result())
        except BaseException as e:  # noqa: BLE001 - handed to the waiter through done
            with self._lock:
                self._error = self._error or e
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:
            self._finish()

    def _after_live(self, rows) -> None:
        self._left = len(rows)
        for r, v in rows:
            self._spawn(self._steps.advance, (self._layer, r, v),
                        lambda out, r=r: self._after_advance(r, out))

    def _after_advance(self, r: int, out) -> None:
        moved = self._steps.apply(self._layer, r, *out)
        with self._lock:
            if moved:
                self._moved.append(r)
            self._left -= 1
            last = self._left == 0
        if last and self._moved:
            self._spawn(self._steps.refresh, (self._layer, sorted(self._moved)), lambda _: None)

    def _finish(self) -> None:
        if self._error is not None:
            self.done.set_exception(self._error)
            return
        try:
            self.done.set_result(self._after(self._layer, bool(self._moved)))
        except BaseException as e:  # noqa: BLE001
            self.done.set_exception(e)
