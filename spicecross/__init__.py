"""spicecross: SPICE-checked memristive crossbar simulation.

Crossbar tiles are emitted as ngspice/VACASK netlists, solved in parallel, and used to calibrate a
batched torch surrogate that runs whole CNNs with exact wire IR drop at the cost of a matmul.
"""
__version__ = "0.1.0"
