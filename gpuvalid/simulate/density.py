"""Density of an atomic model on a grid: Gaussian atoms weighted by atomic number.

Each atom contributes ``Z · exp(-|r - r_i|² / (2σ²))`` with σ = ``ATOM_SIGMA_A`` Å (about the width of
an atom's electrostatic potential), plus an isotropic B-factor blur.  Atoms are spread onto the grid by
trilinear weights and the Gaussian is applied in Fourier space, so the cost is one FFT whatever the atom
count.  Grids are ``[z, y, x]`` with voxel size ``Ts`` Å; atom ``x, y, z`` coordinates are in Å.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from .structure import Atoms

ATOM_SIGMA_A = 0.6


def box_for(atoms: Atoms, voxel_size: float, pad_A: float = 10.0, multiple: int = 4) -> tuple[tuple, np.ndarray]:
    """Grid shape ``(nz, ny, nx)`` covering the atoms plus ``pad_A`` Å, and the Å origin (x, y, z) of voxel 0."""
    lo = atoms.xyz.min(0) - pad_A
    hi = atoms.xyz.max(0) + pad_A
    n = np.ceil((hi - lo) / voxel_size).astype(int)
    n = ((n + multiple - 1) // multiple) * multiple
    return (int(n[2]), int(n[1]), int(n[0])), lo


def splat(atoms: Atoms, shape: tuple, voxel_size: float, origin_A) -> np.ndarray:
    """Atomic numbers spread on the grid with trilinear weights (sum preserved for atoms inside)."""
    p = (atoms.xyz - np.asarray(origin_A)) / voxel_size  # x, y, z in voxels
    i0 = np.floor(p).astype(int)
    f = p - i0
    out = np.zeros(shape, dtype=np.float64)
    nz, ny, nx = shape
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                w = (atoms.z * np.where(dx, f[:, 0], 1 - f[:, 0]) * np.where(dy, f[:, 1], 1 - f[:, 1])
                     * np.where(dz, f[:, 2], 1 - f[:, 2]))
                ix, iy, iz = i0[:, 0] + dx, i0[:, 1] + dy, i0[:, 2] + dz
                ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny) & (iz >= 0) & (iz < nz)
                np.add.at(out, (iz[ok], iy[ok], ix[ok]), w[ok])
    return out


def spatial_frequency(shape: tuple, voxel_size: float) -> np.ndarray:
    """|s| in Å⁻¹ on the ``rfftn`` half grid of ``shape``."""
    fz = np.fft.fftfreq(shape[0], voxel_size)[:, None, None]
    fy = np.fft.fftfreq(shape[1], voxel_size)[None, :, None]
    fx = np.fft.rfftfreq(shape[2], voxel_size)[None, None, :]
    return np.sqrt(fz * fz + fy * fy + fx * fx)


def atom_density(atoms: Atoms, voxel_size: float, shape: tuple | None = None, origin_A=None,
                 bfactor_A2: float = 0.0, pad_A: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Density (float32 ``[z, y, x]``) of Gaussian atoms (σ = 0.6 Å) blurred by ``exp(-B s²/4)``.

    Returns ``(density, origin_A)``; the grid is chosen by :func:`box_for` unless given.  The
    trilinear spreading itself blurs by about one voxel, which its Fourier transform (a sinc²)
    corrects up to 0.9·Nyquist.
    """
    if shape is None:
        shape, origin_A = box_for(atoms, voxel_size, pad_A)
    grid = splat(atoms, shape, voxel_size, origin_A)
    F = scipy.fft.rfftn(grid)
    s = spatial_frequency(shape, voxel_size)
    gauss = np.exp(-2 * np.pi**2 * ATOM_SIGMA_A**2 * s * s - bfactor_A2 * s * s / 4.0)
    # undo the trilinear kernel (sinc² per axis), limited to avoid blowing up near Nyquist
    fz = np.fft.fftfreq(shape[0])[:, None, None]
    fy = np.fft.fftfreq(shape[1])[None, :, None]
    fx = np.fft.rfftfreq(shape[2])[None, None, :]
    tri = (np.sinc(fz) ** 2) * (np.sinc(fy) ** 2) * (np.sinc(fx) ** 2)
    F *= gauss / np.maximum(tri, 0.2)
    return scipy.fft.irfftn(F, s=shape).astype(np.float32), np.asarray(origin_A, dtype=float)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Return a uniformly random proper rotation matrix (det +1: the hand is kept)."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    R = np.array([[a*a + b*b - c*c - d*d, 2*(b*c - a*d), 2*(b*d + a*c)],
                  [2*(b*c + a*d), a*a - b*b + c*c - d*d, 2*(c*d - a*b)],
                  [2*(b*d - a*c), 2*(c*d + a*b), a*a - b*b - c*c + d*d]])
    return R
