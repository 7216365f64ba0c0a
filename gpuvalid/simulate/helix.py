"""Alpha-helical residues from the Cα trace, and the helix voxels of a simulated map.

A residue ``i`` starts a helical turn when the Cα(i)–Cα(i+3) distance is 4.5–5.9 Å, Cα(i)–Cα(i+4)
is 5.5–6.9 Å and the Cα virtual dihedral (i..i+3) is +30°…+80° (an ideal right-handed α-helix:
5.0 Å, 6.2 Å, +50°); residues i..i+4 of such turns are helical.  Chain breaks (consecutive Cα more
than 4.2 Å apart) are respected.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

from .structure import Atoms


def _dihedral(p0, p1, p2, p3) -> np.ndarray:
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1n = b1 / np.linalg.norm(b1, axis=1, keepdims=True)
    v = b0 - (b0 * b1n).sum(1, keepdims=True) * b1n
    w = b2 - (b2 * b1n).sum(1, keepdims=True) * b1n
    x = (v * w).sum(1)
    y = (np.cross(b1n, v) * w).sum(1)
    return np.degrees(np.arctan2(y, x))


def helix_residues(atoms: Atoms) -> set:
    """Residue keys of alpha-helical residues."""
    ca = np.flatnonzero(atoms.name == "CA")
    ca = ca[atoms.element[ca] == "C"]
    keys, xyz = atoms.res_key[ca], atoms.xyz[ca]
    out: set = set()
    n = len(ca)
    if n < 5:
        return out
    step = np.linalg.norm(np.diff(xyz, axis=0), axis=1)
    ok_step = step < 4.2
    for i in range(n - 4):
        if not ok_step[i:i + 4].all():
            continue
        d3 = np.linalg.norm(xyz[i + 3] - xyz[i])
        d4 = np.linalg.norm(xyz[i + 4] - xyz[i])
        dih = _dihedral(xyz[i:i + 1], xyz[i + 1:i + 2], xyz[i + 2:i + 3], xyz[i + 3:i + 4])[0]
        if 4.5 <= d3 <= 5.9 and 5.5 <= d4 <= 6.9 and 30 <= dih <= 80:
            out.update(keys[i:i + 5].tolist())
    return out


def helix_fraction(atoms: Atoms) -> float:
    """Fraction of residues with a Cα that are helical."""
    n = int(np.sum(atoms.name == "CA"))
    return len(helix_residues(atoms)) / max(n, 1)


def helix_voxels(atoms: Atoms, shape: tuple, voxel_size: float, origin_A, radius_A: float = 2.0) -> np.ndarray:
    """Boolean grid ``[z, y, x]``: voxels within ``radius_A`` Å of an atom of a helical residue."""
    keys = helix_residues(atoms)
    sel = np.isin(atoms.res_key, list(keys)) if keys else np.zeros(len(atoms), bool)
    grid = np.zeros(shape, dtype=bool)
    if not sel.any():
        return grid
    p = np.rint((atoms.xyz[sel] - np.asarray(origin_A)) / voxel_size).astype(int)
    ok = (p >= 0).all(1) & (p[:, 0] < shape[2]) & (p[:, 1] < shape[1]) & (p[:, 2] < shape[0])
    grid[p[ok, 2], p[ok, 1], p[ok, 0]] = True
    dist = scipy.ndimage.distance_transform_edt(~grid) * voxel_size
    return dist <= radius_A
