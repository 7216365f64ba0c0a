"""Whole simulated maps with their ground truth, for the local-resolution and hand tasks.

A map is made from one atomic model: a random proper rotation, a crop to the atoms within
``crop_radius_A`` of a random Cα (keeps boxes small), Gaussian atoms at ``voxel_size`` Å, B-factor
decay, the resolution filter (uniform, or spatially varying for the local-resolution task), coloured
noise, and the band limit of a random "recording" voxel size (what resampling a coarser map onto the
working grid leaves).  The contour threshold is set so the mask holds about 1.0–1.6× the molecular
volume (≈ 17 Å³ per non-hydrogen atom).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import filters
from .density import atom_density, random_rotation
from .helix import helix_voxels
from .structure import Atoms

VOLUME_PER_ATOM_A3 = 17.0


@dataclass
class SimMap:
    """One simulated map: density ``[z, y, x]`` at ``voxel_size`` Å, its contour ``threshold``, the
    molecule ``mask`` (``V ≥ t``), the true ``local_res`` map (Å) and the ``helix`` voxels (or None)."""

    V: np.ndarray
    voxel_size: float
    threshold: float
    mask: np.ndarray
    local_res: np.ndarray | None = None
    helix: np.ndarray | None = None
    resolution: float = 0.0
    params: dict | None = None


def crop_atoms(atoms: Atoms, rng: np.random.Generator, radius_A: float | None) -> Atoms:
    """Atoms within ``radius_A`` of a random Cα (all atoms when ``radius_A`` is None or larger)."""
    if radius_A is None:
        return atoms
    ca = np.flatnonzero(atoms.name == "CA")
    if ca.size == 0:
        ca = np.arange(len(atoms))
    c = atoms.xyz[rng.choice(ca)]
    keep = np.linalg.norm(atoms.xyz - c, axis=1) <= radius_A
    return atoms.subset(keep)


def _finish(V, rng, voxel_size, n_atoms, noise_k, noise_b, nyq):
    signal = V.copy()
    t0 = filters.threshold_for_volume(signal, int(n_atoms * VOLUME_PER_ATOM_A3 / voxel_size**3))
    sd = float(signal[signal >= t0].std())
    V = V + filters.coloured_noise(V.shape, rng, voxel_size, noise_k * sd, noise_b, nyquist_A=nyq)
    V = filters.band_limit(V, voxel_size, nyq)
    n_mask = int(n_atoms * VOLUME_PER_ATOM_A3 * rng.uniform(1.0, 1.6) / voxel_size**3)
    t = filters.threshold_for_volume(V, n_mask)
    return V.astype(np.float32), t


def simulate_locres(atoms: Atoms, rng: np.random.Generator, voxel_size: float = 1.0,
                    res_range=(2.0, 13.0), crop_radius_A: float | None = 30.0, pad_A: float = 8.0) -> SimMap:
    """Map with spatially varying local resolution inside ``res_range`` Å (ground truth in ``local_res``)."""
    a = crop_atoms(atoms.transformed(random_rotation(rng)), rng, crop_radius_A)
    lo = rng.uniform(res_range[0], res_range[1] - 0.5)
    hi = min(res_range[1], lo + rng.uniform(0.3, 6.0))
    bfac = rng.uniform(0.0, 40.0)
    V, origin = atom_density(a, voxel_size, bfactor_A2=bfac, pad_A=pad_A)
    field = filters.local_resolution_field(V.shape, rng, voxel_size, lo, hi)
    V = filters.blend_resolutions(V, voxel_size, field)
    rec_vox = rng.uniform(min(0.8, lo / 2.2), max(0.8, min(lo / 2.2, 3.5)))
    nyq = max(2 * rec_vox, 2 * voxel_size)
    noise_k, noise_b = rng.uniform(0.1, 0.7), rng.uniform(0.0, 50.0)
    V, t = _finish(V, rng, voxel_size, len(a), noise_k, noise_b, nyq)
    return SimMap(V, voxel_size, t, V >= t, local_res=field, resolution=float(np.median(field)),
                  params=dict(lo=lo, hi=hi, bfactor=bfac, noise_k=noise_k, noise_b=noise_b, nyquist=nyq))


def simulate_uniform(atoms: Atoms, rng: np.random.Generator, resolution_A: float, voxel_size: float = 1.0,
                     crop_radius_A: float | None = 30.0, noise_k: float | None = None,
                     with_helix: bool = True, pad_A: float = 8.0) -> SimMap:
    """Map at one resolution (for the hand task), with the helix voxels of the (rotated, cropped) model."""
    a = crop_atoms(atoms.transformed(random_rotation(rng)), rng, crop_radius_A)
    bfac = rng.uniform(0.0, 40.0)
    V, origin = atom_density(a, voxel_size, bfactor_A2=bfac, pad_A=pad_A)
    V = filters.lowpass(V, voxel_size, resolution_A)
    nyq = max(2 * voxel_size, 2 * rng.uniform(min(0.8, resolution_A / 2.2), max(0.8, resolution_A / 2.2)))
    noise_k = rng.uniform(0.1, 0.6) if noise_k is None else noise_k
    V, t = _finish(V, rng, voxel_size, len(a), noise_k, rng.uniform(0.0, 50.0), nyq)
    helix = helix_voxels(a, V.shape, voxel_size, origin) if with_helix else None
    return SimMap(V, voxel_size, t, V >= t, helix=helix, resolution=resolution_A,
                  params=dict(bfactor=bfac, noise_k=noise_k, nyquist=nyq))
