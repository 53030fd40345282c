"""Names of the sweep presets (torch-free, so the CLI can list them without loading torch).

The grids themselves are in :data:`spicecross.experiments.sweeps.PRESETS`, keyed by these
names in this order.
"""
PRESET_NAMES: tuple[str, ...] = ("max-input-voltage", "tile-adc", "variability-states", "stuck-at",
                                 "endurance-retention")
