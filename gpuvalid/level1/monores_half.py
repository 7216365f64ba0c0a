"""1.e Local resolution by the monogenic signal, half-map mode (after MonoRes, Vilas et al. 2018).

Signal ``V = (h1 + h2)/2``, noise ``N = (h1 − h2)/2`` (both carry the same noise power).  For resolutions
``d`` from ``start = max(10, 5·R)`` Å down to the Nyquist limit ``2·Ts`` in 0.5 Å steps, with ``fd = Ts/d``
the step's digital frequency (cycles/voxel):

1. high-pass both spectra with ``H(r) = 0`` for ``r < fd − 0.02``, a raised cosine up to 1 at ``r = fd``,
   1 beyond (``r = |f|`` in cycles/voxel);
2. monogenic amplitude ``A = √(v0² + vx² + vy² + vz²)`` of each high-passed map, with the Riesz filters
   of :mod:`gpuvalid.spiral` (``u_j = f_j/|f|``, 0 on the Nyquist plane of axis ``j``): ``v0 = IFFT(H·F)``,
   ``v_j = IFFT(−i·u_j·H·F)``, each a complex-to-real transform of the half spectrum (the maps are real);
3. low-pass the amplitude (1 below ``fd``, raised cosine to 0 at ``fd + 0.02``): its envelope at the scale
   of the step;
4. the noise level is the exact 0.95 quantile (linear interpolation) of the noise amplitude over the mask
   voxels; a mask voxel passes when its signal amplitude is above it.

Sweeping from coarse to fine, a voxel takes the resolution of its last pass and leaves the sweep after two
consecutive failures (one failure is tolerated).  A voxel that never passes keeps ``start`` (the cap,
counted).  The map is then smoothed with a Gaussian of σ = 3 voxels inside the mask (normalised
convolution: ``G(R·m)/G(m)``, so the outside does not bleed in).  Percentiles are exact percentiles of the
voxel values.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from ..errors import NotMeasurable
from ..monores import TwoFailureSweep
from ..spiral import _slabs, frequency_axes, quantile_at

if TYPE_CHECKING:
    from ..backend import Backend

STEP_A = 0.5
NOISE_QUANTILE = 0.95
TRANSITION = 0.02          # cycles/voxel, the raised-cosine edges of the high-pass and amplitude low-pass
SMOOTH_SIGMA = 3.0         # voxels
START_MIN_A = 10.0


SLAB_ELEMENTS = 2 ** 22    # elements per z slab of :func:`radial_raised_cosine`


def raised_cosine_up(r, lo: float, hi: float, xp):
    """0 below ``lo``, ``½(1 − cos(π(r − lo)/(hi − lo)))`` between, 1 above ``hi`` (float32), in one array.

    ``r`` is float32; the arithmetic is in the type that ``r − lo`` takes (float64 when ``lo`` is a NumPy
    float64, as the sweeps' resolutions are), each step in place.
    """
    t = r - lo
    t /= max(hi - lo, 1e-9)
    xp.clip(t, 0.0, 1.0, out=t)
    t *= np.pi
    xp.cos(t, out=t)
    t *= 0.5
    xp.subtract(0.5, t, out=t)
    return t.astype(xp.float32, copy=False)


def radial_raised_cosine(f, lo: float, hi: float, xp):
    """Return :func:`raised_cosine_up` of ``|f|`` on the grid the broadcastable axes ``f = (fz, fy, fx)`` span.

    In z slabs of :data:`SLAB_ELEMENTS`, ``|f|`` made per slab: the float32 result and one slab's temporaries,
    no grid of ``|f|`` or of the (float64) arithmetic; the same numbers as in one piece.
    """
    fz, fy, fx = f
    shape = (fz.shape[0], fy.shape[1], fx.shape[2])
    slabs = _slabs(shape, SLAB_ELEMENTS)
    if len(slabs) == 1:
        return raised_cosine_up(_radius(fz, fy, fx, xp), lo, hi, xp)
    out = xp.empty(shape, dtype=xp.float32)
    for sl in slabs:
        out[sl] = raised_cosine_up(_radius(fz[sl], fy, fx, xp), lo, hi, xp)
    return out


def _radius(fz, fy, fx, xp):
    """``|f| = √(f_z² + f_y² + f_x²)`` (float32 for float32 components; broadcast or gathered alike)."""
    return xp.sqrt(fz * fz + fy * fy + fx * fx)


def _inverse(r, xp):
    """``1/r`` (float32), 0 where ``r`` is 0: the Riesz factors' ``1/|f|``."""
    return xp.where(r > 0, 1.0 / xp.maximum(r, xp.float32(1e-12)), xp.float32(0.0)).astype(xp.float32, copy=False)


def _one_minus(a, xp):
    """``1 − a`` in place."""
    return xp.subtract(1.0, a, out=a)


class HalfMonogenic:
    """Half spectra (the ``rfftn`` grid) of ``V = (h1+h2)/2`` and ``N = (h1−h2)/2``, and the frequency geometry.

    ``r`` is ``|f|`` in cycles/voxel on the half grid (made on use) and ``inv_r`` its inverse (0 at the origin);
    :meth:`unit` gives the unit frequency vector's component ``u_j = f_j/|f|`` along an axis, 0 on that axis's
    Nyquist plane (as in :mod:`gpuvalid.spiral`): then ``−i·u_j·F`` is the half spectrum of a real map, and
    each monogenic component is one complex-to-real transform.  About 10 bytes per voxel (two half spectra
    and ``inv_r``) instead of the full grid's two complex spectra and four real grids.
    """

    def __init__(self, be: Backend, h1, h2):
        xp = be.xp
        self.be = be
        h1 = be.asarray(h1, dtype=xp.float32)
        h2 = be.asarray(h2, dtype=xp.float32)
        self.shape = tuple(int(s) for s in h1.shape)
        self.FV = be.rfftn(0.5 * (h1 + h2)).astype(xp.complex64, copy=False)
        self.FN = be.rfftn(0.5 * (h1 - h2)).astype(xp.complex64, copy=False)
        nx = self.shape[2]
        fz, fy, fx = (a.astype(np.float32) for a in frequency_axes(self.shape, 1.0))
        fx = fx[: nx // 2 + 1]
        self._f = (xp.asarray(fz)[:, None, None], xp.asarray(fy)[None, :, None], xp.asarray(fx)[None, None, :])
        self._inv_r = _inverse(self.r, xp)
        axes = []
        for axis, f in enumerate((fz, fy, fx)):
            f = f.copy()
            n = self.shape[axis]
            if n % 2 == 0:
                f[n // 2] = 0.0        # the Nyquist plane (on the x axis: the half grid's last plane)
            axes.append(xp.asarray(f).reshape([-1 if a == axis else 1 for a in range(3)]))
        self._axes = tuple(axes)       # (fz, fy, fx) with their Nyquist entries zeroed, broadcastable
        self._lp = None                # (fd, L on its box): the last low-pass filter

    @property
    def inv_r(self):
        """``1/|f|`` on the half grid (float32, 0 at the origin): held from the start until :meth:`drop_inv_r`."""
        if self._inv_r is None:
            self._inv_r = _inverse(self.r, self.be.xp)
        return self._inv_r

    def drop_inv_r(self) -> None:
        """Let :attr:`inv_r` go (2 bytes per voxel; made again if used): 1.f reads |f| only at its cones' indices."""
        self._inv_r = None

    @property
    def r(self):
        """``|f|`` in cycles/voxel on the half grid (float32), made on each use (not held: 2 bytes per voxel)."""
        return _radius(*self._f, self.be.xp)

    @property
    def half_shape(self) -> tuple:
        """Shape of the half spectra, ``(nz, ny, nx//2 + 1)``."""
        return tuple(int(n) for n in self.FV.shape)

    def raised_cosine(self, lo: float, hi: float):
        """Return :func:`raised_cosine_up` of ``|f|`` (:attr:`r`) on the half grid (:func:`radial_raised_cosine`)."""
        return radial_raised_cosine(self._f, lo, hi, self.be.xp)

    def forget_lowpass(self) -> None:
        """Let the cached low-pass filter (:meth:`lowpass`) go: a step's sweeps are done with it."""
        self._lp = None

    def at(self, ci) -> tuple:
        """Return ``(|f|, (u_z, u_y, u_x))`` at the half grid's flat indices ``ci`` (float32).

        The numbers of :attr:`r` and :meth:`unit` at those coefficients, the same arithmetic on the gathered
        frequencies, without a grid of either.
        """
        xp = self.be.xp
        _nz, ny, nxh = self.half_shape
        x = ci % nxh
        t = ci // nxh
        y = t % ny
        z = t // ny
        del t
        fz, fy, fx = (xp.ravel(a) for a in self._f)
        r = _radius(fz[z], fy[y], fx[x], xp)
        inv = _inverse(r, xp)
        u = tuple((xp.ravel(self._axes[axis])[c] * inv).astype(xp.float32, copy=False)
                  for axis, c in ((0, z), (1, y), (2, x)))
        return r, u

    def unit(self, axis: int):
        """Return ``u_j = f_j/|f|`` (float32) on the half grid, 0 on its Nyquist plane (``axis`` 0: z, 1: y, 2: x)."""
        return (self._axes[axis] * self.inv_r).astype(self.be.xp.float32, copy=False)

    def amplitude(self, F, H):
        """Return the monogenic amplitude ``√(v0² + vx² + vy² + vz²)`` of half spectrum ``F`` filtered by ``H``.

        ``F`` is a half spectrum; ``H`` a real filter on the half grid.  ``v0 = irfftn(H·F)`` and, per axis,
        ``v_j = irfftn(−i·u_j·H·F)``: four complex-to-real transforms (the arithmetic of two complex transforms
        of the full grid, each packing two real outputs), each in place on its own input.
        """
        xp, be = self.be.xp, self.be
        G = F * H
        A = None
        for axis in (2, 1, 0):
            T = G * self.unit(axis)
            T *= xp.complex64(-1j)       # −i·u_j·H·F is Hermitian (u_j odd, 0 on its Nyquist plane)
            v = be.irfftn(T, s=self.shape, overwrite_x=True)
            del T
            v *= v
            if A is None:
                A = v
            else:
                A += v
            del v
        v = be.irfftn(G, s=self.shape, overwrite_x=True)       # v0, from G itself
        del G
        v *= v
        A += v
        del v
        return xp.sqrt(A, out=A)

    def lowpass(self, A, fd: float):
        """Return ``A`` low-passed: 1 below ``fd`` cycles/voxel, raised cosine to 0 at ``fd + 0.02``.

        The filter is 0 for ``|f| ≥ fd + 0.02``, so only the box ``|f_j| ≤ fd + 0.02`` of the spectrum is
        computed: the real FFT along x is cut to that box before the FFT along y, which is cut before the
        FFT along z, and the inverse goes back in the opposite order (zeros outside the box).  The same
        numbers as ``irfftn(rfftn(A)·L)`` up to float32 rounding, for about half the work at coarse steps; when
        the box is more than half of an axis the full transforms are used (the axis-by-axis form gains nothing).
        ``A`` is not kept: passed as a temporary (``lowpass(amplitude(…), fd)``), it is freed once transformed.
        """
        xp, be = self.be.xp, self.be
        box = self._lowpass_box(fd)
        if box is None:
            S = be.rfftn(A)
            del A            # a temporary of the caller's (1.e, 1.f) is freed here, before the filter is made
            S *= self._lowpass_filter(fd, box)
            # S is not needed after: the inverse runs in place on it
            return be.irfftn(S, s=self.shape, overwrite_x=True).astype(xp.float32, copy=False)
        (nz, kz), (ny, ky), (nx, kx) = box
        S = be.rfftn(A, axes=(2,))[:, :, : kx + 1]
        del A
        S = _take(xp, be.fftn(S, axes=(1,)), 1, ny, ky)
        S = _take(xp, be.fftn(S, axes=(0,)), 0, nz, kz)
        S *= self._lowpass_filter(fd, box)
        S = be.ifftn(_put(xp, S, 0, nz, kz), axes=(0,))
        S = be.ifftn(_put(xp, S, 1, ny, ky), axes=(1,))
        return be.irfftn(S, s=(nx,), axes=(2,)).astype(xp.float32, copy=False)

    def _lowpass_box(self, fd: float) -> tuple | None:
        """Return the box of the spectrum the low-pass at ``fd`` keeps, or None for the full half spectrum.

        Per axis ``(n, k)``: frequency indices ``|i| ≤ k`` kept (on x, the half axis, ``0 … k``).
        """
        b = fd + TRANSITION
        box = []
        for n in self.shape:
            k = int(np.floor(b * n)) + 1            # |i/n| < b  ⇒  |i| ≤ floor(b·n) (one more for rounding)
            box.append((n, None if 2 * k + 1 >= n else k))
        if any(k is None or 2 * k + 1 > n // 2 for n, k in box):
            return None
        nx, kx = box[2]
        box[2] = (nx, nx // 2 if kx is None else kx)
        return tuple(box)

    def _lowpass_filter(self, fd: float, box: tuple | None):
        """Return the low-pass filter at ``fd`` on ``box`` (:meth:`_lowpass_box`), cached for the last ``fd``.

        The filter of the former ``fd`` is let go before the new one is made.
        """
        if self._lp is not None and self._lp[0] == fd:
            return self._lp[1]
        self._lp = None
        xp = self.be.xp
        b = fd + TRANSITION
        fz, fy, fx = self._f
        if box is not None:
            (nz, kz), (ny, ky), (_nx, kx) = box
            fz, fy, fx = _take(xp, fz, 0, nz, kz), _take(xp, fy, 1, ny, ky), fx[:, :, : kx + 1]
        L = _one_minus(radial_raised_cosine((fz, fy, fx), fd, b, xp), xp)
        self._lp = (fd, L)
        return L


def _take(xp, a, axis: int, n: int, k: int | None):
    """Return the frequency indices ``0 … k`` and ``n − k … n − 1`` of ``a`` along ``axis`` (all if ``k`` is None)."""
    if k is None:
        return a
    lo = [slice(None)] * a.ndim
    hi = [slice(None)] * a.ndim
    lo[axis], hi[axis] = slice(0, k + 1), slice(n - k, n)
    return xp.concatenate([a[tuple(lo)], a[tuple(hi)]], axis=axis)


def _put(xp, a, axis: int, n: int, k: int | None):
    """Inverse of :func:`_take`: ``a`` back at its frequency indices on an axis of length ``n``, zeros elsewhere."""
    if k is None:
        return a
    shape = list(a.shape)
    shape[axis] = n
    out = xp.zeros(shape, dtype=a.dtype)
    dst_lo = [slice(None)] * a.ndim
    dst_hi = [slice(None)] * a.ndim
    src_lo = [slice(None)] * a.ndim
    src_hi = [slice(None)] * a.ndim
    dst_lo[axis], dst_hi[axis] = slice(0, k + 1), slice(n - k, n)
    src_lo[axis], src_hi[axis] = slice(0, k + 1), slice(k + 1, 2 * k + 1)
    out[tuple(dst_lo)] = a[tuple(src_lo)]
    out[tuple(dst_hi)] = a[tuple(src_hi)]
    return out


def resolution_steps(voxel_size: float, start_A: float, step_A: float = STEP_A,
                     coarse_step_A: float | None = None, coarse_above_A: float = 8.0) -> np.ndarray:
    """Return the resolutions (Å) from ``start_A`` down to ``2·Ts`` in ``step_A`` steps.

    ``coarse_step_A`` steps above ``coarse_above_A`` when given; the last one is exactly ``2·Ts`` when the steps
    do not land on it.
    """
    nyq = 2.0 * voxel_size
    out, d = [], float(start_A)
    while d > nyq + 1e-6:
        out.append(d)
        d -= coarse_step_A if (coarse_step_A and d > coarse_above_A + 1e-9) else step_A
    out.append(nyq)
    return np.asarray(out)


def step_readback(be: Backend, thresholds, sweeps) -> tuple[np.ndarray, np.ndarray]:
    """Read back what the host needs after a step of one or more sweeps, in one read.

    Each sweep's noise threshold (:func:`quantile_at` with ``on_device``) and the fraction of its voxels still
    in it (host float64 arrays).  On a GPU a step's launches then run without a host wait inside it (1.e: one
    sweep; 1.f: one per direction).
    """
    xp = be.xp
    counts = [xp.count_nonzero(sw.alive) for sw in sweeps]
    both = be.to_host(xp.stack([xp.stack(thresholds).astype(xp.float64), xp.stack(counts).astype(xp.float64)]))
    return both[0], both[1] / max(int(sweeps[0].size), 1)


def masked_smooth(be: Backend, values_in_mask, idx, shape, sigma: float = SMOOTH_SIGMA):
    """Smooth with a Gaussian (σ voxels) values known at the flat indices ``idx`` only.

    Returns ``G(R·m)/G(m)`` at those voxels.
    """
    xp = be.xp
    R = xp.zeros(int(np.prod(shape)), dtype=xp.float32)
    m = xp.zeros(int(np.prod(shape)), dtype=xp.float32)
    R[idx] = values_in_mask
    m[idx] = 1.0
    num = be.ndimage.gaussian_filter(R.reshape(shape), sigma, mode="constant").reshape(-1)[idx]
    den = be.ndimage.gaussian_filter(m.reshape(shape), sigma, mode="constant").reshape(-1)[idx]
    return (num / xp.maximum(den, xp.float32(1e-6))).astype(xp.float32)


def monores_half(be: Backend, h1, h2, mask, voxel_size: float, start_A: float, step_A: float = STEP_A,
                 quantile: float = NOISE_QUANTILE, smooth_sigma: float = SMOOTH_SIGMA,
                 engine: HalfMonogenic | None = None) -> dict:
    """Compute the MonoRes half-map local resolution (Å).

    ``h1``, ``h2``: half maps (None when ``engine`` is given: it holds their spectra); ``mask``: the (hard)
    mask, bool; ``start_A``: the coarsest resolution of the sweep.  Returns a dict: ``map`` (host float32,
    NaN outside the mask), ``raw_map`` (before smoothing), ``steps`` [(d Å, noise level)],
    ``never_passed_fraction``, ``nyquist_fraction`` (voxels still passing at 2·Ts), ``start_A``, ``seconds``.

    Raises
    ------
    NotMeasurable
        When the mask is empty, or the noise level is not finite and positive (identical or zeroed halves).
    """
    t0 = time.perf_counter()
    xp = be.xp
    idx = be.mask_indices(be.asarray(mask).astype(bool, copy=False))   # int32 below 2³¹ voxels; no mask copy kept
    n = int(idx.size)
    if n == 0:
        raise NotMeasurable("the mask is empty")
    eng = engine or HalfMonogenic(be, h1, h2)
    steps = resolution_steps(voxel_size, start_A, step_A)
    sweep = TwoFailureSweep(xp, n, float(steps[0]))
    noise_levels = []
    for d in steps:
        fd = voxel_size / d
        H = eng.raised_cosine(fd - TRANSITION, fd)
        AN = eng.lowpass(eng.amplitude(eng.FN, H), fd)
        thr = quantile_at(be, AN, idx, quantile, on_device=True)
        del AN
        AV = eng.lowpass(eng.amplitude(eng.FV, H), fd)
        eng.forget_lowpass()          # the next step has its own
        sweep.update(AV.reshape(-1)[idx] > thr, float(d))
        del AV, H
        thr_h, alive_h = step_readback(be, [thr], [sweep])
        if not np.isfinite(thr_h[0]) or thr_h[0] <= 0:
            raise NotMeasurable(f"the noise amplitude (half-map difference) is {thr_h[0]:g} at {d:.2f} Å: no noise "
                                "to compare with (identical or zeroed halves?)")
        noise_levels.append((float(d), float(thr_h[0])))
        if not alive_h[0] > 0:
            break
    raw = sweep.value
    never = float(be.to_host(xp.count_nonzero(~sweep.passed))) / n
    at_nyq = float(be.to_host(xp.count_nonzero(sweep.alive & sweep.passed & (raw <= steps[-1] + 1e-4)))) / n
    sm = masked_smooth(be, raw, idx, eng.shape, smooth_sigma) if smooth_sigma > 0 else raw
    out_map = np.full(eng.shape, np.nan, dtype=np.float32)
    raw_map = np.full(eng.shape, np.nan, dtype=np.float32)
    ih = be.to_host(idx)
    out_map.reshape(-1)[ih] = be.to_host(sm)
    raw_map.reshape(-1)[ih] = be.to_host(raw)
    return {"map": out_map, "raw_map": raw_map, "steps": noise_levels, "never_passed_fraction": never,
            "nyquist_fraction": at_nyq, "start_A": float(steps[0]), "seconds": time.perf_counter() - t0}


def vrs_histogram_percentiles(values: np.ndarray, R: float | None,
                              qs=(0.025, 0.25, 0.5, 0.75, 0.975)) -> tuple[list[float], float | None]:
    """Return the percentiles (Å) and ``CDF(R)`` (a percentage) as the reference reads them from MonoRes.

    A histogram of ``round((max − min)·4)`` bins (≈ 0.25 Å) over ``[min, max]`` (rounded to 0.01 Å), its last
    two bins dropped, the CDF interpolated linearly at the bin centres.
    """
    v = np.asarray(values, dtype=float)
    lo, hi = round(float(v.min()), 2), round(float(v.max()), 2)
    nb = max(int(round((hi - lo) * 4)), 1)
    counts, edges = np.histogram(v, bins=nb, range=(lo, hi if hi > lo else lo + 0.25))
    centres = 0.5 * (edges[:-1] + edges[1:])
    if nb > 3:
        counts, centres = counts[:-2], centres[:-2]
    cdf = np.cumsum(counts) / max(counts.sum(), 1)
    p = [float(np.interp(q, cdf, centres)) for q in qs]
    rp = None if R is None else 100.0 * float(np.interp(R, centres, cdf, left=0.0, right=1.0))
    return p, rp


# ---- section 1.e --------------------------------------------------------------------------------------------

SID, TITLE = "1.e", "Local resolution (monogenic, half maps)"

EXPLANATION = (
    "MonoRes (Vilas et al. 2018) compares, at every voxel of the mask, the local amplitude of the high-passed "
    "half-map average (its monogenic amplitude) with the amplitude of the high-passed half-map difference, "
    "which holds only noise. Moving the high-pass from coarse to fine resolutions, a voxel keeps the finest "
    "resolution at which it still stands out of the noise (above the noise's 95 % quantile); two consecutive "
    "failures end its sweep. The map is smoothed with a Gaussian of σ = 3 voxels.")


def half_engine(ctx1) -> HalfMonogenic:
    """Return the spectra of the half-map mean and difference (shared by 1.e and 1.f, cached on the context).

    When the context no longer keeps the halves (``keep_halves`` False: the sections still to run read them only
    through this engine), their device copies are dropped once the engine holds their spectra.
    """
    eng = ctx1.cache.get("half_monogenic")
    if eng is None:
        eng = HalfMonogenic(ctx1.be, ctx1.h1, ctx1.h2)
        ctx1.cache["half_monogenic"] = eng
    if not ctx1.keep_halves:
        ctx1.drop_halves()
    return eng


def run(ctx1):
    """Compute section 1.e, the MonoRes local resolution with the noise from the half-map difference.

    Results: the start of the sweep and its step (Å), the smoothing σ (voxels), the fractions of voxels that
    never pass and that still pass at 2·Ts, the noise level of each step, and the local-resolution percentiles
    and map written by ``finish_local``; ``vrs_compat`` holds the reference's histogram percentiles.
    """
    from ..analyses.base import SectionResult
    from .localres_common import CRITERIA, finish_local, overlay_figure, start_resolution

    ctx0 = ctx1.ctx0
    ctx0.require_mask()
    Ts = ctx1.voxel_size
    start, start_text = start_resolution(ctx1)
    out = monores_half(ctx1.be, None, None, ctx0.hard_mask, Ts, start, engine=half_engine(ctx1))
    res = SectionResult(SID, TITLE, explanation=EXPLANATION, criteria=CRITERIA)
    res.blocks.append(
        f"Mask: the hard mask. Sweep from {start_text} down to 2·Ts = {2 * Ts:.2f} Å in {STEP_A:g} Å steps "
        f"({len(out['steps'])} steps computed); noise level = exact 0.95 quantile of the noise amplitude over the "
        f"mask. {100 * out['never_passed_fraction']:.1f} % of the voxels never rise above the noise (kept at "
        f"{out['start_A']:g} Å); {100 * out['nyquist_fraction']:.1f} % still pass at 2·Ts (a grid limit).")
    res.values.update({"start_A": out["start_A"], "step_A": STEP_A, "smoothing_sigma_vox": SMOOTH_SIGMA,
                       "never_passed_fraction": out["never_passed_fraction"],
                       "nyquist_fraction": out["nyquist_fraction"],
                       "noise_levels": [[d, t] for d, t in out["steps"]]})
    p = finish_local(ctx1, res, out["map"], "MonoRes (half maps)", "l1_monores", "1.e MonoRes median")
    inside = out["map"][np.isfinite(out["map"])]
    pv, rpv = vrs_histogram_percentiles(inside, ctx1.resolution)
    res.vrs_compat = {"percentiles_A": pv, "resolution_percentile": rpv,
                      "rule": "0.25 Å histogram, last two bins dropped, CDF interpolated"}
    res.differences = [
        "Percentiles are exact percentiles of the voxel values; the reference reads them from a 0.25 Å histogram "
        "whose last two (worst-resolution) bins it drops, which moves them toward finer values ("
        + ", ".join(f"{x:.2f}" for x in pv) + " Å under `vrs_compat`).",
        "Resolutions are not snapped to Fourier-grid indices; the sweep has no 'fraction left < 2.5 %' or z-test "
        "early stop (it runs until no voxel is left), and the smoothed map is not clamped to the raw values.",
    ]
    if ctx1.resolution is not None and ctx1.resolution > 10:
        overlay_figure(ctx1, res)   # 1.f does not apply: the overlay goes here
    res.summary = (f"MonoRes (half maps): median local resolution {p[2]:.2f} Å (2.5–97.5 %: {p[0]:.2f}–{p[4]:.2f} Å)"
                   + ("." if not res.warnings else f"; {res.warnings[0]}."))
    return res
