"""``ProgrammedArray``: one layer's weights programmed onto crossbar tiles, and their reads.

A layer's crossbar matrix ``M`` (K inputs × C_out outputs) is cut into tiles of
``rows × cols`` (:func:`~spicecross.surrogate.mapping.split_into_tiles`; unused cells of the last
tiles sit at the baseline conductance, unused word lines at 0 V) and every tile is a *pair* of
physical arrays programmed by the double-column mapping
(:func:`~spicecross.surrogate.mapping.double_column_units`). Each array is read on its own
(its own transfer matrix from its own positive conductances); the sense currents are subtracted
after sensing. Because a read is linear in the inputs, ``I⁺ − I⁻ = (T⁺ − T⁻)·v`` exactly, so the
``linear`` and ``ideal`` reads store the difference and cost one matmul per tile.

1T1R tiles (``selector_aware=True``, the default) map ``W`` linearly onto the *cell* conductance
(the device in series with ``g_sel``: the calibrated ``g_sel_s`` if given, else the level-1
on-conductance) and program each device to the conductance that gives its target in series, so
the selector does not distort the weights. ``selector_aware=False`` maps ``W`` linearly onto the
device conductance as MemTorch does (scaling back still uses the known cell range).

Programming order: mapping → (IR-drop compensation) → finite states → variability → stuck-at
(:mod:`.nonidealities`); :meth:`ProgrammedArray.age` applies endurance and retention later.

Modes (:mod:`.modes`): ``ideal`` no wires (the cell as the linear modes see it), ``linear``
exact wire IR drop (transfer matrices), ``nonlinear`` per-tile reads by
``TileSurrogate(mode="nonlinear")`` (the selector's level-1 I–V with the wires).
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from . import memtorch_compat as mc
from . import nonidealities as ni
from .cell_poly import cell_polynomials
from .compensation import compensated_cells
from .config import AnalogConfig
from .mapping import (cell_range_s, conductances_for_units, device_conductance_for_cell,
                      device_range_s, double_column_units, series_conductance, split_into_tiles)
from .tile_model import TileSurrogate
from .transfer import transfer_matrices

#: Max relative transfer error that counts as compensated.
COMPENSATION_TOL = 2e-4
#: Vectors per nonlinear tile read (bounds the memory of one batched solve).
NONLINEAR_CHUNK = 2048


class ProgrammedArray:
    """The programmed device conductances of one layer and their reads.

    Attributes: ``g_dev`` (2, row tiles, col tiles, rows, cols) device conductances in S (index
    0 the G⁺ arrays, 1 the G⁻ arrays), ``g_lo``/``g_hi`` the cell range the weights were mapped
    onto (S), ``w_max`` the weight of full scale, ``headroom`` and ``compensation_residual`` of
    IR-drop compensation, ``readout64`` (row tiles, rows, C_out) the differential read matrices
    in S with ``I = v @ A`` (``readout`` the float32 copy).
    """

    def __init__(self, m_cross: np.ndarray, config: AnalogConfig, layer_index: int = 0) -> None:
        if not isinstance(config, AnalogConfig):
            raise ValueError("config must be an AnalogConfig")
        self.config = config
        self.layer_index = layer_index
        self.spec = config.tile_spec()
        dev = config.device_params()
        K, C_out = m_cross.shape
        R, C = config.tile_rows, config.tile_cols
        self.n_row_tiles, self.n_col_tiles = -(-K // R), -(-C_out // C)
        self.k_in, self.c_out = K, C_out
        g_dev_lo, g_dev_hi = device_range_s(dev.r_on_ohm, dev.r_off_ohm)
        one_t = config.cell == "1t1r"
        self.g_sel = config.g_sel_for(layer_index)        # S, this layer's 1T1R selector
        self.g_lo, self.g_hi = cell_range_s(self.spec, dev.r_on_ohm, dev.r_off_ohm, self.g_sel)
        w_max = float(np.max(np.abs(m_cross))) if m_cross.size else 0.0
        self.w_max = w_max if w_max > 0 else 1.0
        u = double_column_units(split_into_tiles(m_cross, R, C), self.w_max)  # (2, nr, nc, R, C)

        self.compensation_residual: float | None = None
        self.headroom = 1.0
        if config.ir_compensation and config.wires:
            g_cell, self.headroom, self.compensation_residual = compensated_cells(
                self.spec.for_solvers(), u, self.g_lo, self.g_hi - self.g_lo, self.g_lo,
                self.g_hi, config.compensation_iters)
            self.g_hi = self.g_lo + self.headroom * (self.g_hi - self.g_lo)
            if self.compensation_residual > COMPENSATION_TOL:
                warnings.warn(f"layer {layer_index}: IR drop cannot be compensated (wires of "
                              f"{config.r_wire_ohm:g} Ω are too resistive for {R}x{C} tiles of "
                              f"{config.device_set}); programmed uncompensated, max relative "
                              f"transfer error {self.compensation_residual:.3g}",
                              RuntimeWarning, stacklevel=3)
            g_dev = device_conductance_for_cell(g_cell, self.g_sel) if one_t else g_cell
        elif one_t and not config.selector_aware:
            g_dev = conductances_for_units(u, g_dev_lo, g_dev_hi)   # MemTorch-like
        elif one_t:
            g_dev = device_conductance_for_cell(conductances_for_units(u, self.g_lo, self.g_hi),
                                                self.g_sel)
        else:
            g_dev = conductances_for_units(u, self.g_lo, self.g_hi)
        g_dev = ni.quantize_states(g_dev, g_dev_lo, g_dev_hi, config.conductance_states)

        nid = config.nonideal
        rng = np.random.default_rng([int(config.seed), int(layer_index)])
        window = ni.sample_device_windows(g_dev.shape, dev.r_on_ohm, dev.r_off_ohm,
                                          nid.sigma_r_on_ohm, nid.sigma_r_off_ohm, rng)
        memtorch = config.compat == "memtorch"
        if (nid.sigma_r_on_ohm > 0 or nid.sigma_r_off_ohm > 0) and memtorch:
            g_dev = mc.program_clip(g_dev, window.r_on_ohm, window.r_off_ohm)
        elif nid.sigma_r_on_ohm > 0 or nid.sigma_r_off_ohm > 0:
            g_dev = ni.apply_variability(g_dev, window, dev.r_model)
        if memtorch:     # MemTorch's tutorial applies DeviceFaults after tune_(): see age()
            self._faults = lambda g: ni.apply_stuck_at(g, window, nid.stuck_hrs_p,
                                                       nid.stuck_lrs_p, rng)[0]
        else:
            g_dev, _ = ni.apply_stuck_at(g_dev, window, nid.stuck_hrs_p, nid.stuck_lrs_p, rng)
        self.g_dev_programmed = g_dev
        self.g_dev = g_dev
        self._surrogates: dict = {}
        self._build_readout()

    # ---- readout matrices -----------------------------------------------------------------
    def cell_conductances(self, g_dev: np.ndarray | None = None) -> np.ndarray:
        """Effective cell conductances (S): the device, in series with g_sel for 1T1R."""
        g = self.g_dev if g_dev is None else g_dev
        if self.config.cell == "1t1r":
            return series_conductance(g, self.g_sel)
        return g

    @property
    def polynomial(self) -> bool:
        """True when reads use the 1T1R cells' own I–V polynomials (:mod:`.cell_poly`)."""
        return self.config.mode == "polynomial" and self.config.cell == "1t1r"

    def read_range_v(self) -> tuple[float, float]:
        """Word-line voltages (V) the DAC can apply: [0, v_fs] two-phase, [−v_fs, v_fs] bipolar."""
        v_fs = self.config.read_voltage_v
        return (-v_fs if self.config.read_scheme == "bipolar" else 0.0), v_fs

    def _build_readout(self) -> None:
        """Per-array read matrices A (…, R, C) with I = v @ A (plus, in the ``polynomial`` mode,
        ``Σ_k (v^k) @ P_k`` for k ≥ 2); store the differential ones per row tile."""
        poly = None
        if self.polynomial:
            chord, poly, self.poly_fit_residual = cell_polynomials(
                self.spec, self.g_dev, *self.read_range_v())
            g_cell = torch.as_tensor(chord, dtype=torch.float64)
        else:
            g_cell = torch.as_tensor(self.cell_conductances(), dtype=torch.float64)
        if self.config.wires:
            a = self._transfer_read_matrices(g_cell)
        else:
            a = g_cell
        if poly is not None:
            a = a + torch.from_numpy(poly[0])          # the linear remainder joins the matmul
        arrays = [a] + ([torch.from_numpy(p) for p in poly[1:]] if poly is not None else [])
        self._store_read_terms([self._per_row_tile(m) for m in arrays])

    def _store_read_terms(self, per_row_tile: list[Tensor]) -> None:
        """Keep the read matrices per row tile (nr, R, C_out) of the powers 1, 2, … of the
        inputs in float64 and float32 (new tensors: the layers' cached code-unit reads are
        keyed by them) and forget the per-tile surrogates built from the old conductances."""
        self.read_terms64 = [(k + 1, m) for k, m in enumerate(per_row_tile)]
        self.read_terms = [(k, m.to(torch.float32).contiguous()) for k, m in self.read_terms64]
        self.readout64 = self.read_terms64[0][1]                          # (nr, R, C_out), S
        self.readout = self.read_terms[0][1]
        self._surrogates = {}

    def refresh_row_tiles(self, rows) -> None:
        """Rebuild the read matrices after the device conductances of row tiles ``rows`` (and
        no others) changed in :attr:`g_dev`: with wires and linear cells only those row tiles'
        transfer matrices are solved and spliced into new read-matrix tensors (each row tile's
        matrices depend on its own conductances alone); otherwise (ideal wires, the
        ``polynomial`` mode, whose fits span the layer) :meth:`_build_readout`."""
        rows = sorted({int(r) for r in rows})
        if not rows:
            return
        if not 0 <= rows[0] <= rows[-1] < self.n_row_tiles:
            raise ValueError(f"row tiles must lie in 0..{self.n_row_tiles - 1}, got {rows}")
        if self.polynomial or not self.config.wires or len(rows) == self.n_row_tiles:
            self._build_readout()
            return
        g_cell = torch.as_tensor(self.cell_conductances(self.g_dev[:, rows]), dtype=torch.float64)
        readout64 = self.readout64.clone()
        readout64[rows] = self._per_row_tile(self._transfer_read_matrices(g_cell))
        self._store_read_terms([readout64])

    def _transfer_read_matrices(self, g_cell: Tensor) -> Tensor:
        """Per-array read matrices Tᵀ (2, nr, nc, R, C) in S with wires, for cell conductances
        of that shape: only the bit lines the layer reads are solved in the last column tile
        (its unused columns hold one conductance, which the transfer matrices exploit); the
        unread ones stay NaN and :meth:`_per_row_tile` drops them."""
        spec = self.spec.for_solvers()
        used = self.c_out - (self.n_col_tiles - 1) * self.config.tile_cols
        a = torch.full(g_cell.shape, float("nan"), dtype=torch.float64)
        if self.n_col_tiles > 1:
            a[:, :, :-1] = transfer_matrices(spec, g_cell[:, :, :-1]).transpose(-1, -2)
        a[:, :, -1, :, :used] = transfer_matrices(spec, g_cell[:, :, -1],
                                                  n_cols=used).transpose(-1, -2)
        return a

    def _per_row_tile(self, a: Tensor) -> Tensor:
        """Differential (G⁺ − G⁻) read matrices per row tile, (nr, R, C_out), from per-array
        ones (2, nr, nc, R, C)."""
        diff = a[0] - a[1]                                                # (nr, nc, R, C)
        nr, nc, R, C = diff.shape
        return diff.permute(0, 2, 1, 3).reshape(nr, R, nc * C)[:, :, :self.c_out].contiguous()

    def row_tile_currents(self, v: np.ndarray, r: int) -> np.ndarray:
        """Differential currents (A), (M, C_out), of row tile ``r`` for its word-line voltages
        (M, rows used) in V (float64), by the read matrices (not the nonlinear mode)."""
        n = v.shape[1]
        out = v @ self.read_terms64[0][1][r, :n].numpy()
        for k, m in self.read_terms64[1:]:
            out = out + (v ** k) @ m[r, :n].numpy()
        return out

    def age(self, retention_s: float | None = None) -> None:
        """Endurance, then retention (``retention_s``, default the configuration's), on the
        programmed array (after calibration). ``compat="memtorch"``: stuck-at faults first
        (applied after ``tune_()`` as in MemTorch's tutorial), then endurance with MemTorch's
        convergence point and unbounded gradual mode (:mod:`.memtorch_compat`)."""
        nid = self.config.nonideal
        memtorch = self.config.compat == "memtorch"
        t_s = nid.retention_s if retention_s is None else float(retention_s)
        has_faults = memtorch and (nid.stuck_hrs_p > 0 or nid.stuck_lrs_p > 0)
        if not (nid.endurance_cycles > 0 or t_s > nid.retention_t0_s or has_faults):
            return
        dev = self.config.device_params()
        g = self.g_dev_programmed
        if has_faults:
            if not hasattr(self, "_g_faulty"):
                self._g_faulty = self._faults(g)
            g = self._g_faulty
        if nid.endurance_cycles > 0:
            g = ni.apply_endurance(g, nid.endurance_cycles, ni.ENDURANCE_MODELS[nid.endurance_model],
                                   dev.r_on_ohm, dev.r_off_ohm, nid.temperature_k,
                                   mc.endurance_convergence_ohm() if memtorch else None,
                                   bounded=not memtorch)
        if t_s > 0:
            g = ni.apply_retention(g, t_s, nid.drift_coefficient, nid.retention_t0_s)
        self.g_dev = g
        self._build_readout()

    def reprogram(self, g_dev_s: np.ndarray) -> None:
        """Replace the programmed device conductances (S, the shape of :attr:`g_dev`) by what a
        programming model left (:mod:`.program_model`) and rebuild the reads; before
        calibration, so the converters see the programmed chip."""
        g = np.asarray(g_dev_s, dtype=np.float64)
        if g.shape != self.g_dev.shape or not np.all(np.isfinite(g) & (g > 0)):
            raise ValueError(f"reprogram needs finite positive conductances of shape "
                             f"{self.g_dev.shape}, got shape {g.shape}")
        self.g_dev_programmed = self.g_dev = g
        self._build_readout()

    # ---- per-tile access (tests, SPICE checks) -------------------------------------------------
    def tile_device_conductances(self, r: int, c: int) -> tuple[np.ndarray, np.ndarray]:
        """Device conductances (S) of the G⁺ and G⁻ arrays of tile (r, c), (rows, cols) each."""
        return self.g_dev[0, r, c], self.g_dev[1, r, c]

    def tile_rows_of(self, r: int) -> slice:
        """Which layer inputs (crossbar rows) row tile ``r`` holds."""
        R = self.config.tile_rows
        return slice(r * R, min((r + 1) * R, self.k_in))

    def read_tile(self, r: int, c: int, v_tile: np.ndarray, mode: str | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Sense currents (A) of both arrays of tile (r, c) for word-line voltages (batch, rows)
        in V (float64), in ``mode`` (default: the configuration's)."""
        mode = mode or self.config.mode
        v = np.atleast_2d(np.asarray(v_tile, dtype=np.float64))
        out = []
        for s in (0, 1):
            g = self.g_dev[s, r, c]
            if mode == "ideal" or (mode == "linear" and not self.config.wires):
                out.append(v @ self.cell_conductances(g))
            else:
                key = (s, r, c, mode)
                if key not in self._surrogates:
                    self._surrogates[key] = TileSurrogate(self.spec, g, mode, self.g_sel,
                                                          v_range_v=self.read_range_v())
                out.append(self._surrogates[key].read(v))
        return out[0], out[1]

    #: A reader that replaces the surrogate's reads while set (e.g. the SPICE loop,
    #: :func:`spicecross.nn.spice_loop.spice_reads`): ``reader(array, vmat)`` with word-line
    #: voltages (M, K) in V returns the differential currents (A) per row tile, (M, C_out) each.
    reader: Callable[["ProgrammedArray", Tensor], list[Tensor]] | None = None

    @property
    def uses_tile_reads(self) -> bool:
        """True when reads go through :meth:`tile_read_currents`: a swapped-in :attr:`reader`,
        or tile by tile through :meth:`read_tile` (the nonlinear mode with wires); otherwise
        one matmul with :attr:`readout` per row tile."""
        return self.reader is not None or self.surrogate_uses_tile_reads

    @property
    def surrogate_uses_tile_reads(self) -> bool:
        """True when the surrogate itself reads tile by tile (the nonlinear mode with wires)."""
        return self.config.mode == "nonlinear" and self.config.wires

    def tile_read_currents(self, vmat: Tensor) -> list[Tensor]:
        """Differential currents per row tile, (M, C_out) each, for word-line voltages (M, K)
        in V: by the swapped-in :attr:`reader` if one is set, else by per-tile surrogate reads
        (:meth:`surrogate_tile_read_currents`)."""
        if self.reader is not None:
            return self.reader(self, vmat)
        return self.surrogate_tile_read_currents(vmat)

    def surrogate_tile_read_currents(self, vmat: Tensor) -> list[Tensor]:
        """Differential currents per row tile, (M, C_out) each, for word-line voltages (M, K)
        in V, by per-tile surrogate reads (:meth:`read_tile`)."""
        R, C = self.config.tile_rows, self.config.tile_cols
        v = vmat.detach().to(torch.float64).numpy()
        M = v.shape[0]
        outs = []
        for r in range(self.n_row_tiles):
            rows = self.tile_rows_of(r)
            vt = np.zeros((M, R))
            vt[:, :rows.stop - rows.start] = v[:, rows]
            cur = np.zeros((M, self.n_col_tiles * C))
            for c in range(self.n_col_tiles):
                for lo in range(0, M, NONLINEAR_CHUNK):
                    ip, im = self.read_tile(r, c, vt[lo:lo + NONLINEAR_CHUNK])
                    cur[lo:lo + NONLINEAR_CHUNK, c * C:(c + 1) * C] = ip - im
            outs.append(torch.from_numpy(cur[:, :self.c_out]).to(vmat.dtype))
        return outs

    def weight_units_per_a(self, x_fs: float) -> float:
        """Weight units per ampere of summed differential current for inputs of full scale
        ``x_fs`` read at the DAC's full-scale voltage: the known inverse of the mapping."""
        return (x_fs / self.config.read_voltage_v) * (self.w_max / (self.g_hi - self.g_lo))


__all__ = ["COMPENSATION_TOL", "ProgrammedArray"]
