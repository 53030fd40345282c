"""The layer machinery shared by :class:`~spicecross.nn.analog.AnalogLinear` and
:class:`~spicecross.nn.analog.AnalogConv2d`: programming, the DAC, the per-row-tile reads and
ADCs read piece by piece, calibration, drift re-calibration and MemTorch 1.1.6's read path. The
converters and the scaling back to weight units are described in :mod:`spicecross.nn.analog`.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..surrogate import memtorch_compat as mc
from ..surrogate.array import ProgrammedArray
from ..surrogate.config import AnalogConfig
from ..surrogate.converters import DAC, adc_codes_, adc_steps, adc_sum_
from ..threads import limited_threads, map_single_threaded
from .calibrator import LayerCalibration, adc_max_ranges, adc_percentile_ranges

#: torch's intra-op thread count now: the number of single-threaded workers that read a batch in
#: pieces (:meth:`_AnalogLayer._map_pieces`) and that program a network's layers
#: (:func:`spicecross.nn.analog.patch_model`).
torch_threads = torch.get_num_threads
#: Bound on the read matrices in ADC codes per DAC code (:meth:`_AnalogLayer._code_reads`): a
#: column whose calibration never saw a current has the smallest positive range, and its
#: unbounded entries would overflow float32 (or make 0·inf); any current there saturates.
CODE_READ_BOUND = 1e20


class _AnalogLayer(nn.Module):
    """Shared converters and calibration of AnalogLinear/AnalogConv2d."""

    #: A convolution (MemTorch scales its inputs per sample) rather than a linear layer.
    is_conv = False

    def _program(self, m_cross: np.ndarray, config: AnalogConfig, layer_index: int) -> None:
        self.config = config
        self.layer_index = layer_index
        self.array = ProgrammedArray(m_cross, config, layer_index)
        self.calibration: LayerCalibration | None = None

    @property
    def n_row_tiles(self) -> int:
        return self.array.n_row_tiles

    @property
    def n_col_tiles(self) -> int:
        return self.array.n_col_tiles

    @property
    def c_out(self) -> int:
        return self.array.c_out

    # ---- converters ----------------------------------------------------------------------------
    def _calibrated(self) -> LayerCalibration:
        if self.calibration is None:
            raise RuntimeError("analog layer not calibrated: call calibrate_model(model, images) "
                               "or pass calibration_data to patch_model")
        return self.calibration

    def _dac(self, x: Tensor, cal: LayerCalibration) -> list[tuple[float, Tensor]]:
        """Word-line voltages (V) for layer inputs ``x``, as (sign, voltages) per read phase:
        one read of non-negative voltages for non-negative inputs; for signed inputs two
        phases of non-negative voltages (x⁺ then x⁻, ``two-phase``) or one read with negative
        voltages (``bipolar``)."""
        dac = DAC(self.config.read_voltage_v, self.config.dac_bits)
        if not cal.signed or self.config.read_scheme == "bipolar":
            return [(1.0, dac(x, cal.x_fs, cal.signed))]
        return [(1.0, dac.voltages_(x.clamp(min=0).div_(cal.x_fs), False)),
                (-1.0, dac.voltages_(x.neg().clamp_(min=0).div_(cal.x_fs), False))]

    def _dac_codes(self, x: Tensor, cal: LayerCalibration) -> list[tuple[int, Tensor]]:
        """The DAC's codes for layer inputs ``x`` as (sign, codes) per read phase, the phases of
        :meth:`_dac` (whose voltages are ``codes · volts_per_code``)."""
        dac = DAC(self.config.read_voltage_v, self.config.dac_bits)
        if not cal.signed or self.config.read_scheme == "bipolar":
            return [(1, dac.codes(x, cal.x_fs, cal.signed))]
        return [(1, dac.codes(x, cal.x_fs, False)), (-1, dac.codes(x, cal.x_fs, False, True))]

    def _code_reads(self, cal: LayerCalibration, dtype: torch.dtype) -> tuple[list, dict]:
        """The layer's reads from DAC codes to ADC codes: read terms in ADC code steps per DAC
        code (the array's ``A`` in S times (V per DAC code)^k times the ADC's steps per A of
        each (row tile, column)), prepared for :meth:`_current_blocks`, and per read sign the
        weight units per ADC code (row tiles, C_out) in ``dtype`` (ADC step in A times
        :meth:`ProgrammedArray.weight_units_per_a` times the gain), products formed in
        float64; rebuilt when the read matrices or the calibration change."""
        key = (self.array.readout64, cal.adc_range_a, cal.signed, cal.x_fs, cal.gain)
        cache = getattr(self, "_code_cache", None)
        if (cache is None or cache[0][0] is not key[0] or cache[0][1] is not key[1]
                or cache[0][2:] != key[2:]):
            dac = DAC(self.config.read_voltage_v, self.config.dac_bits)
            v_per_code = dac.volts_per_code(cal.signed and self.config.read_scheme == "bipolar")
            steps = adc_steps(self.config.adc_bits)
            # (nr, C_out); a column that saw no current in calibration has the smallest
            # positive float32 range (ADC.calibrate): bounded below all the same, so that no
            # 0·inf can enter the read matrices
            range_a = cal.adc_range_a.to(torch.float64).clamp(min=torch.finfo(torch.float32).tiny)
            terms = [(k, (m * (v_per_code ** k * steps / range_a[:, None, :]))
                      .clamp_(-CODE_READ_BOUND, CODE_READ_BOUND))
                     for k, m in self.array.read_terms64]
            per_code = range_a / steps * (self.array.weight_units_per_a(cal.x_fs) * cal.gain)
            cache = (key, self._prepare_reads(terms), per_code, {})
            self._code_cache = cache
        if dtype not in cache[3]:
            c = cache[2].to(dtype)
            cache[3][dtype] = {1: c, -1: -c}
        return cache[1], cache[3][dtype]

    def _read_codes_into(self, x: Tensor, cal: LayerCalibration, out: Tensor) -> Tensor:
        """The read of :meth:`_read` in code units, written into ``out`` (weight units): DAC
        codes → tile reads in ADC code units (:meth:`_code_reads`) → ADC codes
        (:func:`~spicecross.surrogate.converters.adc_codes_`, in place, block by block) →
        summed over phases and row tiles in order, each code times its weight units per
        code. Per row tile three passes over its outputs (clip, round, multiply-add) instead
        of the seven of converting in A (:meth:`_read_unscaled`): the same quantities, with
        the constant factors multiplied together before the read instead of applied one by one
        after it (float32 results differ in the last bits, and a code where a current sits
        within an ulp of a code boundary)."""
        reads, per_code = self._code_reads(cal, x.dtype)
        bits, first = self.config.adc_bits, True
        for sign, codes in self._dac_codes(x, cal):
            for r0, block in self._current_blocks(codes, reads):
                adc_codes_(block, bits)
                for j, y in enumerate(block):
                    c = per_code[sign][r0 + j].view((-1,) + (1,) * (y.dim() - 2))
                    if first:
                        torch.mul(y, c, out=out)
                        first = False
                    else:
                        out.addcmul_(y, c)
        return out

    def _tile_currents(self, v: Tensor) -> list[Tensor]:
        """Differential currents (A) per row tile for word-line voltages ``v`` (V), output
        channels on axis 1."""
        return [i for _, block in self._current_blocks(v) for i in block]

    def _read_unscaled(self, x: Tensor, cal: LayerCalibration) -> Tensor:
        """DAC → tile reads → ADC of every row tile and phase, in A (each block of tile
        currents converted in place as soon as it is read: :func:`~spicecross.surrogate.
        converters.adc_sum_`), partial sums and phases combined digitally (A): the read of
        ideal ADCs and of arrays read tile by tile (nonlinear mode, SPICE)."""
        out = None
        for sign, v in self._dac(x, cal):
            q = adc_sum_(self._current_blocks(v), cal.adc_range_a, self.config.adc_bits)
            if out is None:
                out = q if sign > 0 else q.neg_()
            else:
                out = out.add_(q) if sign > 0 else out.sub_(q)
        return out

    def _chunk_bounds(self, x: Tensor) -> list[int]:
        """Sample boundaries of the pieces a read of ``x`` is done in (one piece by default;
        convolutions override)."""
        return [0, x.shape[0]]

    def _map_pieces(self, x: Tensor, fn: Callable[[int, int], object],
                    workers: int | None = None) -> list:
        """``fn(lo, hi)`` for the pieces ``x[lo:hi]`` of the batch (:meth:`_chunk_bounds`), in
        order, on single-threaded workers (:func:`map_single_threaded`; ``workers`` default:
        torch's threads)."""
        bounds = self._chunk_bounds(x)
        if len(bounds) == 2:
            return [fn(0, x.shape[0])]
        pieces = list(zip(bounds[:-1], bounds[1:]))
        workers = min(torch_threads() if workers is None else workers, len(pieces))
        return map_single_threaded(lambda p: fn(*p), pieces, workers)

    def _read(self, x: Tensor, cal: LayerCalibration) -> Tensor:
        """The layer's read of inputs ``x`` in weight units (times the re-calibrated gain): in
        code units (:meth:`_read_codes_into`) when the array is read by matmuls and the ADC
        quantizes, else :meth:`_read_unscaled` scaled back; piece by piece over the batch
        (:meth:`_map_pieces`): every sample's result is the same whatever the pieces."""
        if self.config.compat == "memtorch":
            return self._read_memtorch(x, cal)
        out = x.new_empty(self._output_shape(x))
        if len(self._chunk_bounds(x)) == 2:            # one piece (e.g. lead dims of a linear)
            pieces_of = lambda t, lo, hi: t                                     # noqa: E731
        else:
            pieces_of = lambda t, lo, hi: t[lo:hi]                              # noqa: E731
        if self.config.adc_bits is not None and not self.array.uses_tile_reads:
            self._code_reads(cal, x.dtype)           # built once, before the workers share it

            def fill(lo: int, hi: int) -> None:
                self._read_codes_into(pieces_of(x, lo, hi), cal, pieces_of(out, lo, hi))
        else:
            scale = self.array.weight_units_per_a(cal.x_fs) * cal.gain

            def fill(lo: int, hi: int) -> None:
                torch.mul(self._read_unscaled(pieces_of(x, lo, hi), cal), scale,
                          out=pieces_of(out, lo, hi))
        self._map_pieces(x, fill)
        return out

    # ---- MemTorch 1.1.6 (compat="memtorch") ----------------------------------------------------
    def _read_memtorch(self, x: Tensor, cal: LayerCalibration) -> Tensor:
        """MemTorch's forward (memtorch/mn/Linear.py, memtorch/mn/Conv2d.py): naive_scale,
        the crossbar read, its per-vector ADC on every tile result (summed over row tiles), then
        ``transform_output`` (the ``tune_()`` fit; identity before tuning)."""
        cfg = self.config
        miv, v_read = cfg.max_input_voltage_v, cfg.read_voltage_v
        scaled = mc.naive_scale(x, miv, per_sample=self.is_conv)
        out = None                        # currents in MemTorch's units: voltages = scaled input
        for i in self._tile_currents(scaled * (v_read / miv)):
            q = mc.adc_quantize(i * (miv / v_read), cfg.adc_bits, cfg.adc_overflow_pct / 100.0,
                                col_axis=1, tile_cols=cfg.tile_cols)
            out = q.clone() if out is None else out.add_(q)
        if cal.output_map is None:
            return out
        coef, intercept = cal.output_map
        return out * coef + intercept

    def tune_memtorch(self, generator: torch.Generator) -> tuple[float, float]:
        """MemTorch's ``tune()`` (memtorch/map/Module.py ``naive_tune``): the crossbar output
        (no bias, identity output map) and the digital output on one uniform random batch,
        fitted by :func:`~spicecross.surrogate.memtorch_compat.linear_fit`; installs and
        returns ``(coef, intercept)``."""
        cal = self._calibrated()
        kind = "conv2d" if self.is_conv else "linear"
        n_in = self.in_channels if kind == "conv2d" else self.in_features
        x = mc.tune_inputs(kind, n_in, generator)
        cal.output_map = None
        with torch.no_grad():
            cal.output_map = mc.linear_fit(self._read(x, cal), self._digital(x))
        return cal.output_map

    # ---- drift compensation (physical path) ------------------------------------------------
    def recalibrate(self, x: Tensor) -> float:
        """Re-calibration of this layer's ADC after drift, as a chip does it with its stored
        calibration inputs ``x`` and their known digital outputs: the per-column ADC ranges are
        re-fitted on the array as it is now (DAC full scale unchanged), then the digital gain
        is the least-squares factor (through the origin) from the read to the known output.
        Installs and returns the gain."""
        cal = self._calibrated()
        with torch.no_grad():
            cal.adc_range_a = self._adc_ranges(self._dac(x, cal))
            cal.gain = 1.0
            y = self._read(x, cal).double()
            ref = self._digital(x).reshape(y.shape).double()
            den = float((y * y).sum())
            cal.gain = float((y * ref).sum()) / den if den > 0 else 1.0
        return cal.gain

    def _adc_ranges(self, phases: list[tuple[float, Tensor]], workers: int | None = None
                    ) -> Tensor | None:
        """Per (row tile, column) ADC ranges (A) from the differential currents of all read
        phases: the largest (read piece by piece, by ``workers``: :meth:`_map_pieces`), or the
        ``adc_overflow_pct`` percentile."""
        bits = self.config.adc_bits
        if bits is None:
            return None
        if self.config.adc_overflow_pct == 0:          # maxima: the same whatever the pieces
            ranges = self._map_pieces(phases[0][1], lambda lo, hi: adc_max_ranges(
                [self._current_blocks(v[lo:hi]) for _, v in phases], self.n_row_tiles, bits),
                workers)
            return functools.reduce(torch.maximum, ranges)
        return adc_percentile_ranges([self._tile_currents(v) for _, v in phases], bits,
                                     self.config.adc_overflow_pct)

    def fit_calibration(self, x: Tensor) -> LayerCalibration:
        """:meth:`_fit_calibration` on one torch thread (two, under load 5, made MNIST's
        calibration at 64×64 take 2.5 s instead of 0.26 s: many operations on one batch), its
        pieces read by as many single-threaded workers as torch had threads."""
        workers = torch_threads()
        with limited_threads(1):
            return self._fit_calibration(x, workers)

    def _fit_calibration(self, x: Tensor, workers: int | None = None) -> LayerCalibration:
        """DAC full scale and ADC ranges (A) from a calibration batch ``x`` of layer inputs:
        the full scale is the largest |x|, each (row tile, column) ADC range the largest (or the
        ``adc_overflow_pct`` percentile) differential current of the batch over all read
        phases."""
        limit = self.config.switching_threshold_v
        if self.config.compat == "memtorch":
            # no converter settings: naive_scale bounds the voltages by MIV, the ADC picks its
            # range per vector, the output map comes from tune_memtorch()
            cal = LayerCalibration(self.config.max_input_voltage_v, True)
            v = mc.naive_scale(x, cal.x_fs, self.is_conv).abs()
            cal.read_disturb_fraction = float((v > limit).float().mean())
            return cal
        x_fs = float(x.detach().abs().max()) or 1.0
        signed = bool((x < 0).any())
        cal = LayerCalibration(x_fs, signed)
        phases = self._dac(x, cal)
        # share of word-line reads above the switching threshold (an upper bound on the cell
        # voltage): reads that would disturb a real array
        above = sum(int(torch.count_nonzero(v.abs() > limit)) for _, v in phases)
        cal.read_disturb_fraction = above / sum(v.numel() for _, v in phases)
        cal.adc_range_a = self._adc_ranges(phases, workers)
        return cal

    def forward(self, x: Tensor) -> Tensor:
        return self._add_bias(self._read(x, self._calibrated()))

    def extra_repr(self) -> str:
        return (f"tiles={self.n_row_tiles}x{self.n_col_tiles} of {self.config.tile_rows}x"
                f"{self.config.tile_cols} {self.config.cell}, mode={self.config.mode}")
