"""The surrogate's read modes (torch-free, so the CLI can offer them without importing torch).

* ``ideal``: no wire resistance: ``I = v·G_cell`` with the cell as the linear modes see it (the
  device, in series with the selector's conductance ``g_sel`` for 1T1R);
* ``linear``: exact wire IR drop with linear cells (one transfer matrix per array);
* ``polynomial``: ``linear``'s exact wire network for each 1T1R cell's chord conductance plus
  the cell's own level-1 I–V as a cubic in its word-line voltage (3 matmuls per read; for 0T1R
  equal to ``linear``);
* ``nonlinear``: the 1T1R selector's level-1 I–V solved with the wire network (for 0T1R equal
  to ``linear``).
"""
MODES = ("ideal", "linear", "polynomial", "nonlinear")

#: How signed layer inputs reach the word lines. ``two-phase``: two reads with non-negative
#: voltages (x⁺ = max(x, 0), then x⁻ = max(−x, 0)), each digitized by the same ADC and
#: subtracted after it, so no word line ever goes below 0 V (the selectors' junctions stay
#: reverse-biased); a layer whose calibration inputs are non-negative reads once. ``bipolar``:
#: one read with negative word-line voltages (a signed DAC), as MemTorch does.
READ_SCHEMES = ("two-phase", "bipolar")

#: How ``infer --program`` writes the arrays (:mod:`.program_model`): write-verify to a
#: tolerance, or one open-loop pulse per cell from the RESET state.
PROGRAM_METHODS = ("write-verify", "open-loop")

#: The default full-scale read voltage as a share of the device set's switching threshold.
READ_MARGIN = 0.4
