"""The layer machinery shared by :class:`~spicecross.nn.analog.AnalogLinear` and
:class:`~spicecross.nn.analog.AnalogConv2d`: programming, the DAC, the per-row-tile reads and
ADCs read piece by piece, calibration, drift re-calibration and MemTorch 1.1.6's read path. The
converters and the scaling back to weight units are described in :mod:`spicecross.nn.analog`.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor, nn

from ..surrogate import memtorch_compat as mc
from ..surrogate.array import ProgrammedArray
from ..surrogate.config import AnalogConfig
from ..surrogate.converters import DAC, adc_sum_
from ..threads import limited_threads
from .calibrator import LayerCalibration, adc_max_ranges, adc_percentile_ranges

#: torch's intra-op thread count now (the number of single-threaded workers a read in pieces
#: uses, :meth:`_AnalogLayer._read`).
torch_threads = torch.get_num_threads
#: Largest tile currents (bytes, all row tiles and phases) a calibration batch keeps so that the
#: forward pass right after calibration reuses its read instead of reading again.
CALIBRATION_KEEP_BYTES = 256 << 20


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

    def _tile_currents(self, v: Tensor) -> list[Tensor]:
        """Differential currents (A) per row tile for word-line voltages ``v`` (V), output
        channels on axis 1."""
        return [i for _, block in self._current_blocks(v) for i in block]

    def _read_unscaled(self, x: Tensor, cal: LayerCalibration, phases: list | None = None
                       ) -> Tensor:
        """DAC → tile reads → ADC of every row tile and phase (each block of tile currents
        converted in place as soon as it is read: :func:`~spicecross.surrogate.converters.
        adc_sum_`), partial sums and phases combined digitally (A). ``phases``: the phases'
        ``(sign, current blocks)`` if already read."""
        if phases is None:
            phases = [(s, self._current_blocks(v)) for s, v in self._dac(x, cal)]
        out = None
        for sign, blocks in phases:
            q = adc_sum_(blocks, cal.adc_range_a, self.config.adc_bits)
            if out is None:
                out = q if sign > 0 else q.neg_()
            else:
                out = out.add_(q) if sign > 0 else out.sub_(q)
        return out

    def _chunk_bounds(self, x: Tensor) -> list[int]:
        """Sample boundaries of the pieces a read of ``x`` is done in (one piece by default;
        convolutions override)."""
        return [0, x.shape[0]]

    def _read(self, x: Tensor, cal: LayerCalibration) -> Tensor:
        """:meth:`_read_unscaled` scaled back to weight units (times the re-calibrated gain),
        piece by piece over the batch (:meth:`_chunk_bounds`): every sample's result is the
        same whatever the pieces. With n > 1 torch threads the pieces are shared among n
        workers that each run one thread (every operation single-threaded: no thread waits at
        the end of each small operation for another that the machine's load has descheduled)."""
        if self.config.compat == "memtorch":
            return self._read_memtorch(x, cal)
        scale = self.array.weight_units_per_a(cal.x_fs) * cal.gain
        bounds = self._chunk_bounds(x)
        if len(bounds) == 2:
            return self._read_unscaled(x, cal).mul_(scale)
        pieces = list(zip(bounds[:-1], bounds[1:]))
        workers = min(torch_threads(), len(pieces))
        with limited_threads(1):                   # workers started inside: one thread each
            part = self._read_unscaled(x[:pieces[0][1]], cal)
            out = part.new_empty((x.shape[0],) + part.shape[1:])
            torch.mul(part, scale, out=out[:pieces[0][1]])

            def run(piece: tuple[int, int]) -> None:
                torch.mul(self._read_unscaled(x[piece[0]:piece[1]], cal), scale,
                          out=out[piece[0]:piece[1]])
            if workers > 1:
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(run, pieces[1:]))
            else:
                for piece in pieces[1:]:
                    run(piece)
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

    def _adc_ranges(self, phases: list[tuple[float, Tensor]]) -> Tensor | None:
        """Per (row tile, column) ADC ranges (A) from the differential currents of all read
        phases: the largest, or the ``adc_overflow_pct`` percentile."""
        bits = self.config.adc_bits
        if bits is None:
            return None
        if self.config.adc_overflow_pct == 0:
            return adc_max_ranges([self._current_blocks(v) for _, v in phases],
                                  self.n_row_tiles, bits)
        return adc_percentile_ranges([self._tile_currents(v) for _, v in phases], bits,
                                     self.config.adc_overflow_pct)

    def fit_calibration(self, x: Tensor) -> LayerCalibration:
        """:meth:`_fit_calibration` on one torch thread: two, under load 5, made MNIST's
        calibration at 64×64 take 2.5 s instead of 0.26 s (many operations on one batch)."""
        with limited_threads(1):
            return self._fit_calibration(x)

    def _fit_calibration(self, x: Tensor) -> LayerCalibration:
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
        above = sum(float((v.abs() > limit).float().sum()) for _, v in phases)
        cal.read_disturb_fraction = above / sum(v.numel() for _, v in phases)
        self._pending_read = None
        if (self.config.adc_bits is None or self.config.adc_overflow_pct > 0
                or self.array.uses_tile_reads
                or self._currents_bytes(x) * len(phases) > CALIBRATION_KEEP_BYTES):
            cal.adc_range_a = self._adc_ranges(phases)
            return cal
        # the ranges and this batch's read from one computation of the currents: the forward
        # pass that follows calibration (calibrator.fit_calibrations) reuses the read
        blocks = [list(self._current_blocks(v)) for _, v in phases]
        cal.adc_range_a = adc_max_ranges(blocks, self.n_row_tiles, self.config.adc_bits)
        y = self._read_unscaled(x, cal, [(s, b) for (s, _), b in zip(phases, blocks)])
        self._pending_read = (x, cal, y.mul_(self.array.weight_units_per_a(cal.x_fs) * cal.gain))
        return cal

    def forward(self, x: Tensor) -> Tensor:
        cal = self._calibrated()
        pending, self._pending_read = getattr(self, "_pending_read", None), None
        if pending is not None and pending[0] is x and pending[1] is cal and cal.gain == 1.0:
            return self._add_bias(pending[2])
        return self._add_bias(self._read(x, cal))

    def extra_repr(self) -> str:
        return (f"tiles={self.n_row_tiles}x{self.n_col_tiles} of {self.config.tile_rows}x"
                f"{self.config.tile_cols} {self.config.cell}, mode={self.config.mode}")
