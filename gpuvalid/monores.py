"""Monogenic (non-learned) local resolution, after the MonoRes idea (Vilas et al., Structure 2018).

For shell frequencies ``f`` (Å⁻¹) from ``1/low_A`` up to Nyquist ``1/(2·Ts)``, the local amplitude
``A_f(x)`` of the map in a Gaussian shell (the spiral-amplitude engine, :class:`gpuvalid.spiral.SpiralEngine`)
is compared with the noise level ``q_f`` = the 0.95 quantile of ``A_f`` over background voxels (outside the
mask, inside the inscribed sphere, and at least ``1/(π·w)`` Å from the mask: a Gaussian shell of width ``w``
Å⁻¹ has a spatial envelope of σ = 1/(2π·w) Å, so the molecule's own amplitude leaks that far into the
solvent and would otherwise raise the noise level; the margin is halved until enough voxels remain).
Sweeping from low to high frequency, a voxel's local resolution is
``1/f`` at the highest frequency reached while its amplitude stays above the noise level; one shell below
the noise is tolerated (two consecutive ones end the sweep), which keeps single noisy shells from stopping
it early.  Voxels never above the noise get ``low_A``.

Works on any backend (NumPy or CuPy arrays); returns a host map in Å, NaN outside the mask.
"""

from __future__ import annotations

import numpy as np

from .errors import NotMeasurable
from .spiral import SpiralEngine

NOISE_QUANTILE = 0.95
LOW_A = 20.0
N_SHELLS = 30
MIN_BACKGROUND = 200


def shell_frequencies(voxel_size: float, shape: tuple, low_A: float = LOW_A, n: int = N_SHELLS):
    """Frequencies (Å⁻¹) linearly spaced from ``1/low_A`` to Nyquist, and the Gaussian shell width:
    the larger of the step and 1.5/(N·Ts) (a shell must hold several Fourier voxels)."""
    f_hi = 0.5 / voxel_size
    f_lo = min(1.0 / low_A, 0.5 * f_hi)
    f = np.linspace(f_lo, f_hi, n)
    width = max(float(f[1] - f[0]), 1.5 / (min(shape) * voxel_size))
    return f, width


def noise_region(be, mask, voxel_size: float, margin_A: float):
    """Flat indices of the background voxels used for the noise level, and the margin (Å) kept from the
    mask: the inscribed-sphere background farther than ``margin_A`` from the mask, halving the margin
    (down to 0) until at least ``MIN_BACKGROUND`` voxels remain."""
    from .analyses.locbfactor import background_sphere_index

    bg = background_sphere_index(be, mask)
    if int(bg.size) < MIN_BACKGROUND:
        raise NotMeasurable(f"only {int(bg.size)} background voxels outside the mask: too few to estimate the "
                            "noise level of the monogenic local resolution")
    dist = be.ndimage.distance_transform_edt(~mask, sampling=float(voxel_size)).reshape(-1)[bg]
    margin = float(margin_A)
    while margin > 0.5 * voxel_size:
        far = bg[dist >= margin]
        if int(far.size) >= MIN_BACKGROUND:
            return far, margin
        margin *= 0.5
    return bg, 0.0


def monogenic_local_resolution(be, V, voxel_size: float, mask, low_A: float = LOW_A, n_shells: int = N_SHELLS,
                               quantile: float = NOISE_QUANTILE, return_info: bool = False):
    """Local resolution (Å) at the ``mask`` voxels of ``V`` (host float32, NaN elsewhere).

    ``V`` and ``mask`` may be host or device arrays of ``be``.  With ``return_info`` also returns the list
    of ``(f0, noise level)`` per shell.
    """
    xp = be.xp
    V = be.asarray(V, dtype=xp.float32)
    mask = be.asarray(mask).astype(bool)
    freqs, width = shell_frequencies(voxel_size, V.shape, low_A, n_shells)
    bg, _margin = noise_region(be, mask, voxel_size, 1.0 / (np.pi * width))
    eng = SpiralEngine(be, V, voxel_size)
    res = xp.full(V.shape, float(1.0 / freqs[0]), dtype=xp.float32)
    misses = xp.zeros(V.shape, dtype=xp.int8)
    alive = mask.copy()
    info = []
    for f0, A in eng.amplitudes(freqs, width):
        noise = be.scalar(xp.quantile(A.reshape(-1)[bg], quantile))
        info.append((float(f0), noise))
        above = A > noise
        hit = alive & above
        res = xp.where(hit, xp.float32(1.0 / f0), res)
        misses = xp.where(hit, 0, misses + (alive & ~above).astype(xp.int8))
        alive = alive & (misses < 2)
        if not bool(be.to_host(alive.any())):
            break
    out = be.to_host(xp.where(mask, res, xp.float32(np.nan))).astype(np.float32)
    return (out, info) if return_info else out
