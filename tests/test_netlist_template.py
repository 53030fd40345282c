"""The VACASK read netlist filled into its memoized template is the emitter's own text, byte
for byte (spicecross/circuit/netlist_template.py)."""
import dataclasses
import warnings

import numpy as np
import pytest

from spicecross.circuit import netlist_template
from spicecross.circuit.netlist import vacask_netlist, vacask_netlist_from_elements
from spicecross.circuit.tile import TileSpec, tile_elements

SPECS = [
    TileSpec.uniform_wires(5, 7, 0.1),
    TileSpec.uniform_wires(5, 7, 0.1, cell="1t1r"),
    TileSpec(rows=6, cols=3, r_driver_ohm=5.0, r_sense_ohm=2.0),
    TileSpec(rows=6, cols=3, cell="1t1r", r_wire_wl_ohm=0.0, r_wire_bl_ohm=0.0),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.rows}x{s.cols}-{s.cell}-{s.r_driver_ohm}")
def test_filled_template_is_the_emitters_text(spec):
    rng = np.random.default_rng(spec.rows * spec.cols)
    for open_share in (0.0, 0.3):               # open cells change the template
        g = rng.uniform(1e-6, 1e-2, (spec.rows, spec.cols))
        g[rng.random(g.shape) < open_share] = 0.0
        for _ in range(3):                      # the template reused with new values
            g = np.where(g > 0, rng.uniform(1e-6, 1e-2, g.shape), 0.0)
            v = rng.uniform(0.0, 0.5, spec.rows)
            assert vacask_netlist(spec, g, v) == vacask_netlist_from_elements(
                spec, tile_elements(spec, g, v))


def test_template_is_made_once_per_spec_and_open_cells():
    spec = TileSpec.uniform_wires(4, 4, 0.1)
    netlist_template._template.cache_clear()
    g = np.full((4, 4), 1e-3)
    for scale in (1.0, 2.0, 3.0):
        vacask_netlist(spec, g * scale, np.full(4, 0.1 * scale))
    g[1, 2] = 0.0
    vacask_netlist(spec, g, np.zeros(4))
    info = netlist_template._template.cache_info()
    assert (info.misses, info.hits) == (2, 2)


def test_forward_junction_warning_and_bad_input_as_before():
    spec = TileSpec.uniform_wires(3, 3, 0.1, cell="1t1r")
    spec = dataclasses.replace(spec, selector=dataclasses.replace(spec.selector, v_bulk_v=-0.2))
    g = np.full((3, 3), 1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vacask_netlist(spec, g, np.array([0.0, 0.1, 0.2]))     # no warning
    with pytest.warns(RuntimeWarning, match="-0.5 V below the selector bulk"):
        vacask_netlist(spec, g, np.array([-0.5, 0.1, 0.2]))
    with pytest.raises(ValueError, match="one input vector"):
        vacask_netlist(spec, g, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="≥ 0 S"):
        vacask_netlist(spec, -g, np.zeros(3))
