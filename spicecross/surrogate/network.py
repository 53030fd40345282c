"""The tile's resistive network as a sparse nodal system, built straight from a TileSpec.

Unknowns are the word-line and bit-line node voltages (``2·rows·cols``); the input sources are
known voltages and the sense sources are virtual grounds. With linear cell conductances
``g_cell`` (S) the read is ``A·x = B·v`` and the sense currents ``I = C·x``, so the tile's
transfer matrix is ``T = C·A⁻¹·B`` (cols × rows, in S): ``I = T·v`` holds exactly, IR drop on
every wire segment included. ``A`` is symmetric positive definite; one sparse LU factorization
serves all right-hand sides.

This is a second, structured construction of the network that the netlist emitters write from
``tile_elements``; the tests check the two against each other and against ngspice.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..circuit.tile import TileSpec


@dataclass
class TileNetwork:
    """Sparse nodal system of one tile with fixed linear cell conductances."""

    spec: TileSpec
    g_cell_s: np.ndarray          # (rows, cols) effective cell conductances, S
    A: sp.csc_matrix              # (n, n) nodal conductance matrix, S
    g_in_s: float                 # conductance from each input source to its first WL node, S
    g_out_s: float                # conductance from each last BL node to its sense source, S
    lu: spla.SuperLU | None = None

    @property
    def n_cells(self) -> int:
        return self.spec.rows * self.spec.cols

    def wl_index(self) -> np.ndarray:
        """(rows, cols) unknown index of each word-line node."""
        return np.arange(self.n_cells).reshape(self.spec.rows, self.spec.cols)

    def bl_index(self) -> np.ndarray:
        """(rows, cols) unknown index of each bit-line node."""
        return self.n_cells + self.wl_index()

    def factorize(self) -> spla.SuperLU:
        if self.lu is None:
            self.lu = spla.splu(self.A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                                options={"SymmetricMode": True})
        return self.lu

    def rhs(self, v_in_v: np.ndarray) -> np.ndarray:
        """Right-hand side (n, batch) for inputs (batch, rows) in V."""
        v = np.atleast_2d(v_in_v)
        b = np.zeros((2 * self.n_cells, v.shape[0]))
        b[self.wl_index()[:, 0], :] = self.g_in_s * v.T
        return b

    def node_voltages(self, v_in_v: np.ndarray, injected_a: np.ndarray | None = None) -> np.ndarray:
        """Solve for all node voltages (batch, n) in V; ``injected_a`` (batch, n) adds currents
        (A) flowing into the nodes."""
        b = self.rhs(v_in_v)
        if injected_a is not None:
            b = b + np.atleast_2d(injected_a).T
        return self.factorize().solve(b).T

    def sense_currents(self, x_v: np.ndarray) -> np.ndarray:
        """Sense currents (batch, cols) in A from node voltages (batch, n)."""
        return self.g_out_s * x_v[:, self.bl_index()[-1, :]]

    def transfer_matrix(self) -> np.ndarray:
        """T (cols, rows) in S with I = T·v: one factorization, min(rows, cols) solves."""
        R, C = self.spec.rows, self.spec.cols
        lu = self.factorize()
        n = 2 * self.n_cells
        if C <= R:   # A symmetric: T[j, i] = g_out·g_in·(A⁻¹)[bl_last_j, wl_i0]
            e = np.zeros((n, C))
            e[self.bl_index()[-1, :], np.arange(C)] = 1.0
            z = lu.solve(e)                                   # (n, C)
            return (self.g_out_s * self.g_in_s) * z[self.wl_index()[:, 0], :].T
        e = np.zeros((n, R))
        e[self.wl_index()[:, 0], np.arange(R)] = 1.0
        y = lu.solve(e)                                       # (n, R)
        return (self.g_out_s * self.g_in_s) * y[self.bl_index()[-1, :], :]


def build_network(spec: TileSpec, g_cell_s: np.ndarray) -> TileNetwork:
    """Assemble the nodal matrix for ``spec`` with linear cell conductances (rows, cols) in S."""
    g = spec.check_conductances(g_cell_s, "cell conductances")
    R, C = spec.rows, spec.cols
    N = R * C
    wl = np.arange(N).reshape(R, C)
    bl = N + wl
    g_w = 1.0 / spec.r_wire_wl_ohm
    g_b = 1.0 / spec.r_wire_bl_ohm
    g_in = 1.0 / (spec.r_driver_ohm + spec.r_wire_wl_ohm)
    g_out = 1.0 / (spec.r_wire_bl_ohm + spec.r_sense_ohm)

    diag = np.zeros(2 * N)
    # cells
    diag[wl.ravel()] += g.ravel()
    diag[bl.ravel()] += g.ravel()
    # word-line segments between columns j-1 and j
    a_w, b_w = wl[:, :-1].ravel(), wl[:, 1:].ravel()
    np.add.at(diag, a_w, g_w)
    np.add.at(diag, b_w, g_w)
    diag[wl[:, 0]] += g_in
    # bit-line segments between rows i and i+1
    a_b, b_b = bl[:-1, :].ravel(), bl[1:, :].ravel()
    np.add.at(diag, a_b, g_b)
    np.add.at(diag, b_b, g_b)
    diag[bl[-1, :]] += g_out

    off_r = np.concatenate([wl.ravel(), a_w, a_b])
    off_c = np.concatenate([bl.ravel(), b_w, b_b])
    off_v = -np.concatenate([g.ravel(), np.full(a_w.size, g_w), np.full(a_b.size, g_b)])
    rows = np.concatenate([np.arange(2 * N), off_r, off_c])
    cols = np.concatenate([np.arange(2 * N), off_c, off_r])
    vals = np.concatenate([diag, off_v, off_v])
    A = sp.csc_matrix((vals, (rows, cols)), shape=(2 * N, 2 * N))
    return TileNetwork(spec, g, A, g_in, g_out)


def sparse_transfer_matrix(spec: TileSpec, g_cell_s: np.ndarray) -> np.ndarray:
    """T (cols, rows) in S by sparse LU (a cross-check of surrogate.transfer; slower)."""
    return build_network(spec, g_cell_s).transfer_matrix()
