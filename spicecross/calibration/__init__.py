"""Calibration of the surrogate against SPICE, with held-out error reports."""
from .calibrate import Calibration, calibrate, draw_tiles, load_calibration, save_calibration

__all__ = ["Calibration", "calibrate", "draw_tiles", "load_calibration", "save_calibration"]
