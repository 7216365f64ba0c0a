"""Resolution filters, B-factor decay, spatially varying resolution, noise and mirroring.

All functions work on host float32 grids ``[z, y, x]`` with voxel size ``Ts`` Å and frequencies
``s`` in Å⁻¹.  "Resolution d" means the map carries signal up to ``1/d`` Å⁻¹: a raised-cosine
low-pass that is 1 below ``0.9/d`` and 0 above ``1.1/d``.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.ndimage

from .density import spatial_frequency


def lowpass_response(s: np.ndarray, resolution_A: float, edge: float = 0.1) -> np.ndarray:
    """Raised-cosine transfer function: 1 for ``s < (1-edge)/d``, 0 for ``s > (1+edge)/d``."""
    f0 = 1.0 / resolution_A
    lo, hi = (1 - edge) * f0, (1 + edge) * f0
    t = np.clip((s - lo) / (hi - lo), 0.0, 1.0)
    return 0.5 * (1 + np.cos(np.pi * t))


def lowpass(V: np.ndarray, voxel_size: float, resolution_A: float, bfactor_A2: float = 0.0) -> np.ndarray:
    """``V`` low-passed to ``resolution_A`` Å and multiplied by ``exp(-B s²/4)`` in Fourier space."""
    F = scipy.fft.rfftn(V)
    s = spatial_frequency(V.shape, voxel_size)
    F *= lowpass_response(s, resolution_A) * np.exp(-bfactor_A2 * s * s / 4.0)
    return scipy.fft.irfftn(F, s=V.shape).astype(np.float32)


def smooth_field(shape: tuple, rng: np.random.Generator, corr_vox: float) -> np.ndarray:
    """Smooth random field (Gaussian-filtered white noise), rescaled to [0, 1]."""
    g = scipy.ndimage.gaussian_filter(rng.normal(size=shape), corr_vox, mode="wrap")
    g -= g.min()
    return (g / max(g.max(), 1e-12)).astype(np.float32)


def local_resolution_field(shape: tuple, rng: np.random.Generator, voxel_size: float, lo_A: float, hi_A: float,
                           centre_weight: float | None = None) -> np.ndarray:
    """Return a smooth local-resolution map in [lo_A, hi_A] Å.

    The map is a random blend of a radial trend (best in the centre, as in most reconstructions) and a
    smooth random field with a 10–25 Å correlation length.
    """
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radial = np.sqrt(xx**2 + yy**2 + zz**2) / np.sqrt(3)
    corr = rng.uniform(10.0, 25.0) / voxel_size
    rnd = smooth_field(shape, rng, corr)
    w = rng.uniform(0, 1) if centre_weight is None else centre_weight
    u = w * radial + (1 - w) * rnd
    u = (u - u.min()) / max(float(np.ptp(u)), 1e-12)
    return (lo_A + (hi_A - lo_A) * u).astype(np.float32)


def anisotropic_frequency(shape: tuple, voxel_size: float, axis_xyz, factor: float) -> np.ndarray:
    """Effective |s| (Å⁻¹, ``rfftn`` half grid) of an anisotropic resolution.

    The resolution is ``factor`` times worse along the unit vector ``axis_xyz`` (x, y, z) than across it:
    ``sqrt(s² + (factor² − 1)·(s·u)²)``.
    """
    fz = np.fft.fftfreq(shape[0], voxel_size)[:, None, None]
    fy = np.fft.fftfreq(shape[1], voxel_size)[None, :, None]
    fx = np.fft.rfftfreq(shape[2], voxel_size)[None, None, :]
    u = np.asarray(axis_xyz, float) / np.linalg.norm(axis_xyz)
    su = fx * u[0] + fy * u[1] + fz * u[2]
    return np.sqrt(fz * fz + fy * fy + fx * fx + (factor * factor - 1.0) * su * su)


def blend_resolutions(V: np.ndarray, voxel_size: float, res_field: np.ndarray, n_levels: int = 12,
                      edge: float = 0.1, s_eff: np.ndarray | None = None) -> np.ndarray:
    """Map whose local resolution follows ``res_field`` (Å).

    Copies of ``V`` low-passed at levels spaced evenly in 1/d are mixed per voxel by linear interpolation
    in 1/d between the two nearest levels.  ``edge``: half-width of the raised-cosine edge relative to 1/d;
    ``s_eff``: the frequency to filter on (default |s|; :func:`anisotropic_frequency` for an anisotropic map).
    """
    lo, hi = float(res_field.min()), float(res_field.max())
    s = spatial_frequency(V.shape, voxel_size) if s_eff is None else s_eff
    if hi - lo < 1e-3:
        F = scipy.fft.rfftn(V) * lowpass_response(s, lo, edge)
        return scipy.fft.irfftn(F, s=V.shape).astype(np.float32)
    f_levels = np.linspace(1.0 / hi, 1.0 / lo, n_levels)  # ascending frequency
    F = scipy.fft.rfftn(V)
    f = 1.0 / res_field
    pos = np.clip((f - f_levels[0]) / (f_levels[1] - f_levels[0]), 0, n_levels - 1 - 1e-6)
    k0 = np.floor(pos).astype(int)
    t = (pos - k0).astype(np.float32)
    out = np.zeros(V.shape, dtype=np.float32)
    for k, fl in enumerate(f_levels):
        w = np.where(k0 == k, 1 - t, 0) + np.where(k0 + 1 == k, t, 0)
        if not w.any():
            continue
        copy = scipy.fft.irfftn(F * lowpass_response(s, 1.0 / fl, edge), s=V.shape).astype(np.float32)
        out += w * copy
    return out


def coloured_noise(shape: tuple, rng: np.random.Generator, voxel_size: float, sigma: float,
                   bfactor_A2: float = 0.0, nyquist_A: float | None = None) -> np.ndarray:
    """Gaussian noise of standard deviation ``sigma`` with a decaying, band-limited spectrum.

    The spectrum decays as ``exp(-B s²/4)`` and stops at ``1/nyquist_A`` (the band limit of a map recorded
    at voxel size ``nyquist_A/2``).
    """
    F = scipy.fft.rfftn(rng.normal(size=shape).astype(np.float32))
    s = spatial_frequency(shape, voxel_size)
    env = np.exp(-bfactor_A2 * s * s / 4.0)
    if nyquist_A is not None:
        env = env * (s <= 1.0 / nyquist_A)
    n = scipy.fft.irfftn(F * env, s=shape)
    return (n * (sigma / max(float(n.std()), 1e-12))).astype(np.float32)


def shaped_noise(signal: np.ndarray, rng: np.random.Generator, voxel_size: float, sigma: float,
                 n_bins: int = 40) -> np.ndarray:
    """Gaussian noise of standard deviation ``sigma`` shaped like ``signal``'s spectrum.

    Its radial amplitude spectrum follows that of ``signal`` (the noise of a reconstruction shares the
    map's envelope: CTF, B-factor).
    """
    S = np.abs(scipy.fft.rfftn(signal))
    s = spatial_frequency(signal.shape, voxel_size)
    edges = np.linspace(0.0, float(s.max()) + 1e-9, n_bins + 1)
    b = np.clip(np.digitize(s, edges) - 1, 0, n_bins - 1)
    prof = np.bincount(b.ravel(), S.ravel(), n_bins) / np.maximum(np.bincount(b.ravel(), None, n_bins), 1)
    F = scipy.fft.rfftn(rng.normal(size=signal.shape).astype(np.float32)) * prof[b]
    n = scipy.fft.irfftn(F, s=signal.shape)
    return (n * (sigma / max(float(n.std()), 1e-12))).astype(np.float32)


def bfactor(V: np.ndarray, voxel_size: float, bfactor_A2: float, limit_A: float | None = None) -> np.ndarray:
    """``V`` multiplied by ``exp(−B s²/4)`` in Fourier space (B < 0 sharpens).

    With ``limit_A`` the factor stops changing beyond ``1/limit_A`` Å⁻¹ (sharpening is followed by a
    low-pass in practice).
    """
    F = scipy.fft.rfftn(V)
    s = spatial_frequency(V.shape, voxel_size)
    if limit_A is not None:
        s = np.minimum(s, 1.0 / limit_A)
    F *= np.exp(-bfactor_A2 * s * s / 4.0)
    return scipy.fft.irfftn(F, s=V.shape).astype(np.float32)


def band_limit(V: np.ndarray, voxel_size: float, nyquist_A: float) -> np.ndarray:
    """Zero all frequencies above ``1/nyquist_A`` (what resampling a coarser map onto this grid does)."""
    F = scipy.fft.rfftn(V)
    F *= spatial_frequency(V.shape, voxel_size) <= 1.0 / nyquist_A
    return scipy.fft.irfftn(F, s=V.shape).astype(np.float32)


def mirror(V: np.ndarray, axis: int = 2) -> np.ndarray:
    """Mirror image (flip one axis; default x): a right-handed helix becomes left-handed."""
    return np.ascontiguousarray(np.flip(V, axis=axis))


def threshold_for_volume(V: np.ndarray, n_voxels: int) -> float:
    """Return the level ``t`` at which ``V ≥ t`` holds ``n_voxels`` voxels."""
    n_voxels = int(np.clip(n_voxels, 1, V.size))
    return float(np.partition(V.ravel(), V.size - n_voxels)[V.size - n_voxels])
