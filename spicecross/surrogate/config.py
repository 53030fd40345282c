"""``AnalogConfig``: everything that decides how a network runs on crossbar tiles, in one frozen,
JSON-serializable object that holds the tile's own :class:`~spicecross.circuit.tile.TileSpec`
(geometry, cell, wires, selector, device set) unchanged, so the netlists, the SPICE checks and
the surrogate read one description of the tile.

Units are in the names (Ω, V, S, %). ``None`` for ``dac_bits``/``adc_bits`` means an ideal
(unquantized) converter, for ``conductance_states`` continuous programming.

Two voltages are kept apart: ``v_read_v`` is the DAC's physical full-scale read voltage (default
below the device set's switching thresholds with margin, :data:`READ_MARGIN`); the seed paper's
``max_input_voltage_v`` is MemTorch's input mapping scale, which the physical read path does not
use (a linear read scales back by the same factor it scaled up by).

``compat`` chooses between the physical read path (``"physical"``, the default: what a chip
would do) and an emulation of what MemTorch 1.1.6 did (``"memtorch"``: naive input scaling at
``max_input_voltage_v``, a fitted per-layer output map, a per-vector ADC range, clip-only
programming, its endurance convergence point); the steps and their MemTorch sources are listed
in :mod:`spicecross.surrogate.memtorch_compat`. ``recalibrate_after_s`` (physical path) re-fits
each layer's ADC range and digital gain every that many seconds of drift, as a chip compensates
retention (see :func:`spicecross.nn.calibrator.calibrate_model`).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from ..circuit.tile import SelectorSpec, TileSpec
from .converters import check_bits
from .modes import MODES, READ_MARGIN, READ_SCHEMES
from .nonidealities import NonIdealityConfig

#: Tile fields that may be given to :meth:`AnalogConfig.build`/:meth:`AnalogConfig.with_` by
#: their network-level names → TileSpec field(s).
TILE_FIELDS: dict[str, tuple[str, ...]] = {
    "tile_rows": ("rows",),
    "tile_cols": ("cols",),
    "cell": ("cell",),
    "r_wire_ohm": ("r_wire_wl_ohm", "r_wire_bl_ohm"),
    "r_wire_wl_ohm": ("r_wire_wl_ohm",),
    "r_wire_bl_ohm": ("r_wire_bl_ohm",),
    "r_driver_ohm": ("r_driver_ohm",),
    "r_sense_ohm": ("r_sense_ohm",),
    "device_set": ("device_set",),
    "selector": ("selector",),
}

DEFAULT_TILE_SIZE = 64      # rows = cols of the seed paper's default tiles
#: ``AnalogConfig.compat`` values: the physical read path, or MemTorch 1.1.6's algorithm.
COMPAT_MODES = ("physical", "memtorch")



def _default_tile() -> TileSpec:
    return TileSpec(rows=DEFAULT_TILE_SIZE, cols=DEFAULT_TILE_SIZE)


@dataclass(frozen=True)
class AnalogConfig:
    """How a network runs on crossbars. Build with :meth:`build` from flat names
    (``tile_rows=…, r_wire_ohm=…, sigma_r_on_ohm=…``) or pass a ``TileSpec`` as ``tile``."""

    tile: TileSpec = field(default_factory=_default_tile)
    mode: str = "polynomial"
    dac_bits: int | None = 8
    v_read_v: float | None = None
    read_scheme: str = "two-phase"
    max_input_voltage_v: float = 9.0
    adc_bits: int | None = 8
    adc_overflow_pct: float = 0.0
    conductance_states: int | None = None
    selector_aware: bool = True
    g_sel_s: float | None = None
    g_sel_layers_s: tuple[float, ...] | None = None
    ir_compensation: bool = False
    compensation_iters: int = 40
    nonideal: NonIdealityConfig = field(default_factory=NonIdealityConfig)
    seed: int = 0
    calibration_images: int = 256
    compat: str = "physical"
    recalibrate_after_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.tile, TileSpec):
            raise ValueError(f"tile must be a TileSpec, got {type(self.tile).__name__}")
        for name in ("calibration_images", "compensation_iters"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        check_bits(self.dac_bits, "dac_bits")
        check_bits(self.adc_bits, "adc_bits")
        for name in ("max_input_voltage_v", "v_read_v"):
            v = getattr(self, name)
            if v is None and name == "v_read_v":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a voltage > 0 V, got {v!r}")
        if self.compat not in COMPAT_MODES:
            raise ValueError(f"compat must be one of {COMPAT_MODES}, got {self.compat!r}")
        r = self.recalibrate_after_s
        if r is not None and (isinstance(r, bool) or not isinstance(r, (int, float))
                              or not math.isfinite(r) or r <= 0):
            raise ValueError(f"recalibrate_after_s must be a time > 0 s (or None), got {r!r}")
        if r is not None and self.compat == "memtorch":
            raise ValueError("recalibrate_after_s is the physical path's drift compensation; "
                             "compat='memtorch' re-runs its tune_() fit after drift instead")
        if self.read_scheme not in READ_SCHEMES:
            raise ValueError(f"read_scheme must be one of {READ_SCHEMES}, got {self.read_scheme!r}")
        if not 0.0 <= self.adc_overflow_pct < 100.0:
            raise ValueError(f"adc_overflow_pct must be in [0, 100), got {self.adc_overflow_pct!r}")
        s = self.conductance_states
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 2):
            raise ValueError(f"conductance_states must be an integer ≥ 2 (or None), got {s!r}")
        if self.g_sel_s is not None and not (math.isfinite(self.g_sel_s) and self.g_sel_s > 0):
            raise ValueError(f"g_sel_s must be a conductance > 0 S, got {self.g_sel_s!r}")
        if self.g_sel_layers_s is not None:
            layers = tuple(float(g) for g in self.g_sel_layers_s)
            if not layers or not all(math.isfinite(g) and g > 0 for g in layers):
                raise ValueError(f"g_sel_layers_s must be conductances > 0 S, got "
                                 f"{self.g_sel_layers_s!r}")
            object.__setattr__(self, "g_sel_layers_s", layers)
        if self.ir_compensation and self.cell == "1t1r" and not self.selector_aware:
            raise ValueError("ir_compensation programs the effective 1T1R cell conductance; "
                             "it needs selector_aware=True")
        if not isinstance(self.nonideal, NonIdealityConfig):
            raise ValueError("nonideal must be a NonIdealityConfig")
        self.device_params()  # validates device_set

    # ---- the tile's fields under their network-level names (views, not copies) -------------
    @property
    def tile_rows(self) -> int:
        return self.tile.rows

    @property
    def tile_cols(self) -> int:
        return self.tile.cols

    @property
    def cell(self) -> str:
        return self.tile.cell

    @property
    def device_set(self) -> str:
        return self.tile.device_set

    @property
    def r_wire_ohm(self) -> float:
        """The word-line segment resistance (Ω); equal to the bit-line one unless set apart."""
        return self.tile.r_wire_wl_ohm

    @property
    def r_driver_ohm(self) -> float:
        return self.tile.r_driver_ohm

    @property
    def r_sense_ohm(self) -> float:
        return self.tile.r_sense_ohm

    # ---- derived objects ------------------------------------------------------------------
    def device_params(self):
        """The VTEAM parameter set named by the tile's ``device_set``."""
        from ..devices.vteam import get_parameter_set
        return get_parameter_set(self.tile.device_set)

    def tile_spec(self) -> TileSpec:
        """The one TileSpec all tiles of this configuration share."""
        return self.tile

    @property
    def g_sel(self) -> float:
        """The selector conductance (S) the 1T1R mapping and linear read use."""
        return float(self.g_sel_s) if self.g_sel_s is not None else self.tile.selector.g_on_s

    def g_sel_for(self, layer_index: int) -> float:
        """The selector conductance (S) of analog layer ``layer_index``: its own fitted value
        when ``g_sel_layers_s`` holds one per layer (each layer reads its own voltage range,
        and the level-1 selector's effective conductance depends on V_DS), else :attr:`g_sel`."""
        if self.g_sel_layers_s is None:
            return self.g_sel
        if not 0 <= layer_index < len(self.g_sel_layers_s):
            raise ValueError(f"g_sel_layers_s holds {len(self.g_sel_layers_s)} layers; the network "
                             f"has more (layer index {layer_index}): a calibration of another network?")
        return self.g_sel_layers_s[layer_index]

    @property
    def wires(self) -> bool:
        """Whether reads include wire resistance (linear/nonlinear modes, wires not all ideal)."""
        return self.mode != "ideal" and not self.tile.ideal_wires

    @property
    def switching_threshold_v(self) -> float:
        """The smaller magnitude of the device set's two switching thresholds (V)."""
        p = self.device_params()
        return min(p.v_off_v, -p.v_on_v)

    @property
    def read_voltage_v(self) -> float:
        """The DAC's full-scale read voltage (V): ``v_read_v``, or by default
        :data:`READ_MARGIN` × the device set's switching threshold (0.2 V for pt_hf_ti)."""
        if self.v_read_v is not None:
            return float(self.v_read_v)
        return READ_MARGIN * self.switching_threshold_v

    def read_disturb_warning(self) -> str | None:
        """A message when full-scale reads exceed the device's switching thresholds."""
        limit = self.switching_threshold_v
        if self.read_voltage_v > limit:
            return (f"read voltage {self.read_voltage_v:g} V exceeds the {self.device_set} "
                    f"switching threshold ({limit:g} V): a real array would be disturbed by such "
                    f"reads; the {self.mode} model treats the devices as fixed resistors")
        return None

    # ---- building and changing --------------------------------------------------------------
    @classmethod
    def build(cls, **settings: Any) -> "AnalogConfig":
        """A configuration from flat names: tile fields (:data:`TILE_FIELDS`), non-ideality
        fields and the config's own fields, each checked by the class that owns it."""
        return cls().with_(**settings)

    def with_(self, **changes: Any) -> "AnalogConfig":
        """A copy with fields changed; tile and non-ideality fields may be given by name too."""
        nonideal_names = {f.name for f in fields(NonIdealityConfig)}
        nid = {k: changes.pop(k) for k in list(changes) if k in nonideal_names}
        tile_changes: dict[str, Any] = {}
        for k in [k for k in changes if k in TILE_FIELDS]:
            value = changes.pop(k)
            for name in TILE_FIELDS[k]:
                tile_changes[name] = value
        if "selector" in tile_changes and isinstance(tile_changes["selector"], dict):
            tile_changes["selector"] = SelectorSpec(**tile_changes["selector"])
        if isinstance(changes.get("g_sel_layers_s"), list):
            changes["g_sel_layers_s"] = tuple(changes["g_sel_layers_s"])
        tile = changes.pop("tile", self.tile)
        if tile_changes:
            tile = replace(tile, **tile_changes)
        cfg = replace(self, tile=tile, **changes)
        if nid:
            cfg = replace(cfg, nonideal=replace(cfg.nonideal, **nid))
        return cfg

    # ---- serialization ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AnalogConfig":
        """Inverse of :meth:`to_dict`; also reads the flat tile names of earlier files."""
        d = dict(d)
        known = {f.name for f in fields(cls)} | set(TILE_FIELDS)
        extra = set(d) - known
        if extra:
            raise ValueError(f"unknown AnalogConfig field(s): {', '.join(sorted(extra))}")
        tile = d.pop("tile", None)
        if tile is not None and not isinstance(tile, TileSpec):
            tile = TileSpec.from_dict(tile)
        nid = d.pop("nonideal", None)
        if nid is not None and not isinstance(nid, NonIdealityConfig):
            nid = NonIdealityConfig.from_dict(nid)
        base = cls(**({"tile": tile} if tile is not None else {}),
                   **({"nonideal": nid} if nid is not None else {}))
        return base.with_(**d)

    @classmethod
    def from_json(cls, text: str) -> "AnalogConfig":
        return cls.from_dict(json.loads(text))


__all__ = ["AnalogConfig", "COMPAT_MODES", "DEFAULT_TILE_SIZE", "READ_MARGIN", "READ_SCHEMES", "TILE_FIELDS"]
