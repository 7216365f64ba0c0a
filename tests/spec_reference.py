"""An independent implementation of ../shared/spec/level0.md for the mask, resize, 0.f and 0.g numbers.

Written straight from the spec's text with NumPy/SciPy in float64 and full complex FFTs, sharing no code with
gpuvalid: the real-map tests compare gpuvalid's numbers with these.  Slow and memory-hungry on purpose
(clarity over speed); only for the tests.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

PCTS = [2.5, 25, 50, 75, 97.5]


def ball(r: int) -> np.ndarray:
    g = np.arange(-r, r + 1)
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    return x * x + y * y + z * z <= r * r


def hard_mask(V: np.ndarray, t: float, ts: float) -> np.ndarray:
    """Components of V ≥ t (26-connected) with ≥ 10 % of the largest one's voxels, dilated by a ball of
    ceil(2 Å / Ts) voxels."""
    lab, n = ndimage.label(V >= t, structure=np.ones((3, 3, 3)))
    if n == 0:
        return np.zeros(V.shape, bool)
    sizes = np.bincount(lab.ravel())[1:]
    core = np.isin(lab, np.flatnonzero(sizes >= 0.1 * sizes.max()) + 1)
    r = max(1, math.ceil(2.0 / ts - 1e-9))
    return ndimage.binary_dilation(core, structure=ball(r))


def resize(V: np.ndarray, ts: float, R: float) -> tuple[np.ndarray, float]:
    """Spectrum crop to M = round(N·Ts/Ts') (Ts' = R/2), centred crop to 2·floor(N·Ts/Ts'/2); voxel N·Ts/M
    (averaged over the axes). Maps with R/2 ≤ Ts are only cropped to an even box."""
    tsp = R / 2.0
    if tsp <= ts:
        return V[tuple(slice(0, n - n % 2) for n in V.shape)].astype(np.float64), ts
    M = [int(math.floor(n * ts / tsp + 0.5)) for n in V.shape]
    E = [2 * int(math.floor(n * ts / tsp / 2)) for n in V.shape]
    F = np.fft.fftshift(np.fft.fftn(V.astype(np.float64)))
    src = tuple(slice(n // 2 - m // 2, n // 2 - m // 2 + m) for n, m in zip(V.shape, M))
    v = np.fft.ifftn(np.fft.ifftshift(F[src])).real * (np.prod(M) / np.prod(V.shape))
    crop = tuple(slice((m - e) // 2, (m - e) // 2 + e) for m, e in zip(M, E))
    return v[crop], float(np.mean([n * ts / m for n, m in zip(V.shape, M)]))


class Amplitudes:
    """Monogenic amplitude A = sqrt(|v0|² + Σ|vj|²), v0 = IFFT(S·F), vj = IFFT(Hj·S·F), Hj = −i·fj/|f|,
    with the Gaussian shell S = exp(−(|f| − f0)²/(2w²)) normalised to sum 1 (frequencies in Å⁻¹)."""

    def __init__(self, V: np.ndarray, ts: float):
        self.F = np.fft.fftn(V)
        f = np.meshgrid(*[np.fft.fftfreq(n, ts) for n in V.shape], indexing="ij")
        self.r = np.sqrt(sum(fi * fi for fi in f))
        inv = np.divide(1.0, self.r, out=np.zeros_like(self.r), where=self.r > 0)
        self.H = [-1j * fi * inv for fi in f]

    def __call__(self, f0: float, w: float) -> np.ndarray:
        S = np.exp(-(self.r - f0) ** 2 / (2 * w * w))
        SF = S / S.sum() * self.F
        tot = np.abs(np.fft.ifftn(SF)) ** 2
        for H in self.H:
            tot += np.abs(np.fft.ifftn(H * SF)) ** 2
        return np.sqrt(tot)


def locbfactor_percentiles(Vr: np.ndarray, ts: float, mask: np.ndarray, R: float) -> list[float]:
    """0.f: 10 shells from 1/15 to 1/R Å⁻¹, w = 4.8/(N·Ts), noise = 0.9 quantile of A over background voxels
    inside the inscribed sphere, per-voxel line of ln(A·A/(A + noise)) against f0²; B = 4·slope."""
    amp = Amplitudes(Vr, ts)
    N = min(Vr.shape)
    w = 4.8 / (N * ts)
    freqs = np.linspace(1 / 15, 1 / R, 10)
    g = np.ogrid[tuple(slice(0, n) for n in Vr.shape)]
    sphere = sum((g[i] - n / 2.0) ** 2 for i, n in enumerate(Vr.shape)) < (N / 2.0) ** 2
    bg = ~mask & sphere
    ys = []
    for f0 in freqs:
        A = amp(f0, w)[mask | bg]
        noise = np.quantile(A[bg[mask | bg]], 0.9)
        ys.append(np.log(A * A / (A + noise))[mask[mask | bg]])
    x = freqs ** 2
    Y = np.stack(ys)
    slope = ((x - x.mean())[:, None] * (Y - Y.mean(0))).sum(0) / ((x - x.mean()) ** 2).sum()
    return list(np.percentile(4 * slope, PCTS))


def occupancy_percentiles(Vr: np.ndarray, ts: float, mask: np.ndarray, R: float) -> list[float]:
    """0.g: w = 4.6/(N·Ts), max(1, int((fmax − fmin)/w)) shells from 1/20 to 1/R; per shell the 0.25 quantile
    q of A inside the mask; occupancy = mean over shells of (A ≥ q)."""
    amp = Amplitudes(Vr, ts)
    w = 4.6 / (min(Vr.shape) * ts)
    fmin, fmax = 1 / 20, 1 / R
    freqs = np.linspace(fmin, fmax, max(1, int((fmax - fmin) / w)))
    occ = np.zeros(int(mask.sum()))
    for f0 in freqs:
        A = amp(f0, w)[mask]
        occ += A >= np.quantile(A, 0.25)
    return list(np.percentile(occ / len(freqs), PCTS))
