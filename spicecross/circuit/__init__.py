"""Tile descriptions and netlist emitters."""
from .tile import SelectorSpec, TileSpec, tile_elements
from .netlist import ngspice_netlist, vacask_netlist, netlist_hash, write_netlist

__all__ = ["SelectorSpec", "TileSpec", "tile_elements", "ngspice_netlist", "vacask_netlist",
           "netlist_hash", "write_netlist"]
