"""The surrogate's read modes (torch-free, so the CLI can offer them without importing torch).

* ``ideal``: no wire resistance: ``I = v·G_cell`` with the cell as the linear modes see it (the
  device, in series with the selector's conductance ``g_sel`` for 1T1R);
* ``linear``: exact wire IR drop with linear cells (one transfer matrix per array);
* ``nonlinear``: the 1T1R selector's level-1 I–V solved with the wire network (for 0T1R equal
  to ``linear``).
"""
MODES = ("ideal", "linear", "nonlinear")
