"""Torch layers on crossbar tiles: ``AnalogLinear``, ``AnalogConv2d`` and :func:`patch_model`.

Each layer owns a :class:`~spicecross.surrogate.array.ProgrammedArray` (its weights programmed
onto tiles; mapping, non-idealities, IR-drop compensation and reads live there) and a
:class:`~spicecross.nn.calibrator.LayerCalibration` (DAC full scale, ADC ranges) that
:func:`~spicecross.nn.calibrator.calibrate_model` sets explicitly.

Converters and scaling back
---------------------------
Per tile, a DAC turns the layer input ``x`` into word-line voltages ``v = V_read·q(x/x_fs)``
(``V_read`` the physical full-scale read voltage, ``AnalogConfig.read_voltage_v``; ``x_fs`` =
the largest |x| of the calibration data, set once; ``dac_bits`` levels; beyond ``x_fs`` it
saturates). Signed inputs are read in two phases of non-negative voltages, x⁺ then x⁻
(``read_scheme="two-phase"``, the default: no word line goes below 0 V, each phase uses the
DAC's full unsigned code range, and the layer's reads double only for signed inputs, i.e. the
first layer of a normalised-input network), or in one read with negative voltages
(``"bipolar"``, a signed code range). Per tile column an ADC with ``adc_bits`` and a fixed range
(from the calibration batch over all phases, on the differential current) digitizes
``I⁺ − I⁻``; the phases and the partial sums of the row tiles of one output are combined
digitally after the ADCs. The result goes back to weight units by the known inverse of the
mapping, ``y = ΣI·(x_fs/V_read)·(w_max/(g_hi − g_lo))`` — no fitted per-layer correction
(MemTorch's ``tune_()``), times the layer's digital ``gain`` (1 unless drift re-calibration,
``AnalogConfig.recalibrate_after_s``, has re-fitted it: :meth:`_AnalogLayer.recalibrate`).

The arithmetic runs in code units (:meth:`_AnalogLayer._read_codes_into`): the DAC's integer
codes go into read matrices already multiplied by the volts per DAC code and each (row tile,
column) ADC's steps per ampere, so a tile read comes out as the ADC's input in code steps, is
clipped and rounded in place, and is summed times the weight units per ADC code of its column:
three passes over each row tile's outputs instead of seven. Exact arithmetic gives the same
codes as dividing currents in A by the range; float32 rounds differently, and tests/
test_inference_code_units.py checks that the codes miss the float64 read (the surrogate that
matches SPICE) no more often than the read in A does (MNIST, 10 000 images: 121 vs 180 of 56.6 M
codes at 64×64, 79 vs 59 of 40.8 M at 128×128; the same accuracy). Ideal ADCs and arrays read
tile by tile (nonlinear mode, SPICE) read in A.

MemTorch 1.1.6 (``AnalogConfig.compat="memtorch"``, :meth:`_AnalogLayer._read_memtorch`): the
input is rescaled by ``naive_scale`` at the max input voltage and applied unquantized in one
signed read; each tile result is digitized with a power-of-two range chosen per input vector;
row tiles are summed and the layer's fitted ``tune_()`` map ``coef·y + intercept`` gives the
output (:meth:`_AnalogLayer.tune_memtorch`). Steps and sources: :mod:`spicecross.surrogate.
memtorch_compat`.

Bias and BatchNorm stay digital: the layer's bias is added after the scaling above (a digital
adder after the ADCs); BatchNorm modules are not patched and run as the digital per-channel
affine on the scaled outputs (in hardware it folds into the ADC's digital post-scale).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..surrogate.config import AnalogConfig
from ..threads import map_single_threaded
from . import analog_base
from .analog_base import _AnalogLayer
from .calibrator import calibrate_model

__all__ = ["AnalogConfig", "AnalogConv2d", "AnalogLinear", "analog_layers", "patch_model"]

#: Bytes of one row tile's currents per piece of a convolution read: small enough to stay in
#: the cache between the convolution and the ADC's passes over them (MNIST at 64×64, one
#: thread: 0.5 / 1 / 2 / 4 / 8 MiB gave 2.16 / 1.83 / 1.81 / 2.07 / 2.71× digital under load 6;
#: the whole batch at once 3.7×). Two torch threads running every operation of such pieces
#: wait for each other at the end of each (load 8: 2 / 8 MiB and the whole batch 5.6 / 3.5 /
#: 2.8× digital), hence the single-threaded workers of
#: :meth:`~spicecross.nn.analog_base._AnalogLayer._read`.
READ_CHUNK_BYTES = 2 << 20
#: Fewest images per piece (a one-image convolution takes another algorithm in oneDNN, whose
#: sums differ in the last bits).
MIN_CHUNK_IMAGES = 4


class AnalogLinear(_AnalogLayer):
    """``nn.Linear`` on crossbar tiles: inputs on the rows, outputs on the columns.

    Holds the digital ``weight``/``bias`` (unchanged, for reference); the bias is added
    digitally after the ADCs and the scaling back to weight units (see module doc).
    """

    def __init__(self, linear: nn.Linear, config: AnalogConfig, layer_index: int = 0) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = nn.Parameter(linear.weight.detach().clone(), requires_grad=False)
        self.bias = (nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
                     if linear.bias is not None else None)
        self._program(self.weight.detach().double().T.numpy(), config, layer_index)

    def _prepare_reads(self, terms64: list[tuple[int, Tensor]]) -> list[tuple[int, Tensor, Tensor]]:
        """Read terms ``(k, matrix (row tiles, rows, C_out))`` (float64) in the form
        :meth:`_current_blocks` uses: ``(k, float32 copy, float64)``."""
        return [(k, m.to(torch.float32).contiguous(), m) for k, m in terms64]

    def _output_shape(self, x: Tensor) -> tuple[int, ...]:
        """Shape of :meth:`_read` for inputs ``x``: (vectors, C_out)."""
        return (x.numel() // self.in_features, self.c_out)

    def _current_blocks(self, v: Tensor, reads: list | None = None):
        """Differential currents (A) for voltages (…, K) in V: one block (row tiles, N, C_out)
        with the first row tile's index 0, a tensor the caller may overwrite. ``reads``: other
        read terms from :meth:`_prepare_reads` (e.g. in ADC codes per DAC code, whose block is
        then in ADC code units for DAC codes ``v``); default the array's, in S."""
        v = v.reshape(-1, self.in_features)
        if self.array.uses_tile_reads:
            yield 0, torch.stack(self.array.tile_read_currents(v))
            return
        R = self.config.tile_rows
        pad = self.n_row_tiles * R - self.in_features
        vp = F.pad(v, (0, pad)) if pad else v
        vt = vp.view(-1, self.n_row_tiles, R).transpose(0, 1)       # (nr, N, R)
        if reads is None:
            reads = [(k, m32, m64) for (k, m32), (_, m64)
                     in zip(self.array.read_terms, self.array.read_terms64)]
        terms = [(k, m32 if v.dtype == torch.float32 else m64.to(v.dtype))
                 for k, m32, m64 in reads]
        out = torch.bmm(vt, terms[0][1])
        for k, a in terms[1:]:                  # the polynomial mode's v^k terms
            out = out + torch.bmm(vt ** k, a)
        yield 0, out                                                 # (nr, N, C_out)

    def _digital(self, x: Tensor) -> Tensor:
        """The digital layer without its bias (the reference of tune_ and re-calibration)."""
        return F.linear(x, self.weight.to(x.dtype))

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        return super().forward(x).reshape(*lead, self.out_features)

    def _add_bias(self, y: Tensor) -> Tensor:
        return y + self.bias.to(y.dtype) if self.bias is not None else y


class AnalogConv2d(_AnalogLayer):
    """``nn.Conv2d`` (groups = 1, zero padding) on crossbar tiles, unfolded (im2col): crossbar
    row ``k = c_in·kh·kw + i·kw + j`` of the unfolded input, column = output channel.

    The ``linear``/``ideal`` read of row tile ``r`` is computed as a convolution restricted to
    the input channels that tile touches, with the tile's transfer matrix (in S) as kernel —
    the same sum as im2col·Tᵀ without materializing the unfolded input. The ``nonlinear`` mode
    unfolds explicitly. Holds the digital ``weight``/``bias``; the bias is added digitally.
    """

    is_conv = True

    def __init__(self, conv: nn.Conv2d, config: AnalogConfig, layer_index: int = 0) -> None:
        super().__init__()
        if conv.groups != 1:
            raise ValueError(f"AnalogConv2d supports groups=1 only, got groups={conv.groups}")
        if conv.padding_mode != "zeros":
            raise ValueError(f"AnalogConv2d supports padding_mode='zeros' only, got {conv.padding_mode!r}")
        if isinstance(conv.padding, str):
            raise ValueError(f"AnalogConv2d needs numeric padding, got {conv.padding!r}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride = tuple(conv.kernel_size), tuple(conv.stride)
        self.padding, self.dilation = tuple(conv.padding), tuple(conv.dilation)
        self.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=False)
        self.bias = (nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
                     if conv.bias is not None else None)
        m = self.weight.detach().double().reshape(self.out_channels, -1).T.numpy()
        self._program(m, config, layer_index)
        self._kernel_cache: tuple[Tensor, list] | None = None

    def _kernels(self) -> list[tuple[int, int, list[tuple[int, Tensor, Tensor]]]]:
        """:meth:`_prepare_reads` of the array's read terms (in S), rebuilt when the array's
        read matrices change (aging)."""
        readout64 = self.array.readout64
        if self._kernel_cache is None or self._kernel_cache[0] is not readout64:
            self._kernel_cache = (readout64, self._prepare_reads(self.array.read_terms64))
        return self._kernel_cache[1]

    def _prepare_reads(self, terms64: list[tuple[int, Tensor]]
                       ) -> list[tuple[int, int, list[tuple[int, Tensor, Tensor]]]]:
        """Per row tile: the input channels it touches and, per read term ``(k, matrix (row
        tiles, rows, C_out))`` of ``terms64`` (float64), its matrix as a conv kernel (float32
        and float64): what :meth:`_current_blocks` reads with."""
        kh, kw = self.kernel_size
        kk = kh * kw
        kernels = []
        for r in range(self.n_row_tiles):
            rows = self.array.tile_rows_of(r)
            ch_lo, ch_hi = rows.start // kk, (rows.stop - 1) // kk + 1
            off = rows.start - ch_lo * kk
            per_term = []
            for k, m in terms64:
                ker = torch.zeros(self.c_out, (ch_hi - ch_lo) * kk, dtype=torch.float64)
                ker[:, off:off + rows.stop - rows.start] = m[r, :rows.stop - rows.start, :].T
                ker = ker.view(self.c_out, ch_hi - ch_lo, kh, kw)
                per_term.append((k, ker.to(torch.float32).contiguous(), ker))
            kernels.append((ch_lo, ch_hi, per_term))
        return kernels

    def _output_size(self, h: int, w: int) -> tuple[int, int]:
        """Output height and width for an input of ``h`` × ``w``."""
        kh, kw = self.kernel_size
        ho = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        return ho, wo

    def _output_shape(self, x: Tensor) -> tuple[int, ...]:
        """Shape of :meth:`_read` for inputs ``x``: (N, C_out, Ho, Wo)."""
        return (x.shape[0], self.c_out) + self._output_size(x.shape[-2], x.shape[-1])

    def _chunk_bounds(self, x: Tensor) -> list[int]:
        """Pieces of the batch whose one row tile's currents take about
        :data:`READ_CHUNK_BYTES` (at least :data:`MIN_CHUNK_IMAGES` images, sizes as equal as
        possible), so that a tile's currents are still in the cache when the ADC converts them.
        One piece when the array is read tile by tile (nonlinear mode, SPICE)."""
        n = x.shape[0]
        if self.array.uses_tile_reads or n <= MIN_CHUNK_IMAGES:
            return [0, n]
        ho, wo = self._output_size(x.shape[-2], x.shape[-1])
        per_image = max(1, self.c_out * ho * wo * x.element_size())
        size = max(MIN_CHUNK_IMAGES, READ_CHUNK_BYTES // per_image)
        pieces = max(1, n // size)
        return [n * i // pieces for i in range(pieces + 1)]

    def _current_blocks(self, v: Tensor, reads: list | None = None):
        """Differential currents (A) per row tile for voltages (N, C_in, H, W) in V: blocks
        (1, N, C_out, Ho, Wo) with their row tile's index, tensors the caller may overwrite.
        ``reads``: other kernels from :meth:`_prepare_reads` (e.g. in ADC codes per DAC code,
        whose blocks are then in ADC code units for DAC codes ``v``); default the array's."""
        if self.array.uses_tile_reads:
            N, _, H, W = v.shape
            Ho, Wo = self._output_size(H, W)
            cols = F.unfold(v, self.kernel_size, self.dilation, self.padding, self.stride)
            vmat = cols.transpose(1, 2).reshape(-1, cols.shape[1])          # (N·L, K)
            for r, i in enumerate(self.array.tile_read_currents(vmat)):
                yield r, (i.view(N, Ho * Wo, self.c_out).transpose(1, 2)
                          .reshape(1, N, self.c_out, Ho, Wo).clone())
            return
        for r, (lo, hi, per_term) in enumerate(self._kernels() if reads is None else reads):
            x = v[:, lo:hi]
            acc = None
            for k, k32, k64 in per_term:      # zero padding stays 0 V in every power v^k
                ker = k32 if v.dtype == torch.float32 else k64.to(v.dtype)
                y = F.conv2d(x if k == 1 else x ** k, ker, None, self.stride, self.padding,
                             self.dilation)
                acc = y if acc is None else acc + y
            yield r, acc.unsqueeze(0)

    def _digital(self, x: Tensor) -> Tensor:
        """The digital layer without its bias (the reference of tune_ and re-calibration)."""
        return F.conv2d(x, self.weight.to(x.dtype), None, self.stride, self.padding, self.dilation)

    def _add_bias(self, y: Tensor) -> Tensor:
        return y + self.bias.to(y.dtype).view(1, -1, 1, 1) if self.bias is not None else y


# ---- whole models --------------------------------------------------------------------------------
def analog_layers(model: nn.Module) -> list[tuple[str, _AnalogLayer]]:
    """The patched layers of ``model`` in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _AnalogLayer)]


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


def _program_layers(jobs: list[tuple[str, type, nn.Module]], config: AnalogConfig
                    ) -> list[_AnalogLayer]:
    """The analog layers of ``jobs`` (name, analog class, digital module; layer index = the
    position), programmed (transfer matrices built) by as many single-threaded workers as
    torch has threads, the largest layers first (a build is many small operations: workers
    on one thread each do not wait for each other at the end of every one)."""
    def build(i: int) -> _AnalogLayer:
        return jobs[i][1](jobs[i][2], config, i)
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i][2].weight.numel())
    workers = min(analog_base.torch_threads(), len(jobs))
    if workers <= 1:
        return [build(i) for i in range(len(jobs))]
    built = dict(zip(order, map_single_threaded(build, order, workers)))
    return [built[i] for i in range(len(jobs))]


def patch_model(model: nn.Module, config: AnalogConfig, calibration_data: Tensor | None = None,
                inplace: bool = False) -> nn.Module:
    """Replace every ``nn.Conv2d``/``nn.Linear`` of ``model`` (walking ``named_modules``) by an
    ``AnalogConv2d``/``AnalogLinear`` programmed per ``config``; other modules (BatchNorm,
    ReLU, pooling, dropout) stay digital. Works on a deep copy unless ``inplace``.

    With ``calibration_data`` (a batch of model inputs) the DAC full scales and ADC ranges are
    set at once and the aging non-idealities applied (:func:`calibrate_model`); otherwise call
    :func:`calibrate_model` before inference.
    """
    if not isinstance(config, AnalogConfig):
        raise ValueError("config must be an AnalogConfig")
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    jobs = [(name, AnalogConv2d if isinstance(module, nn.Conv2d) else AnalogLinear, module)
            for name, module in model.named_modules()
            if isinstance(module, (nn.Conv2d, nn.Linear)) and not isinstance(module, _AnalogLayer)]
    for name, layer in zip([n for n, _, _ in jobs], _program_layers(jobs, config)):
        _set_submodule(model, name, layer)
    index = len(jobs)
    per_layer = config.g_sel_layers_s
    if per_layer is not None and len(per_layer) != index:
        raise ValueError(f"g_sel_layers_s holds {len(per_layer)} layers but the network has "
                         f"{index} analog layers: a calibration of another network?")
    if calibration_data is not None:
        calibrate_model(model, calibration_data)
    return model
