"""Guinier analysis: radial amplitude profile, straight-line fit of ln|F| against 1/d², sharpening.

- Shell index ``k = round(|f|·N)`` with ``f`` in cycles/voxel and ``|f| ≤ 0.5`` (``N`` the smallest box
  edge, so every shell is populated in non-cubic boxes; ``N`` is the box edge for cubic maps).
- ``lnF(k) = ln(mean |F|)`` over the shell (the mean *amplitude*, as the reference's numbers are) and
  ``x = 1/d² = (k / (N·Ts))²`` in Å⁻².
- The line ``lnF = a·x + b`` is fitted by least squares over shells with ``15 Å ≥ d ≥ R``; the B-factor is
  ``B = 4·a`` in Å² (negative for a map whose amplitudes decay, the reference's sign convention).
- Sharpening multiplies ``F`` by ``exp(−B·s²/4)`` (``s = |f|/Ts`` in Å⁻¹) on shells with ``d ≥ R`` and
  leaves higher shells unchanged.

Means over shells are over the full Fourier grid, computed on the ``rfftn`` half spectrum with the
Hermitian weights (columns ``0`` and ``N/2`` once, the others twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .backend import Backend

LOW_RES_LIMIT_A = 15.0


@dataclass
class GuinierProfile:
    """Radial amplitude profile: ``ln(mean |F|)`` per Fourier shell ``k = 1..kmax``.

    Each shell also carries ``x = 1/d²`` (Å⁻²) and its resolution ``d`` (Å); arrays are on the host.
    """

    k: np.ndarray          # shell indices 1..kmax (host)
    x: np.ndarray          # 1/d² in Å⁻²
    d: np.ndarray          # resolution of the shell in Å
    lnF: np.ndarray        # ln(mean |F|) per shell (NaN for an empty or zero shell)
    n_edge: int            # N used for the shell index
    voxel_size: float


@dataclass
class GuinierFit:
    """Guinier line ``lnF = a·x + b`` fitted over the shells with ``15 Å ≥ d ≥ R``.

    The slope ``a`` is in Å² and the B-factor is ``B = 4·a`` (Å², negative when amplitudes decay).
    """

    slope: float           # a, Å²
    intercept: float       # b
    bfactor: float         # B = 4·a, Å²
    fit_shells: int        # shells in 15 Å ≥ d ≥ R
    fit_mask: np.ndarray   # bool per profile shell


def _half_grids(be: Backend, shape: tuple, voxel_size: float):
    """|f| in cycles/voxel on the rfftn grid (scaled per axis) and the Hermitian weights."""
    xp = be.xp
    nz, ny, nx = shape
    fz = xp.asarray(np.fft.fftfreq(nz).astype(np.float32))[:, None, None]
    fy = xp.asarray(np.fft.fftfreq(ny).astype(np.float32))[None, :, None]
    fx = xp.asarray(np.fft.rfftfreq(nx).astype(np.float32))[None, None, :]
    r = xp.sqrt(fz * fz + fy * fy + fx * fx)
    wx = np.full(nx // 2 + 1, 2.0, dtype=np.float32)
    wx[0] = 1.0
    if nx % 2 == 0:
        wx[-1] = 1.0
    weights = xp.ascontiguousarray(xp.broadcast_to(xp.asarray(wx)[None, None, :], r.shape))
    return r, weights


def shell_index(be: Backend, shape: tuple, voxel_size: float):
    """Integer shell index ``round(|f|·N)`` on the half grid (−1 beyond |f| = 0.5) and ``N``."""
    xp = be.xp
    n_edge = int(min(shape))
    r, w = _half_grids(be, shape, voxel_size)
    k = xp.rint(r * n_edge).astype(xp.int64)
    k = xp.where(r <= 0.5 + 1e-7, k, -1)
    return k, w, n_edge


def radial_profile(be: Backend, Fh, shape: tuple, voxel_size: float, kmax: int | None = None) -> GuinierProfile:
    """``ln(mean |F|)`` per shell of the half spectrum ``Fh`` (``rfftn`` of a map of ``shape``)."""
    xp = be.xp
    k, w, n_edge = shell_index(be, shape, voxel_size)
    kmax = n_edge // 2 if kmax is None else int(kmax)
    valid = (k >= 1) & (k <= kmax)
    kv = k[valid]
    wv = w[valid]
    amp = xp.abs(Fh[valid]).astype(xp.float64)
    s = be.to_host(xp.bincount(kv, weights=amp * wv, minlength=kmax + 1))[1:kmax + 1]
    c = be.to_host(xp.bincount(kv, weights=wv.astype(xp.float64), minlength=kmax + 1))[1:kmax + 1]
    ks = np.arange(1, kmax + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(c > 0, s / np.where(c > 0, c, 1), np.nan)
        lnF = np.where(mean > 0, np.log(np.where(mean > 0, mean, 1)), np.nan)
    d = n_edge * voxel_size / ks
    return GuinierProfile(ks, 1.0 / d ** 2, d, lnF, n_edge, float(voxel_size))


def fit_line(profile: GuinierProfile, resolution: float, low_res: float = LOW_RES_LIMIT_A) -> GuinierFit:
    """Fit the least-squares line ``lnF = a·x + b`` over shells with ``low_res ≥ d ≥ R`` (Å).

    Raises
    ------
    ValueError
        When fewer than 3 shells with a finite ``lnF`` fall in that range.
    """
    tol = 1e-9
    m = (profile.d <= low_res + tol) & (profile.d >= resolution - tol) & np.isfinite(profile.lnF)
    n = int(m.sum())
    if n < 3:
        raise ValueError(f"only {n} Fourier shell(s) fall between {low_res:g} Å and the resolution "
                         f"{resolution:g} Å (box {profile.n_edge} × {profile.voxel_size:g} Å); "
                         "at least 3 are needed for the Guinier fit")
    a, b = np.polyfit(profile.x[m], profile.lnF[m], 1)
    return GuinierFit(float(a), float(b), float(4.0 * a), n, m)


def sharpen(be: Backend, Fh, shape: tuple, voxel_size: float, bfactor: float, resolution: float):
    """Half spectrum multiplied by ``exp(−B·s²/4)`` on shells with ``d ≥ R`` (returns a new array)."""
    xp = be.xp
    k, _w, n_edge = shell_index(be, shape, voxel_size)
    r, _ = _half_grids(be, shape, voxel_size)
    s2 = (r / voxel_size) ** 2                       # Å⁻² (|f| in cycles/voxel / Ts)
    kmax = int(np.floor(n_edge * voxel_size / resolution + 1e-9))   # d = N·Ts/k ≥ R
    apply = (k >= 0) & (k <= kmax)
    factor = xp.exp(xp.where(apply, -bfactor * s2 / 4.0, 0.0)).astype(xp.float32)   # exp only where applied
    return Fh * factor


def guinier(be: Backend, V, voxel_size: float, resolution: float):
    """Profile, fit, sharpened map (device float32) and the sharpened profile of map ``V``."""
    shape = tuple(V.shape)
    Fh = be.rfftn(V.astype(be.xp.float32))
    prof = radial_profile(be, Fh, shape, voxel_size)
    fit = fit_line(prof, resolution)
    Fs = sharpen(be, Fh, shape, voxel_size, fit.bfactor, resolution)
    sharp_prof = radial_profile(be, Fs, shape, voxel_size)
    # Fs is not needed after: the inverse runs in place on it (one spectrum less)
    sharp = be.irfftn(Fs, s=shape, overwrite_x=True).astype(be.xp.float32)
    return prof, fit, sharp, sharp_prof
