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
import scipy.ndimage

from . import filters
from .density import ATOM_SIGMA_A, atom_density, random_rotation
from .helix import helix_voxels
from .structure import Atoms

VOLUME_PER_ATOM_A3 = 17.0
ATOM_B_A2 = 8.0 * np.pi**2 * ATOM_SIGMA_A**2   # ≈ 28.4 Å²: the Gaussian atom as a B-factor, exp(−B s²/4)
SHARPEN_FRACTION = (0.6, 1.0)                   # fraction of the envelope's B taken out by ``sharpen``


@dataclass
class SimMap:
    """One simulated map with its ground truth.

    Density ``[z, y, x]`` at ``voxel_size`` Å, its contour ``threshold``, the molecule ``mask``
    (``V ≥ t``), the true ``local_res`` map (Å) and the ``helix`` voxels (or None).
    """

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


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def deposit_like(V: np.ndarray, signal: np.ndarray, rng: np.random.Generator, voxel_size: float, lo_A: float,
                 n_atoms: int) -> tuple[np.ndarray, dict]:
    """Apply post-processing as in deposited maps, each step at random.

    The steps: a global B-factor (sharpening to −120 Å² or blurring to +50 Å², frozen beyond ``1/lo_A``),
    a low-pass at the best local resolution ``lo_A``, a density offset, and a mask (zero outside the
    molecule dilated by 3–8 Å, with or without a 2–6 Å raised-cosine edge) or solvent flattening (solvent
    pulled towards its mean).  None of these moves the local resolution (the low-pass is at the finest one).
    Returns ``(V, params)`` with the steps taken and their values.
    """
    p: dict = {}
    if rng.random() < 0.8:
        p["post_bfactor"] = float(rng.uniform(-120.0, 50.0))
        V = filters.bfactor(V, voxel_size, p["post_bfactor"], limit_A=lo_A)
    if rng.random() < 0.6:
        p["post_lowpass"] = float(lo_A * rng.uniform(0.95, 1.0))
        V = filters.lowpass(V, voxel_size, p["post_lowpass"])
    t0 = filters.threshold_for_volume(signal, int(n_atoms * VOLUME_PER_ATOM_A3 / voxel_size**3))
    mol = signal >= t0
    sd = float(V[mol].std())
    if rng.random() < 0.4:
        p["offset"] = float(rng.uniform(-0.3, 0.3) * sd)
        V = V + p["offset"]
    u = rng.random()
    if u < 0.45:
        r = rng.uniform(3.0, 8.0)
        dist = scipy.ndimage.distance_transform_edt(~mol, sampling=voxel_size)
        e = rng.uniform(2.0, 6.0) if rng.random() < 0.5 else 0.0   # raised-cosine soft edge (Å)
        w = (dist <= r).astype(np.float32) if e == 0.0 else \
            (0.5 + 0.5 * np.cos(np.pi * np.clip((dist - r) / e, 0.0, 1.0))).astype(np.float32)
        p["mask_A"], p["mask_edge_A"] = float(r), float(e)
        V = V * w
    elif u < 0.6:
        keep = scipy.ndimage.distance_transform_edt(~mol, sampling=voxel_size) <= rng.uniform(3.0, 8.0)
        mean = float(V[~keep].mean()) if (~keep).any() else 0.0
        p["flatten"] = float(rng.uniform(0.0, 0.3))
        V = np.where(keep, V, mean + p["flatten"] * (V - mean))
    return V.astype(np.float32), p


def sharpen_envelope(V0: np.ndarray, rng: np.random.Generator, voxel_size: float, bfactor_A2: float,
                     finest_A: float) -> tuple[np.ndarray, float]:
    """Atom density ``V0`` with its envelope flattened, as post-processing sharpening does, up to ``finest_A``.

    The simulated atoms carry the envelope ``exp(−2π²σ²s² − B s²/4) = exp(−B_env s²/4)`` with
    ``B_env = 8π²σ² + B`` (σ = 0.6 Å: 28.4 Å², plus the map's B of 0–40 Å²).  At s = 1/d it is
    ``exp(−B_env/(4d²))``: 0.17·exp(−B/16) at 2 Å and 0.04·exp(−B/9) at 1.5 Å, so with noise added
    relative to the signal's σ (carried by the low frequencies) the detail of a map labelled 1.5–2.5 Å
    is weak.  A deposited map at that resolution has, by the FSC definition of d, signal above noise up
    to 1/d, and it is usually deposited sharpened (its spectrum flattened up to about 1/d).  So the map
    changes, not the label: the envelope is divided out by ``exp(+f·B_env s²/4)`` for
    s ≤ 1/``finest_A`` Å⁻¹ (frozen beyond, where the resolution filter cuts), with ``f`` drawn in
    ``SHARPEN_FRACTION`` (under- to full compensation, as sharpening B-factors vary).  Applied to the
    signal before the resolution filter and the noise, so the noise level stays relative to the sharpened
    signal.  Returns ``(V, f)``.  (Used to test sharpened inputs and as a training experiment: the
    shipped fine model is trained unsharpened, which measured as well on sharpened held-out maps.)
    """
    f = float(rng.uniform(*SHARPEN_FRACTION))
    return filters.bfactor(V0, voxel_size, -f * (ATOM_B_A2 + bfactor_A2), limit_A=finest_A), f


def simulate_locres(atoms: Atoms, rng: np.random.Generator, voxel_size: float = 1.0,
                    res_range=(2.0, 13.0), crop_radius_A: float | None = 30.0, pad_A: float = 8.0,
                    deposit: bool = False, sharpen: bool = False, log_res: bool = False) -> SimMap:
    """Map with spatially varying local resolution inside ``res_range`` Å (ground truth in ``local_res``).

    With ``deposit``, the map also looks like a deposited one: a softer resolution edge (10–30 % of 1/d),
    anisotropy (30 % of maps: resolution 1.1–1.5× worse along a random axis; the truth is then the
    geometric mean over directions, d·a^(1/3)), noise shaped like the map's own spectrum (half of the
    maps) at 0.1–1.2 of the signal's σ, and :func:`deposit_like` post-processing.  With ``sharpen`` (the
    fine model's data), the atoms' envelope is flattened up to the finest resolution before the filter and
    the noise (:func:`sharpen_envelope`).  ``log_res``: the best resolution log-uniform and the spread
    5–80 % of it, as with ``deposit`` (more maps, and more voxels, at the fine end).  The recording voxel size
    is at most ``d_min/2.2`` (a map cannot be finer than its Nyquist limit; this only bites below 1.76 Å, so
    maps from 2 Å on are unchanged).
    """
    a = crop_atoms(atoms.transformed(random_rotation(rng)), rng, crop_radius_A)
    if deposit or log_res:   # log-uniform best resolution, spread 5–80 % of it (as many maps at 3 Å as at 10 Å)
        lo = float(np.exp(rng.uniform(np.log(res_range[0]), np.log(res_range[1] / 1.05))))
        hi = min(res_range[1], lo * rng.uniform(1.05, 1.8))
    else:
        lo = rng.uniform(res_range[0], res_range[1] - 0.5)
        hi = min(res_range[1], lo + rng.uniform(0.3, 6.0))
    bfac = rng.uniform(0.0, 40.0)
    V0, origin = atom_density(a, voxel_size, bfactor_A2=bfac, pad_A=pad_A)
    field = filters.local_resolution_field(V0.shape, rng, voxel_size, lo, hi)
    params = dict(lo=lo, hi=hi, bfactor=bfac)
    rec_vox = min(rng.uniform(min(0.8, lo / 2.2), max(0.8, min(lo / 2.2, 3.5))), lo / 2.2)
    nyq = max(2 * rec_vox, 2 * voxel_size)
    if sharpen:
        V0, params["sharpen_fraction"] = sharpen_envelope(V0, rng, voxel_size, bfac, lo)
    if not deposit:
        V = filters.blend_resolutions(V0, voxel_size, field)
        noise_k, noise_b = rng.uniform(0.1, 0.7), rng.uniform(0.0, 50.0)
        V, t = _finish(V, rng, voxel_size, len(a), noise_k, noise_b, nyq)
        params.update(noise_k=noise_k, noise_b=noise_b, nyquist=nyq)
        return SimMap(V, voxel_size, t, V >= t, local_res=field, resolution=float(np.median(field)), params=params)
    edge = float(rng.uniform(0.1, 0.3))
    lo_cut = lo   # finest resolution across any direction (the post-processing low-pass keeps it)
    s_eff = None
    if rng.random() < 0.3:
        params["aniso"] = float(rng.uniform(1.1, 1.5))
        s_eff = filters.anisotropic_frequency(V0.shape, voxel_size, _random_unit(rng), params["aniso"])
        field = field * params["aniso"] ** (1.0 / 3.0)
        params.update(lo=lo * params["aniso"] ** (1.0 / 3.0), hi=hi * params["aniso"] ** (1.0 / 3.0))
    # the blend uses the per-axis resolution field/a^(1/3) across the axis, a·that along it
    V = filters.blend_resolutions(V0, voxel_size, field / params.get("aniso", 1.0) ** (1.0 / 3.0), edge=edge,
                                  s_eff=s_eff)
    signal = V.copy()
    t0 = filters.threshold_for_volume(signal, int(len(a) * VOLUME_PER_ATOM_A3 / voxel_size**3))
    sd = float(signal[signal >= t0].std())
    noise_k = float(rng.uniform(0.1, 1.2))
    if rng.random() < 0.5:
        V = V + filters.shaped_noise(V0, rng, voxel_size, noise_k * sd)
        params["noise"] = "shaped"
    else:
        V = V + filters.coloured_noise(V.shape, rng, voxel_size, noise_k * sd, rng.uniform(0.0, 50.0))
        params["noise"] = "coloured"
    V = filters.band_limit(V, voxel_size, nyq)
    V, post = deposit_like(V, signal, rng, voxel_size, lo_cut, len(a))
    params.update(post, edge=edge, noise_k=noise_k, nyquist=nyq)
    n_mask = int(len(a) * VOLUME_PER_ATOM_A3 * rng.uniform(1.0, 1.6) / voxel_size**3)
    t = filters.threshold_for_volume(V, n_mask)
    return SimMap(V, voxel_size, t, V >= t, local_res=field.astype(np.float32), resolution=float(np.median(field)),
                  params=params)


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
