"""Band-limited Fourier resampling of a map to a new box, one algorithm on both backends.

A map of ``n`` voxels per axis is the trigonometric polynomial of its DFT ``F(k)`` (``k`` in cycles per box,
``−⌊n/2⌋ … n − ⌊n/2⌋ − 1``).  Resampling to ``m`` voxels per axis (same physical box, voxel ``n·Ts/m``) keeps
the ``κ = min(n, m)`` frequencies ``−⌊κ/2⌋ … κ − ⌊κ/2⌋ − 1`` of each axis (downsampling: an ideal low-pass
at the new Nyquist frequency; upsampling: zero padding) and evaluates that polynomial on the new grid::

    V'(j) = (1/∏n) · Re Σ_{k kept} F(k) · exp(2πi Σ_axes k·j/m)

i.e. the inverse DFT on the ``m``-box times ``∏m/∏n``, so the mean density is kept (``F(0)/∏n``).  These
are the frequencies of a centred crop (or pad) of the ``fftshift``-ed spectrum; they are copied here
block-wise without shifting (non-negative frequencies at the start of each axis, negative ones at its end).

Nyquist: for an even ``κ`` the kept set holds ``−κ/2`` but not ``+κ/2``.  For a real map ``F(−k)`` is
``conj F(k)``, so taking the real part pairs every kept coefficient with its point reflection: on a single
axis this is the symmetric interpolant (the Nyquist coefficient split half and half between ``±κ/2``: the
term ``Re F(m/2)·(−1)^j / n`` after downsampling to an even ``m``, ``F(n/2)·cos(π n j/m) / n`` after
upsampling from an even ``n``, in 1-D).
Where two or three axes sit at an even Nyquist frequency at once (the edges and corners of the kept
block, ``O(m)`` of the ``∏m`` coefficients) the coefficient is shared with its point reflection only,
not over all ``4`` or ``8`` sign combinations as resampling one axis after the other would.  The result is
still real and band-limited (and, upsampling, passes through the original samples); it is the convention
of the spec's "spectrum crop" (a centred crop of the ``fftshift``-ed spectrum, real part of the inverse),
and differs from the axis-by-axis one by 1.6e-5 of the map's RMS on EMD-5168 (100³ → 174³).

Both transforms are real ones (``rfftn``/``irfftn``), which hold half of each spectrum.  The real part of the
inverse DFT of the kept coefficients ``G`` is the inverse DFT of their Hermitian part ``H(k) = (G(k) +
conj G(−k))/2``, and a complex-to-real transform takes exactly that from the half of ``H`` over the last axis.
Away from the even Nyquist planes above, ``H = G`` (a coefficient and its point reflection are kept together,
and ``F(−k) = conj F(k)``), so the half of ``H`` is a block copy of the map's half spectrum; on those planes
(``O(m²)`` coefficients) it is computed from the formula.  The result is the one of the full complex
transforms to float32 rounding (≤ 5e-7 of the largest value in the tests), with half their memory and
arithmetic: on a device, the map's half spectrum (4 B per input voxel), then the new box's half spectrum and
the new map (4 B per new voxel each; the inverse overwrites its input instead of copying it), scaled in place.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .backend import Backend


def kept_blocks(n: int, m: int) -> list[tuple[slice, slice]]:
    """Return the ``(source, destination)`` slices of the unshifted spectra of lengths ``n`` → ``m``.

    They hold the kept frequencies: ``0 … κ − ⌊κ/2⌋ − 1`` at the start of each axis and ``−⌊κ/2⌋ … −1`` at
    its end (``κ = min(n, m)``).
    """
    k = min(n, m)
    pos, neg = k - k // 2, k // 2
    out = [(slice(0, pos), slice(0, pos))]
    if neg:
        out.append((slice(n - neg, n), slice(m - neg, m)))
    return out


def _axis_frequencies(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Return, for each index ``0 … m − 1`` of an axis of the new box, whether its frequency is kept.

    The second array is its signed frequency (cycles per box).
    """
    k = min(n, m)
    pos, neg = k - k // 2, k // 2
    d = np.arange(m)
    return (d < pos) | (d >= m - neg), np.where(d < pos, d, d - m)


def _asymmetric(n: int, m: int) -> list[int]:
    """Return the indices of the new box's axis where a kept coefficient's point reflection is not kept with it.

    That is for an even number of kept frequencies: ``−κ/2`` is kept, ``+κ/2`` is not, or is the same index.
    """
    k = min(n, m)
    if k % 2:
        return []
    return [m // 2] if k == m else sorted({k // 2, m - k // 2})


def _hermitian_plane(xp, Fh, n: tuple, m: tuple, axis: int, index: int):
    """Compute ``H(d) = (G(d) + conj G(−d))/2`` on the plane ``d[axis] = index`` of the new box's half spectrum.

    It is taken from ``Fh`` (the map's half spectrum; ``F(k)`` at a negative last frequency is ``conj F(−k)``).
    """
    info = [_axis_frequencies(a, b) for a, b in zip(n, m, strict=True)]
    half = list(m[:-1]) + [m[-1] // 2 + 1]
    idx = [np.arange(h) for h in half]
    idx[axis] = np.array([index])

    def g(d):                     # G at the new-box indices d (one 1-D array per axis, broadcast as a grid)
        kept = [info[a][0][d[a]] for a in range(len(d))]
        k = np.ix_(*[np.where(kept[a], info[a][1][d[a]], 0) for a in range(len(d))])
        flip = k[-1] < 0
        src = tuple(np.where(flip, -ka, ka) % na for ka, na in zip(k[:-1], n[:-1], strict=True)) + (np.abs(k[-1]),)
        v = Fh[tuple(xp.asarray(i) for i in src)]
        v = xp.where(xp.asarray(flip), xp.conj(v), v)
        keep = np.ones(v.shape, bool)
        for a, ka in enumerate(kept):                 # (np.ix_ would read a bool array as a selection)
            keep &= ka.reshape([-1 if b == a else 1 for b in range(len(kept))])
        return v * xp.asarray(keep)

    mirror = [(-i) % mm for i, mm in zip(idx, m, strict=True)]
    return (0.5 * (g(idx) + xp.conj(g(mirror)))).astype(Fh.dtype)


def fourier_resample(be: Backend, V, new_shape: tuple):
    """Resample map ``V`` to ``new_shape`` voxels by cropping or zero-padding its spectrum about frequency 0.

    Cropping downsamples, zero-padding upsamples; on ``be``'s device; float32, same mean value.

    ``V`` may be a host array or one on ``be``'s device (any number of axes); a box of the same shape is
    returned as a float32 copy.  The result is ``(∏m/∏n) · Re IDFT_m`` of the kept frequencies (module
    docstring), the voxel becoming ``n·Ts/m`` Å per axis.

    Parameters
    ----------
    be : Backend
        The backend whose device computes the transforms.
    V : array
        The map, ``n`` voxels per axis (host or device array).
    new_shape : tuple of int
        ``m``, the new box's voxels per axis, one per axis of ``V``.

    Returns
    -------
    array
        The resampled map on ``be``'s device, float32.

    Raises
    ------
    ValueError
        When ``new_shape`` does not give one size per axis of ``V``.
    """
    xp = be.xp
    V = be.asarray(V, dtype=xp.float32)
    new_shape = tuple(int(m) for m in new_shape)
    if len(new_shape) != V.ndim:
        raise ValueError(f"new_shape {new_shape} must have one size per axis of the map {V.shape}")
    if new_shape == V.shape:
        return V.copy()
    scale = np.prod(new_shape, dtype=np.float64) / np.prod(V.shape, dtype=np.float64)
    n, m = V.shape, new_shape
    Fh = be.rfftn(V)
    X = xp.zeros(m[:-1] + (m[-1] // 2 + 1,), dtype=Fh.dtype)
    k = min(n[-1], m[-1])
    last = slice(0, k - k // 2)                      # the kept non-negative frequencies of the last axis
    for blocks in itertools.product(*(kept_blocks(a, b) for a, b in zip(n[:-1], m[:-1], strict=True))):
        X[tuple(b[1] for b in blocks) + (last,)] = Fh[tuple(b[0] for b in blocks) + (last,)]
    for axis in range(len(m)):                       # the even Nyquist planes: H from its formula
        for index in _asymmetric(n[axis], m[axis]):
            if index < X.shape[axis]:
                plane = [slice(None)] * len(m)
                plane[axis] = slice(index, index + 1)
                X[tuple(plane)] = _hermitian_plane(xp, Fh, n, m, axis, index)
    del Fh
    v = be.irfftn(X, s=m, overwrite_x=True)          # X is destroyed: no copy of it
    del X
    v *= v.dtype.type(scale)
    return v if v.dtype == xp.float32 else v.astype(xp.float32)


#: the largest prime factors of a box edge that the resampling prefers, in order: cuFFT is optimised for edges
#: of the form 2^a·3^b·5^c·7^d (radix passes) and uses Bluestein's algorithm, a padded convolution, for large
#: prime factors (NVIDIA's NVPL FFT documentation: for every other edge); pocketfft (scipy.fft) has radix
#: passes up to 11, generic ones beyond, and Bluestein for a large prime factor (446 = 2·223, 669 = 3·223:
#: rfftn + irfftn 3.7× and 3.5× the time of 448³/672³ on 2 CPU cores, bench/RESULTS.md)
FFT_PRIME_PREFERENCE = (7, 13)
#: how far (relative) such an edge may be from the exact ``N·Ts/Ts'``: the voxel stays within 1 % of ``Ts'``
FFT_EDGE_TOL = 0.01
#: the working grid of the learned sections 0.e and 0.h (Å per voxel), shared by their preprocessing
#: (:mod:`gpuvalid.models.preprocess`) and the memory estimates
WORK_VOXEL_A = 1.0


def largest_prime_factor(n: int) -> int:
    """Return the largest prime factor of ``n ≥ 1`` (1 for 1).

    Examples
    --------
    >>> largest_prime_factor(446), largest_prime_factor(448), largest_prime_factor(1)
    (223, 7, 1)
    """
    n, p, best = int(n), 2, 1
    while p * p <= n:
        while n % p == 0:
            n //= p
            best = p
        p += 1
    return max(best, n) if n > 1 else best


def fft_length(target: float, tol: float = FFT_EDGE_TOL) -> int:
    """Return a box edge for ``target`` voxels with small prime factors (fast FFTs).

    Among the edges within ``tol·target`` of it, the nearest whose prime factors are all ≤ 7, else the nearest
    with factors ≤ 13 (ties: the larger edge); ``round(target)`` when there is neither (``round(target)``
    itself when its factors are ≤ 7).

    Examples
    --------
    EMD-5168 (1.742 Å) in 256³ and 384³ boxes at 1 Å: 446 = 2·223 and 669 = 3·223 would need Bluestein FFTs.

    >>> fft_length(256 * 1.742), fft_length(384 * 1.742)   # 448 = 2⁶·7, 672 = 2⁵·3·7
    (448, 672)
    >>> fft_length(100.2)                                   # 100 = 2²·5² is already fast
    100
    """
    lo, hi = int(np.floor(target * (1.0 - tol))), int(np.ceil(target * (1.0 + tol)))
    window = [m for m in range(max(1, lo), hi + 1) if abs(m - target) <= tol * target]
    for pmax in FFT_PRIME_PREFERENCE:
        ok = [m for m in window if largest_prime_factor(m) <= pmax]
        if ok:
            return min(ok, key=lambda m: (abs(m - target), -m))
    return int(round(target))


def grid_shape(shape: tuple, voxel_size: float, new_voxel: float, minimum: int = 4) -> tuple:
    """Return the box of a map of ``shape`` (``voxel_size`` Å) resampled to about ``new_voxel`` Å/voxel.

    Per axis the edge is :func:`fft_length` of ``N·Ts/Ts'`` (at least ``minimum``); the voxel of each axis is
    ``N·Ts/M``.

    Examples
    --------
    >>> shape = grid_shape((256, 256, 200), 1.742, 1.0)
    >>> shape
    (448, 448, 350)
    >>> [round(v, 4) for v in grid_voxel_sizes((256, 256, 200), 1.742, shape)]
    [0.9954, 0.9954, 0.9954]
    """
    return tuple(max(minimum, fft_length(n * voxel_size / new_voxel)) for n in shape)


def grid_voxel_sizes(shape: tuple, voxel_size: float, new_shape: tuple) -> tuple:
    """Voxel size (Å) of each axis (z, y, x) after resampling ``shape`` at ``voxel_size`` Å to ``new_shape``."""
    return tuple(n * voxel_size / m for n, m in zip(shape, new_shape, strict=True))
