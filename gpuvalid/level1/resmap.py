"""1.d Local resolution by local hypothesis tests (after ResMap, Kucukelbir, Sigworth & Tagare 2014).

The method, as published, in this implementation's terms:

1. Signal ``V = (h1+h2)/2`` and noise ``N = (h1−h2)/2``.  Both are pre-whitened with the noise spectrum:
   their transforms are divided by ``√P_N(k)`` (``P_N`` the shell-averaged power of ``N``, shells of one
   Fourier voxel), so the noise left in ``V`` is close to white; its variance ``σ²`` is that of the whitened
   ``N`` over the mask.
2. At each resolution ``α`` (Å), from ``2.2·Ts`` upwards in ``STEP_A`` steps, a local model is fitted by
   weighted least squares in a cube of ``2r + 1`` voxels, ``r = ceil(α/(2·Ts))``, with Gaussian weights
   ``w = exp(−|x|²/2)`` in scaled coordinates ``x = (2π/α)·√(2/5)·u`` (``u`` in Å), so that the model's
   oscillating terms peak at ``1/α``.  The null model is a constant; the alternative adds the steerable
   second-derivative-of-Gaussian pair: 6 "cosine-like" terms ``4(d·x)² − 2`` (``d`` the 6 icosahedral axes)
   and 10 "sine-like" terms ``(d·x)³ − 2.254·(d·x)`` (``d`` the 10 dodecahedral axes), 17 terms in all.
3. The likelihood-ratio statistic is the drop of the weighted residual sum of squares from the null to the
   alternative, divided by ``σ²``.  Orthonormalising the 16 alternative terms against the constant in the
   weighted inner product (kernels ``q_k``) makes it ``LRS(x) = Σ_k (q_k ⋆ V)(x)²/σ²``: 16 correlations with
   small kernels per scale (done with FFTs), the same at every voxel.
4. Under noise alone ``LRS`` is a weighted sum of 16 χ²₁ variables whose weights are the eigenvalues of the
   kernels' Gram matrix (the Gaussian weights make it not a plain χ²₁₆).  Its tail probability is computed
   with the Lugannani–Rice saddlepoint approximation, which is accurate far into the tail.
5. The p-values of the voxels still unassigned are thresholded with the Benjamini–Yekutieli procedure at
   FDR ``P_VALUE = 0.05``; the voxels that pass get ``α`` and leave the scan.  The scan stops when every
   mask voxel is assigned or at ``max_A``; voxels never assigned keep ``max_A`` (counted and reported).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np

from ..errors import NotMeasurable

if TYPE_CHECKING:
    from ..backend import Backend

P_VALUE = 0.05
START_FACTOR = 2.2      # first scale 2.2·Ts
STEP_A = 0.5
HP_LO = 0.8             # pre-filter of scale α: raised cosine from 0.8/α to 1/α Å⁻¹
H2_CONST = 2.254


def _axes_icosahedral() -> np.ndarray:
    """Return the 6 axes through opposite vertices of an icosahedron (unit vectors)."""
    g = (1 + math.sqrt(5)) / 2
    v = np.array([[0, 1, g], [0, -1, g], [1, g, 0], [-1, g, 0], [g, 0, 1], [g, 0, -1]], dtype=float)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _axes_dodecahedral() -> np.ndarray:
    """Return the 10 axes through opposite vertices of a dodecahedron (unit vectors)."""
    g = (1 + math.sqrt(5)) / 2
    v = [[1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1],
         [0, 1 / g, g], [0, -1 / g, g], [1 / g, g, 0], [-1 / g, g, 0], [g, 0, 1 / g], [g, 0, -1 / g]]
    v = np.array(v, dtype=float)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def scale_kernels(alpha_A: float, voxel_size: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Return ``(K, lam, r)``: the 16 orthonormalised kernels at resolution ``alpha_A`` and the null weights.

    ``K`` is ``[16, w, w, w]`` (``w = 2r + 1``); ``lam`` the null weights ``λ`` of the statistic (eigenvalues of
    the kernels' Gram matrix).

    With ``s = √w_gauss``, the design ``B = s·A`` is QR-factorised with the constant first; the kernels are
    ``s·Q[:, 1:]``, so ``Σ_k (K_k ⋆ y)²`` is the drop of the weighted residual sum of squares.
    """
    r = int(math.ceil(0.5 * alpha_A / voxel_size))
    a = (2 * math.pi / alpha_A) * math.sqrt(2.0 / 5.0)
    g = np.arange(-r, r + 1) * voxel_size * a
    Z, Y, X = np.meshgrid(g, g, g, indexing="ij")
    P = np.stack([X.ravel(), Y.ravel(), Z.ravel()], axis=1)          # (x, y, z) scaled
    wg = np.exp(-0.5 * (P ** 2).sum(axis=1))
    cols = [np.ones(len(P))]
    for d in _axes_icosahedral():
        t = P @ d
        cols.append(4 * t * t - 2)
    for d in _axes_dodecahedral():
        t = P @ d
        cols.append(t ** 3 - H2_CONST * t)
    A = np.stack(cols, axis=1)
    s = np.sqrt(wg)
    Q, _ = np.linalg.qr(s[:, None] * A)
    K = (s[:, None] * Q[:, 1:]).T                                    # [16, n]
    lam = np.linalg.eigvalsh(K @ K.T)
    w = 2 * r + 1
    return K.reshape(16, w, w, w), np.clip(lam, 0.0, None), r


def highpass(r, alpha_A: float, voxel_size: float, xp=np):
    """Return the pre-filter of scale ``alpha_A`` on |f| in cycles/voxel ``r``.

    0 below ``HP_LO/α``, raised cosine up to 1 at ``1/α`` (``f`` in Å⁻¹ = r/Ts), 1 above.
    """
    lo, hi = HP_LO / alpha_A * voxel_size, 1.0 / alpha_A * voxel_size
    t = xp.clip((r - lo) / (hi - lo), 0.0, 1.0)
    return 0.5 - 0.5 * xp.cos(np.pi * t)


def null_weights(K: np.ndarray, alpha_A: float, voxel_size: float, grid: int = 64) -> np.ndarray:
    """Return the weights λ of ``LRS = Σ λ_i χ²₁`` under white unit noise passed through the pre-filter.

    The eigenvalues of ``G_kl = Σ_u (h ⋆ K_k)(u)·(h ⋆ K_l)(u)`` computed by Parseval on a ``grid³`` box (a
    Riemann sum of a smooth integrand; the kernels are zero-padded and centred at the origin).
    """
    nk, w = K.shape[0], K.shape[1]
    M = max(grid, 2 * w + 1)
    import scipy.fft

    pad = np.zeros((nk, M, M, M), dtype=np.float32)
    pad[:, :w, :w, :w] = K
    pad = np.roll(pad, (-(w // 2),) * 3, axis=(1, 2, 3))
    F = scipy.fft.rfftn(pad, axes=(1, 2, 3), workers=-1).reshape(nk, -1)
    fz = np.fft.fftfreq(M)[:, None, None]
    fy = np.fft.fftfreq(M)[None, :, None]
    fx = np.fft.rfftfreq(M)[None, None, :]
    r = np.sqrt(fz * fz + fy * fy + fx * fx)
    wx = np.full(M // 2 + 1, 2.0)
    wx[0] = 1.0
    if M % 2 == 0:
        wx[-1] = 1.0
    wt = (np.broadcast_to(wx, r.shape) * highpass(r, alpha_A, voxel_size) ** 2).ravel()
    # G = Re(F·diag(wt)·Fᴴ) in float64 with einsum's own loops: a 16 × 16 result needs no BLAS, and a threaded
    # BLAS call this small spun for up to 8 s per scale on a loaded 2-core machine (0.05 s single-threaded)
    Fr, Fi = F.real.astype(np.float64), F.imag.astype(np.float64)
    G = (np.einsum("in,jn->ij", Fr * wt, Fr) + np.einsum("in,jn->ij", Fi * wt, Fi)) / M ** 3
    return np.clip(np.linalg.eigvalsh(G), 0.0, None)


def weighted_chi2_sf(t: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``P(Σ λ_i χ²₁ > t)`` by the Lugannani–Rice saddlepoint approximation (vectorised over ``t``).

    ``K(s) = −½ Σ ln(1 − 2sλ_i)``; ``K'(ŝ) = t`` is solved by bisection on ``s < 1/(2·max λ)``; then
    ``w = sign(ŝ)·√(2(ŝt − K(ŝ)))``, ``u = ŝ·√K''(ŝ)`` and ``sf = 1 − Φ(w) + φ(w)(1/u − 1/w)``.  Near the mean
    (``|w| < 1e-2``) the value is interpolated from its neighbours.
    """
    from scipy.stats import norm

    lam = np.asarray(lam, dtype=float)
    lam = lam[lam > 1e-12 * lam.max()]
    t = np.atleast_1d(np.asarray(t, dtype=float))
    hi = 1.0 / (2.0 * lam.max()) * (1 - 1e-12)
    lo = np.full(t.shape, -1e6 / lam.max())
    up = np.full(t.shape, hi)

    def k1(s):
        return (lam / (1 - 2 * s[..., None] * lam)).sum(-1)

    for _ in range(200):
        mid = 0.5 * (lo + up)
        big = k1(mid) > t
        up = np.where(big, mid, up)
        lo = np.where(big, lo, mid)
    s = 0.5 * (lo + up)
    K = -0.5 * np.log(1 - 2 * s[..., None] * lam).sum(-1)
    K2 = (2 * lam ** 2 / (1 - 2 * s[..., None] * lam) ** 2).sum(-1)
    arg = np.maximum(2 * (s * t - K), 0.0)
    w = np.sign(s) * np.sqrt(arg)
    u = s * np.sqrt(K2)
    with np.errstate(divide="ignore", invalid="ignore"):
        sf = norm.sf(w) + norm.pdf(w) * (1 / u - 1 / w)
    bad = (np.abs(w) < 1e-2) | ~np.isfinite(sf)
    if bad.any() and (~bad).sum() >= 2:
        sf[bad] = np.interp(t[bad], t[~bad], sf[~bad])
    return np.clip(sf, 0.0, 1.0)


def by_threshold(p, q: float, be: Backend) -> float:
    """Return the Benjamini–Yekutieli FDR threshold of the p-values ``p`` at level ``q``.

    The largest ``p_(k)`` with ``p_(k) ≤ k·q/(m·Σ_{i≤m} 1/i)`` (−1 when none passes).  ``p``: an array of
    backend ``be`` (on a device it is sorted there; only the threshold comes back).
    """
    xp = be.xp
    m = int(p.size)
    if m == 0:
        return -1.0
    ps = xp.sort(p)
    k = xp.arange(1, m + 1, dtype=xp.float64)
    c = be.scalar(xp.sum(1.0 / k))
    last = int(be.scalar(xp.max(xp.where(ps <= k * q / (m * c), xp.arange(m), -1))))
    return be.scalar(ps[last]) if last >= 0 else -1.0


def _whiten(be: Backend, h1, h2):
    """Return the whitened spectra (``rfftn``, on the device) of ``V = (h1 + h2)/2`` and ``N = (h1 − h2)/2``.

    Both are divided in Fourier space by ``√P_N`` (shell-averaged power of ``N``; shells of one Fourier voxel).
    """
    xp = be.xp
    shape = h1.shape
    V = 0.5 * (h1 + h2)
    FV = be.rfftn(V)
    del V
    N = 0.5 * (h1 - h2)
    FN = be.rfftn(N)
    del N
    fz = xp.asarray(np.fft.fftfreq(shape[0]).astype(np.float32))[:, None, None]
    fy = xp.asarray(np.fft.fftfreq(shape[1]).astype(np.float32))[None, :, None]
    fx = xp.asarray(np.fft.rfftfreq(shape[2]).astype(np.float32))[None, None, :]
    k = xp.rint(xp.sqrt(fz * fz + fy * fy + fx * fx) * min(shape)).astype(xp.int32)
    kmax = int(be.to_host(k.max())) + 1
    p = xp.bincount(k.ravel(), weights=(FN.real ** 2 + FN.imag ** 2).ravel(), minlength=kmax)
    c = xp.bincount(k.ravel(), minlength=kmax).astype(xp.float64)
    pw = p / xp.maximum(c, 1)
    floor = float(be.to_host(pw[1:].max())) * 1e-6 if kmax > 1 else 1e-30
    pw = xp.maximum(pw, floor)
    filt = (1.0 / xp.sqrt(pw / pw[1:].mean() if kmax > 1 else pw))[k].astype(xp.float32)
    filt[0, 0, 0] = 0.0          # the map mean is the null model's constant
    del k
    if not be.is_gpu:
        return FV * filt, FN * filt
    FV *= filt                   # in place on the device: the spectra are this function's own
    FN *= filt
    return FV, FN


def resmap(be: Backend, h1, h2, mask, voxel_size: float, max_A: float, step_A: float = STEP_A,
           p_value: float = P_VALUE) -> dict:
    """Compute the ResMap-like local resolution (Å) at the ``mask`` voxels.

    Returns a dict: ``map`` (host float32, NaN outside the mask), ``scales`` [(α Å, voxels assigned, σ²)],
    ``never_fraction`` (voxels not assigned up to ``max_A``), ``max_A``, ``seconds``.

    Raises
    ------
    NotMeasurable
        When the mask is empty, or the whitened half-map difference has no noise inside it (identical halves).
    """
    t0 = time.perf_counter()
    xp = be.xp
    h1 = be.asarray(h1, dtype=xp.float32)
    h2 = be.asarray(h2, dtype=xp.float32)
    shape = tuple(int(s) for s in h1.shape)
    idx = be.mask_indices(be.asarray(mask).astype(bool, copy=False))   # int32 below 2³¹ voxels; no mask copy kept
    n = int(idx.size)
    if n == 0:
        raise NotMeasurable("the mask is empty")
    FV, FN = _whiten(be, h1, h2)
    Nw = be.irfftn(FN, s=shape).reshape(-1)[idx]
    sigma2 = float(be.to_host(xp.var(Nw.astype(xp.float64))))
    del Nw, FN
    if not np.isfinite(sigma2) or sigma2 <= 0:
        raise NotMeasurable("the half-map difference has no noise inside the mask (identical halves?)")
    fz = xp.asarray(np.fft.fftfreq(shape[0]).astype(np.float32))[:, None, None]
    fy = xp.asarray(np.fft.fftfreq(shape[1]).astype(np.float32))[None, :, None]
    fx = xp.asarray(np.fft.rfftfreq(shape[2]).astype(np.float32))[None, None, :]
    # the per-voxel test runs where T is (the host sees one threshold and a few numbers per scale)
    value = xp.full(n, max_A, dtype=xp.float32)
    todo = xp.ones(n, dtype=bool)
    scales = []
    alpha = round(START_FACTOR * voxel_size, 2)
    while alpha <= max_A + 1e-6 and bool(be.to_host(todo.any())):
        K, lam, r = scale_kernels(alpha, voxel_size)
        if 2 * r + 1 > min(shape):
            break
        lam = null_weights(K, alpha, voxel_size)
        # |f| in cycles/voxel on the rfftn grid, made per scale: not held beside the kernels' transforms
        r_half = xp.sqrt(fz * fz + fy * fy + fx * fx)
        Hf = highpass(r_half, alpha, voxel_size, xp).astype(xp.float32)
        del r_half
        FVh = FV * Hf
        del Hf
        T = xp.zeros(n, dtype=xp.float32)
        wrap = [xp.asarray(np.arange(-r, r + 1) % n_ax) for n_ax in shape]   # kernel centre at the origin
        where = xp.ix_(*wrap)
        Kdev = be.asarray(K.astype(np.float32))
        for k in range(K.shape[0]):
            pad = xp.zeros(shape, dtype=xp.float32)
            pad[where] = Kdev[k]
            Kf = be.rfftn(pad)
            del pad
            if be.is_gpu:            # FVh·conj(Kf) formed in Kf (no two temporaries of the spectrum's size)
                xp.conjugate(Kf, out=Kf)
                Kf *= FVh
                c = be.irfftn(Kf, s=shape).reshape(-1)[idx]
            else:
                c = be.irfftn(FVh * xp.conj(Kf), s=shape,                     # correlation q_k ⋆ V
                              overwrite_x=True).reshape(-1)[idx]               # (a temporary: in place)
            T += c * c
            del Kf, c
        del FVh
        live = xp.flatnonzero(todo)
        lrs = T[live].astype(xp.float64) / sigma2
        del T
        lo, hi = (float(be.to_host(v)) for v in (lrs.min(), lrs.max()))
        grid = np.geomspace(max(lo, 1e-3), max(hi, 1e-2) * 1.01, 400)
        sf = weighted_chi2_sf(grid, lam)                 # the null's tail on a 400-point grid (host)
        logsf = np.log(np.maximum(sf, 1e-300))
        p = xp.exp(xp.interp(lrs, be.asarray(grid), be.asarray(logsf)))
        del lrs
        thr = by_threshold(p, p_value, be)
        hit = live[p <= thr] if thr >= 0 else live[:0]
        value[hit] = alpha
        todo[hit] = False
        scales.append((alpha, int(hit.size), sigma2))
        del live, p, hit      # this scale's per-voxel arrays: not held through the next scale's transforms
        alpha = round(alpha + step_A, 2)
    out = np.full(shape, np.nan, dtype=np.float32)
    out.reshape(-1)[be.to_host(idx)] = be.to_host(value)
    return {"map": out, "scales": scales, "never_fraction": float(be.to_host(todo.mean())),
            "max_A": float(max_A), "seconds": time.perf_counter() - t0}


def vrs_percentiles(res_map: np.ndarray, voxel_size: float) -> tuple[list[float] | None, np.ndarray | None]:
    """Return the reference's view of a ResMap result: ``(percentiles, kept values)``.

    ResMap 1.x stops at ``round(4·Ts, 0.5)`` and writes 100 Å elsewhere; the reference drops the 100-Å voxels,
    fills them with the mean of the others, smooths with σ = 1.5 voxels and takes the percentiles of the kept
    voxels.
    """
    import scipy.ndimage as ndi

    stop = round(4 * voxel_size * 2) / 2
    inside = np.isfinite(res_map)
    keep = inside & (res_map <= stop + 1e-6)
    if not keep.any():
        return None, None
    V = np.where(keep, res_map, np.float32(res_map[keep].mean())).astype(np.float32)
    V = np.where(inside | keep, V, np.float32(res_map[keep].mean()))
    V = ndi.gaussian_filter(V, 1.5)
    vals = V[keep]
    return [float(x) for x in np.percentile(vals, [2.5, 25, 50, 75, 97.5])], vals


# ---- section 1.d --------------------------------------------------------------------------------------------

SID, TITLE = "1.d", "Local resolution (local hypothesis tests)"

EXPLANATION = (
    "ResMap (Kucukelbir, Sigworth & Tagare 2014) asks at each voxel, for increasing resolutions α starting at "
    "2.2 × the voxel size, whether a local model of oscillating, sinusoid-like features of wavelength α (fitted "
    "in a Gaussian window) explains the half-map average significantly better than a constant, given the noise "
    "measured from the half-map difference. The likelihood-ratio test is corrected for the many voxels tested "
    "(false discovery rate 5 %, Benjamini–Yekutieli); a voxel takes the first (finest) α at which it passes.")


def run(ctx1):
    """Compute section 1.d, the ResMap-like local resolution (local likelihood-ratio tests, FDR 5 %).

    Results: the scales tested and the voxels assigned at each (Å), the whitened noise variance, the fraction
    of voxels never assigned up to the top scale (Å), and the local-resolution percentiles and map written by
    ``finish_local``; ``vrs_compat`` holds the percentiles with the reference's ``round(4·Ts)`` cut.
    """
    from ..analyses.base import SectionResult
    from .localres_common import CRITERIA, finish_local, start_resolution

    ctx0 = ctx1.ctx0
    ctx0.require_mask()
    Ts = ctx1.voxel_size
    top, top_text = start_resolution(ctx1)
    out = resmap(ctx1.be, ctx1.h1, ctx1.h2, ctx0.hard_mask, Ts, top)
    res = SectionResult(SID, TITLE, explanation=EXPLANATION, criteria=CRITERIA)
    res.blocks.append(
        f"Mask: the hard mask. Scales from {START_FACTOR:g}·Ts = {START_FACTOR * Ts:.2f} Å up to {top_text} in "
        f"{STEP_A:g} Å steps ({len(out['scales'])} scales tested); FDR {P_VALUE:g} (Benjamini–Yekutieli). "
        f"{100 * out['never_fraction']:.1f} % of the voxels pass at no scale up to {top:g} Å (kept at that value).")
    res.values.update({"scales_A": [a for a, _, _ in out["scales"]],
                       "assigned_per_scale": [k for _, k, _ in out["scales"]],
                       "noise_variance_whitened": out["scales"][0][2] if out["scales"] else None,
                       "never_fraction": out["never_fraction"], "max_A": out["max_A"], "fdr": P_VALUE})
    p = finish_local(ctx1, res, out["map"], "ResMap-like", "l1_resmap", "1.d ResMap-like median")
    pv, _ = vrs_percentiles(out["map"], Ts)
    res.vrs_compat = {"percentiles_A": pv,
                      "rule": "scales stop at round(4·Ts, 0.5 Å); 100-Å voxels dropped; mean fill; σ = 1.5 smoothing"}
    res.differences = [
        f"The reference runs the ResMap 1.95 binary with its default upper scale round(4·Ts) = {round(8 * Ts) / 2:g} Å "
        "and marks every voxel not resolved there 100 Å, then drops those voxels, so its histogram covers only the "
        "best part of the map; gpuvalid scans the whole useful range. "
        + ("" if pv is None else "With that cut and the reference's σ = 1.5 smoothing the percentiles would be "
           + ", ".join(f"{x:.2f}" for x in pv) + " Å (`vrs_compat`)."),
        "Before the test at scale α both maps are high-passed (raised cosine from 0.8/α to 1/α Å⁻¹) and the null "
        "weights account for that filter: without it a high-SNR low-resolution feature passes at every fine "
        "scale through the curvature it gives the window (the published method has no such filter). The noise "
        "spectrum is whitened completely (ResMap: elbow and ramp), the noise variance is that of the whitened "
        "difference inside the mask (ResMap: non-overlapping blocks), and the tail probabilities use a "
        "saddlepoint approximation (ResMap: Ruben's series).",
    ]
    res.summary = (f"ResMap-like tests: median local resolution {p[2]:.2f} Å (2.5–97.5 %: {p[0]:.2f}–{p[4]:.2f} Å)"
                   + ("." if not res.warnings else f"; {res.warnings[0]}."))
    return res
