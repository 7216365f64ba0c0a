"""A direct implementation of the reference LocBfactor algorithm, for benchmark comparison only.

Written from the spec (not from the reference's source): full complex FFT of the map (complex128), and for
each shell four complex inverse FFTs — ``v0 = IFFT(S·F)`` and ``v_j = IFFT(H_j·S·F)`` with
``H_j = −i·f_j/|f|`` on the plain ``fftfreq`` grid (so the Nyquist plane keeps ``f_j = −0.5/Ts``, as the
reference does) — then ``A = sqrt(Σ|v|²)``.  All shells' weighted log amplitudes are kept in memory and
fitted at the end, as the reference does.  FFTs use ``scipy.fft`` with all cores, like gpuvalid's CPU
path, so the comparison is on the same cores.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.fft as sfft


class ReferenceSpiral:
    def __init__(self, V, ts: float):
        self.F = sfft.fftn(np.asarray(V, dtype=np.float64), workers=-1)
        fz, fy, fx = np.meshgrid(*[np.fft.fftfreq(n, ts) for n in V.shape], indexing="ij")
        self.r = np.sqrt(fz ** 2 + fy ** 2 + fx ** 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(self.r > 0, 1.0 / self.r, 0.0)
        self.H = [-1j * f * inv for f in (fz, fy, fx)]

    def amplitude(self, f0: float, w: float) -> np.ndarray:
        S = np.exp(-(self.r - f0) ** 2 / (2 * w * w))
        S /= S.sum()
        SF = S * self.F
        v = sfft.ifftn(SF, workers=-1)
        total = v.real ** 2 + v.imag ** 2
        for H in self.H:
            v = sfft.ifftn(H * SF, workers=-1)
            total += v.real ** 2 + v.imag ** 2
        return np.sqrt(total)


def reference_locbfactor(V, ts: float, mask: np.ndarray, resolution: float, n_shells: int = 10,
                         time_budget_s: float | None = None):
    """Local B map (Å²) by the reference algorithm, and ``(seconds, shells_timed, extrapolated)``.

    With ``time_budget_s``, stop after the shell that exceeds the budget and extrapolate the remaining
    shells' time from the mean per-shell time (the B map is then None).
    """
    t0 = time.perf_counter()
    eng = ReferenceSpiral(V, ts)
    t_setup = time.perf_counter() - t0
    freqs = np.linspace(1 / 15, 1 / resolution, n_shells)
    w = 4.8 / (min(V.shape) * ts)
    c = [n / 2 for n in V.shape]
    g = np.ogrid[tuple(slice(0, n) for n in V.shape)]
    sphere = sum((g[i] - c[i]) ** 2 for i in range(3)) < (min(V.shape) / 2) ** 2
    bg = ~mask & sphere
    logs, t_shells = [], []
    for f0 in freqs:
        ts0 = time.perf_counter()
        A = eng.amplitude(f0, w)
        noise = np.quantile(A[bg], 0.9)
        logs.append(np.log(A * A / (A + noise)))
        t_shells.append(time.perf_counter() - ts0)
        if time_budget_s is not None and t_setup + sum(t_shells) > time_budget_s and len(logs) < n_shells:
            total = t_setup + np.mean(t_shells) * n_shells
            return None, (total, len(logs), True)
    ts0 = time.perf_counter()
    Y = np.stack(logs)
    x = freqs ** 2
    xm = x - x.mean()
    slope = np.tensordot(xm, Y - Y.mean(axis=0), axes=1) / (xm ** 2).sum()
    t_fit = time.perf_counter() - ts0
    return 4 * slope, (t_setup + sum(t_shells) + t_fit, n_shells, False)
