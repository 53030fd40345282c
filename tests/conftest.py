import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session solves into its own cache, so cache hits are only the ones a test makes."""
    cache = tmp_path_factory.getbasetemp() / "solve-cache"
    monkeypatch.setenv("SPICECROSS_CACHE", str(cache))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    yield


def assert_plot_png(path, min_px: int = 300) -> None:
    """A real plot: a PNG of at least ``min_px`` pixels each way with drawn content (many
    distinct colours, not a blank canvas)."""
    import numpy as np
    from matplotlib.image import imread

    path = Path(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    img = imread(path)
    assert img.shape[0] >= min_px and img.shape[1] >= min_px, img.shape
    rgb = (img[..., :3] * 255).astype(int).reshape(-1, 3)
    assert len(np.unique(rgb, axis=0)) > 20, f"{path} looks blank"
    assert (rgb.min(axis=1) < 128).mean() > 0.005, f"{path} has almost nothing drawn"


@pytest.fixture(scope="module")
def module_osdi_cache(tmp_path_factory):
    """A fresh OSDI (compiled Verilog-A) cache per test module: the VTEAM modules' tests
    compile their own, so none depends on a cache another module left."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPICECROSS_OSDI_CACHE", str(tmp_path_factory.mktemp("osdi")))
        yield


def programmed(rows, cols, seed=0):
    """pt_hf_ti device conductances (S), (rows, cols), spread over the device's range away from
    both bounds."""
    import numpy as np

    from spicecross.devices.vteam import get_parameter_set

    p = get_parameter_set("pt_hf_ti")
    rng = np.random.default_rng(seed)
    return 1.0 / rng.uniform(1.2 * p.r_on_ohm, 0.8 * p.r_off_ohm, (rows, cols))


def three_1t1r_tiles():
    """A 10×6 1T1R spec with driver and sense resistances, three tiles' conductances (S; the
    second has an open word line) and five signed input vectors per tile (V): the several-tile
    case of the nonlinear solver's tests."""
    import numpy as np

    from spicecross.circuit.tile import TileSpec

    spec = TileSpec(rows=10, cols=6, cell="1t1r", r_wire_wl_ohm=1.0, r_wire_bl_ohm=2.0,
                    r_driver_ohm=5.0, r_sense_ohm=1.0)
    rng = np.random.default_rng(9)
    g = rng.uniform(1 / 2500, 1 / 100, (3, 10, 6))
    g[1, 4, :] = 0.0
    return spec, g, rng.uniform(-0.2, 0.2, (3, 5, 10))


def small_analog_config(**kw):
    """An AnalogConfig of small 0T1R tiles (16×4, 0.5 Ω wires, 8-bit DAC, 6-bit ADC, linear
    mode): many row and column tiles for small test networks; ``kw`` overrides."""
    from spicecross.surrogate.config import AnalogConfig

    base = dict(tile_rows=16, tile_cols=4, r_wire_ohm=0.5, mode="linear", dac_bits=8,
                adc_bits=6, cell="0t1r", ir_compensation=False)
    base.update(kw)
    return AnalogConfig.build(**base)
