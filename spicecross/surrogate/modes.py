"""Names of the surrogate's read modes (torch-free, so the CLI can offer them as choices).

See :mod:`spicecross.surrogate.tile_model` for what each mode computes.
"""
MODES = ("ideal", "linear", "nonlinear")
