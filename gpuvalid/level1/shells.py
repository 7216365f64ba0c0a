"""Fourier-shell kernels shared by the Level 1 sections (FSC, DPR, SSNR, FDR-FSC, FSO, conical FSC).

Everything works on the ``rfftn`` half-spectrum of a ``[z, y, x]`` box through the backend (NumPy or
CuPy):

- :class:`HalfSpectrum`: one shell-index map ``k = round(|f|·N)`` (``f`` in cycles/voxel, ``N`` the smallest
  box edge, shells 1 Fourier voxel = ``1/(N·Ts)`` Å⁻¹ wide), the corners beyond Nyquist (``|f| > 0.5``) in a
  discarded bin, and the Hermitian weights (columns ``x = 0`` and ``x = N/2`` once, the others twice) so
  that half-spectrum sums equal full-spectrum sums;
- :func:`shell_sums`: segmented reductions (``bincount`` with weights, float64 accumulation) of any
  per-coefficient quantity (weighted in place: the caller gives its terms up);
- :class:`DirectionBins`: the unit direction of every coefficient, folded onto the hemisphere (a
  coefficient and its Friedel mate share an axis) and binned on an equiangular cube map; per
  ``(shell, bin)`` sums then give directional (cone-weighted) sums for any set of cones as one matrix
  product, without the all-pairs cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..spiral import _slabs

if TYPE_CHECKING:
    from ..backend import Backend

DEFAULT_CUBE_CELLS = 48  # cube-map cells per face edge (about 1.9° per cell)
SLABS = 8                # DirectionBins bins the half grid in this many z slabs …
SLAB_MIN = 1 << 18       # … of at least this many coefficients


class HalfSpectrum:
    """Shell geometry of the ``rfftn`` half-spectrum of a box ``shape = (nz, ny, nx)`` at ``voxel_size`` Å.

    Attributes: ``n_edge`` (N), ``nshell`` (N//2 + 1 shells, 0 … N/2), ``shell`` (int32 shell index per
    coefficient, ``nshell`` for the corners), ``weight`` (float32 Hermitian weight, a read-only broadcast view
    of one row), ``freq`` (Å⁻¹ of each
    shell, ``k/(N·Ts)``).
    """

    def __init__(self, be: Backend, shape: tuple, voxel_size: float):
        xp = be.xp
        self.be = be
        self.shape = tuple(int(s) for s in shape)
        self.voxel_size = float(voxel_size)
        nz, ny, nx = self.shape
        self.n_edge = int(min(self.shape))
        self.nshell = self.n_edge // 2 + 1
        self.half_shape = (nz, ny, nx // 2 + 1)
        fz = xp.asarray(np.fft.fftfreq(nz).astype(np.float32))[:, None, None]
        fy = xp.asarray(np.fft.fftfreq(ny).astype(np.float32))[None, :, None]
        fx = xp.asarray(np.fft.rfftfreq(nx).astype(np.float32))[None, None, :]
        self._f = (fx, fy, fz)
        # float64 here so that shells agree exactly between devices and with float64 references
        f64 = [xp.asarray(a) for a in (np.fft.fftfreq(nz)[:, None, None], np.fft.fftfreq(ny)[None, :, None],
                                       np.fft.rfftfreq(nx)[None, None, :])]
        r = xp.sqrt(f64[0] ** 2 + f64[1] ** 2 + f64[2] ** 2)
        k = xp.rint(r * self.n_edge).astype(xp.int32)
        self.shell = xp.where(r <= 0.5 + 1e-6, k, xp.int32(self.nshell)).astype(xp.int32)
        self.shell = xp.minimum(self.shell, xp.int32(self.nshell))
        del r, k, f64
        wx = np.full(nx // 2 + 1, 2.0, dtype=np.float32)
        wx[0] = 1.0
        if nx % 2 == 0:
            wx[-1] = 1.0
        # a broadcast view of one row (no memory of the half grid's size): weight · a is the same product
        self.weight = xp.broadcast_to(xp.asarray(wx)[None, None, :], self.half_shape)
        self.freq = np.arange(self.nshell) / (self.n_edge * self.voxel_size)
        self._count = None

    @property
    def radius(self):
        """|f| in cycles/voxel on the half grid (computed on demand, float32)."""
        fx, fy, fz = self._f
        return self.be.xp.sqrt(fz * fz + fy * fy + fx * fx)

    def counts(self) -> np.ndarray:
        """Return the number of full-spectrum coefficients per shell (host float64)."""
        if self._count is None:
            self._count = self._sum(self.weight)
        return self._count

    def _sum(self, a) -> np.ndarray:
        xp = self.be.xp
        s = xp.bincount(self.shell.ravel(), weights=a.ravel(), minlength=self.nshell + 1)
        return self.be.to_host(s[: self.nshell]).astype(np.float64)

    def unit_vectors(self, zs: slice = slice(None)):
        """Return the unit direction ``(ux, uy, uz)`` in map axes of every coefficient (float32; the origin: 0).

        ``zs``: only the z planes of this slice (the same numbers as those planes of the whole).
        """
        xp = self.be.xp
        fx, fy, fz = self._f
        fz = fz[zs]
        r = xp.sqrt(fz * fz + fy * fy + fx * fx)
        inv = xp.where(r > 0, 1.0 / xp.maximum(r, xp.float32(1e-12)), xp.float32(0.0)).astype(xp.float32)
        return fx * inv, fy * inv, fz * inv

    def shell_order(self):
        """Return ``(order, starts)``: flat half-spectrum indices sorted by shell, and where each shell starts.

        ``order`` is sorted by shell (stable; int32 when the half grid has fewer than 2³¹ coefficients);
        ``starts`` is the start of each shell in that order (length ``nshell + 1``); the coefficients as stored,
        no Hermitian weights.  Not cached (4–8 bytes per coefficient): 1.b, its only user, holds it while it
        needs it.
        """
        xp = self.be.xp
        flat = self.shell.ravel()
        order = xp.argsort(flat, kind="stable") if not self.be.is_gpu else xp.argsort(flat)
        order = order.astype(self.be.index_dtype(order.size), copy=False)
        cnt = self.be.to_host(xp.bincount(flat, minlength=self.nshell + 1))
        starts = np.concatenate([[0], np.cumsum(cnt)])[: self.nshell + 1]
        return order, starts.astype(np.int64)


def shell_sums(geo: HalfSpectrum, *terms) -> np.ndarray:
    """Full-spectrum sums per shell of each per-coefficient half-spectrum term: ``[len(terms), nshell]`` float64.

    The caller gives the terms up: each is multiplied in place by the Hermitian weights (no second array of
    the half grid's size).  Returned on the host.
    """
    out = []
    for t in terms:
        t *= geo.weight
        out.append(geo._sum(t))
    return np.stack(out)


def cross_power(F1, F2):
    """Return ``Re(F1·F2*)`` per coefficient (float32 for complex64 spectra): two arrays alive, not three."""
    out = F1.real * F2.real
    out += F1.imag * F2.imag
    return out


def power(F):
    """Return ``|F|²`` per coefficient (float32 for a complex64 spectrum): two arrays alive, not three."""
    out = F.real * F.real
    out += F.imag * F.imag
    return out


@dataclass
class FscTerms:
    """Per-shell sums of the two halves' transforms ``F1``, ``F2`` (host float64, full-spectrum)."""

    cross: np.ndarray   # Σ Re(F1·F2*)
    p1: np.ndarray      # Σ |F1|²
    p2: np.ndarray      # Σ |F2|²
    count: np.ndarray   # number of coefficients

    @property
    def fsc(self) -> np.ndarray:
        """FSC per shell, ``cross/√(p1·p2)`` (NaN where a half has no power)."""
        return fsc_ratio(self.cross, self.p1, self.p2)


def fsc_ratio(cross, p1, p2, xp=np):
    """Return the FSC ``Σ Re(F1·F2*) / √(Σ|F1|²·Σ|F2|²)`` from shell sums (NaN where a half has no power).

    ``xp``: the arrays' module (NumPy, or CuPy for device arrays).
    """
    den = xp.sqrt(p1 * p2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return xp.where(den > 0, cross / xp.where(den > 0, den, 1.0), xp.nan)


def fsc_terms(geo: HalfSpectrum, F1, F2) -> FscTerms:
    """Σ Re(F1 F2*), Σ|F1|², Σ|F2|² per shell (``FSC = cross/√(p1·p2)``), one per-coefficient term at a time."""
    cross = shell_sums(geo, cross_power(F1, F2))[0]
    p1 = shell_sums(geo, power(F1))[0]
    p2 = shell_sums(geo, power(F2))[0]
    return FscTerms(cross, p1, p2, geo.counts())


def dpr(geo: HalfSpectrum, F1, F2) -> np.ndarray:
    """Return the amplitude-weighted differential phase residual per shell (degrees).

    ``√(Σ(|F1|+|F2|)·Δφ² / Σ(|F1|+|F2|))`` with ``Δφ = arg(F1 F2*)`` in (−π, π].
    """
    xp = geo.be.xp
    a = xp.abs(F1) + xp.abs(F2)
    dphi = xp.arctan2(F1.imag * F2.real - F1.real * F2.imag, F1.real * F2.real + F1.imag * F2.imag)
    s = shell_sums(geo, a * dphi * dphi, a)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.degrees(np.sqrt(np.where(s[1] > 0, s[0] / np.where(s[1] > 0, s[1], 1.0), np.nan)))


def ssnr(geo: HalfSpectrum, F1, F2) -> np.ndarray:
    """Return the spectral SNR of the full map per shell.

    ``Σ|S|²/Σ|Nz|² − 1`` with ``S = (F1+F2)/2``, ``Nz = (F1−F2)/2`` (``E|S|² = |s|² + σ²/2``, ``E|Nz|² = σ²/2``).
    """
    S = F1 + F2                       # complex sums are per component: the same numbers as real and imaginary
    ps = shell_sums(geo, power(S))[0]
    del S
    D = F1 - F2
    pd = shell_sums(geo, power(D))[0]
    del D
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pd > 0, ps / np.where(pd > 0, pd, 1.0) - 1.0, np.nan)


def ssnr_vrs(be: Backend, F1, F2, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Return the reference's "SSNR", the *mean of the amplitude ratios* ``|S|/|Nz|`` per shell.

    Shells are ``int(r)`` (``r`` the distance in voxel-index units from the centre, ``r < N/2``,
    ``N = shape[0]``); returns ``(radial, f_vrs)`` with its frequency axis ``i·2·Ts/N`` left to the caller
    (``f_vrs = i``).
    """
    xp = be.xp
    nz, ny, nx = shape
    n0 = int(nz)
    kz = xp.asarray((np.fft.fftfreq(nz) * nz).astype(np.float32))[:, None, None]
    ky = xp.asarray((np.fft.fftfreq(ny) * ny).astype(np.float32))[None, :, None]
    kx = xp.asarray((np.fft.rfftfreq(nx) * nx).astype(np.float32))[None, None, :]
    r = xp.sqrt(kz * kz + ky * ky + kx * kx)
    nsh = n0 // 2
    idx = xp.where(r < nsh, xp.floor(r).astype(xp.int32), xp.int32(nsh))
    del r
    wx = np.full(nx // 2 + 1, 2.0, dtype=np.float32)
    once = [0] + ([nx // 2] if nx % 2 == 0 else [])      # the columns counted once (x = 0 and x = N/2)
    wx[once] = 1.0
    ratio = xp.abs(F1 + F2)                               # |S|/|Nz| in place: 0 where |Nz| = 0
    den = xp.abs(F1 - F2)
    safe = xp.where(den > 0, den, 1.0)
    ratio /= safe
    del safe
    ratio *= den > 0
    del den
    ratio = ratio.astype(xp.float32, copy=False)
    ratio *= xp.asarray(wx)[None, None, :]                # Hermitian weights, in place
    s = xp.bincount(idx.ravel(), weights=ratio.ravel(), minlength=nsh + 1)
    del ratio
    # the weights' sum per shell, exactly (integers): twice every coefficient, less the columns counted once
    c = 2 * xp.bincount(idx.ravel(), minlength=nsh + 1) - xp.bincount(idx[:, :, once].ravel(), minlength=nsh + 1)
    s, c = be.to_host(s)[:nsh], be.to_host(c)[:nsh].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        radial = np.where(c > 0, s / np.where(c > 0, c, 1), np.nan)
    return radial, np.arange(nsh, dtype=float)


# ---- crossings -------------------------------------------------------------------------------------------

def first_crossing(x: np.ndarray, y: np.ndarray, level: float, mode: str = "below",
                   first: int = 2) -> tuple[float | None, str | None]:
    """Find the linearly interpolated ``x`` where ``y`` first goes below or above ``level``.

    ``mode='below'`` or ``'above'``; the search starts at index ``first`` (the first shells are ignored).

    Returns ``(x_cross, None)`` or ``(None, reason)``: the curve never crosses, or it is already past the
    level at index ``first``.
    """
    y = np.asarray(y, dtype=float)
    x = np.asarray(x, dtype=float)
    past = (y < level) if mode == "below" else (y > level)
    past = past & np.isfinite(y)
    idx = np.flatnonzero(past[first:])
    if idx.size == 0:
        side = "above" if mode == "below" else "below"
        return None, f"the curve stays {side} {level:g} up to the last shell"
    i = int(idx[0]) + first
    if i == first:
        if i == 0 or not np.isfinite(y[i - 1]) or ((y[i - 1] < level) if mode == "below" else (y[i - 1] > level)):
            side = "below" if mode == "below" else "above"
            return None, f"the curve is already {side} {level:g} at the first shells"
    y0, y1 = y[i - 1], y[i]
    t = 0.0 if y1 == y0 else (y0 - level) / (y0 - y1)
    return float(x[i - 1] + t * (x[i] - x[i - 1])), None


def vrs_first_cross(x: np.ndarray, y: np.ndarray, level: float, mode: str = "lesser") -> float | None:
    """Find a crossing of ``level`` by the reference's rule (None when there is none).

    The first index ``i0`` with ``y < level`` (``'lesser'``) or ``> level`` (``'greater'``), required
    ``i0 > 1``, interpolated between ``i0 − 1`` and ``i0``; else None.
    """
    y = np.asarray(y, dtype=float)
    hit = np.flatnonzero(y < level) if mode == "lesser" else np.flatnonzero(y > level)
    if hit.size == 0 or hit[0] <= 1:
        return None
    i = int(hit[0])
    y0, y1 = y[i - 1], y[i]
    t = 0.0 if y1 == y0 else (y0 - level) / (y0 - y1)
    return float(x[i - 1] + t * (x[i] - x[i - 1]))


# ---- directions ------------------------------------------------------------------------------------------

def fibonacci_hemisphere(n: int) -> np.ndarray:
    """Return ``n`` near-uniform unit vectors ``(x, y, z)`` on the hemisphere ``z ≥ 0``.

    Fibonacci lattice: ``z_i = 1 − (i + ½)/n``, azimuth ``i·π(3 − √5)``.
    """
    i = np.arange(n, dtype=float)
    z = 1.0 - (i + 0.5) / n
    rho = np.sqrt(np.clip(1.0 - z * z, 0.0, 1.0))
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    return np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=1)


def _cube_bin_centres(nc: int) -> np.ndarray:
    """Return the unit centres of the equiangular cube-map cells on the faces +x, +y, +z: ``[3·nc², 3]``."""
    a = (np.arange(nc) + 0.5) / nc * (math.pi / 2) - math.pi / 4
    ta = np.tan(a)
    A, B = np.meshgrid(ta, ta, indexing="ij")
    out = []
    for face in range(3):
        v = np.zeros((nc, nc, 3))
        o1, o2 = [(1, 2), (0, 2), (0, 1)][face]
        v[..., face] = 1.0
        v[..., o1] = A
        v[..., o2] = B
        out.append(v.reshape(-1, 3))
    c = np.concatenate(out)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


class DirectionBins:
    """Coefficients of a :class:`HalfSpectrum` binned by shell and by axis direction.

    The axis of a coefficient (its direction up to sign) is binned on the faces +x, +y, +z of an
    equiangular cube map with ``nc × nc`` cells per face (cells of about ``90°/nc``).  ``index`` is the
    combined ``shell·nbins + bin`` per coefficient (coefficients beyond Nyquist go to a discarded slot);
    ``centres`` the unit axis of each bin.  A cone-weighted directional sum is then
    ``sums[shell, bin] @ W[bin, direction]`` with ``W`` the cone weight of the bin centre.
    """

    def __init__(self, geo: HalfSpectrum, nc: int = DEFAULT_CUBE_CELLS):
        xp = geo.be.xp
        self.geo = geo
        self.nc = int(nc)
        self.nbins = 3 * self.nc * self.nc
        # in z slabs of an eighth of the half grid: the dozen float32/int temporaries of the binning then take
        # about 2.5 bytes per voxel of the map instead of 20 (elementwise: the same numbers as in one piece)
        index = xp.empty(geo.half_shape, dtype=xp.int32)
        size = math.prod(geo.half_shape)
        for zs in _slabs(geo.half_shape, max(SLAB_MIN, size // SLABS)):
            index[zs] = self._slab_index(zs)
        self.index = index.ravel()
        self.centres = _cube_bin_centres(self.nc)

    def _slab_index(self, zs: slice):
        """Return the combined ``shell·nbins + bin`` (int32) of the coefficients in the z planes ``zs``."""
        geo = self.geo
        xp = geo.be.xp
        ux, uy, uz = geo.unit_vectors(zs)
        ax, ay, az = xp.abs(ux), xp.abs(uy), xp.abs(uz)
        face = xp.where((ax >= ay) & (ax >= az), 0, xp.where(ay >= az, 1, 2)).astype(xp.int32)
        del ax, ay, az
        dom = xp.where(face == 0, ux, xp.where(face == 1, uy, uz))
        dom = xp.where(dom == 0, xp.float32(1.0), dom)
        o1 = xp.where(face == 0, uy, ux) / dom   # the first other axis (y for +x, x for +y and +z)
        o2 = xp.where(face == 2, uy, uz) / dom   # the second other axis (z for +x and +y, y for +z)
        del ux, uy, uz, dom
        scale = xp.float32(self.nc / (math.pi / 2))
        off = xp.float32(math.pi / 4)
        i = xp.clip(xp.floor((xp.arctan(o1) + off) * scale), 0, self.nc - 1).astype(xp.int32)
        del o1
        j = xp.clip(xp.floor((xp.arctan(o2) + off) * scale), 0, self.nc - 1).astype(xp.int32)
        del o2
        b = face * (self.nc * self.nc) + i * self.nc + j
        del face, i, j
        shell = geo.shell[zs]
        return xp.where(shell < geo.nshell, shell * self.nbins + b, xp.int32(geo.nshell * self.nbins)).astype(xp.int32)

    def sums(self, *terms) -> np.ndarray:
        """``[len(terms), nshell, nbins]`` float64 (host) sums of each Hermitian-weighted term per (shell, bin).

        As :func:`shell_sums`, the caller gives the terms up (each is weighted in place).  Pass one term per call
        where memory matters (each call returns ``[1, nshell, nbins]``).
        """
        geo = self.geo
        n = geo.nshell * self.nbins
        out = []
        for t in terms:
            t *= geo.weight
            s = geo.be.xp.bincount(self.index, weights=t.ravel(), minlength=n + 1)[:n]
            out.append(geo.be.to_host(s).astype(np.float64).reshape(geo.nshell, self.nbins))
        return np.stack(out)


def cone_weights(centres: np.ndarray, directions: np.ndarray, half_angle_deg: float,
                 kind: str = "hard") -> np.ndarray:
    """``[nbins, ndir]`` weight of each bin axis in the double cone around each direction.

    ``kind='hard'``: 1 inside ``|cos| ≥ cos(α)``; ``kind='gauss'``: ``exp(−4·(|cos| − 1)²/(cos α − 1)²)``
    inside the cone (e⁻⁴ at its edge) and 0 outside.
    """
    c = np.abs(centres @ directions.T)
    ca = math.cos(math.radians(half_angle_deg))
    inside = c >= ca
    if kind == "hard":
        return inside.astype(np.float64)
    return np.where(inside, np.exp(-4.0 * (c - 1.0) ** 2 / (ca - 1.0) ** 2), 0.0)


def directional_fsc(binned: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Return the directional FSC ``[nshell, ndir]`` from binned ``(cross, p1, p2)`` sums and cone weights ``W``.

    Host arrays; ``W`` is sparse (a cone covers a few % of the bins), so the product is a sparse one.
    """
    import scipy.sparse

    _, nsh, nb = binned.shape
    Wt = scipy.sparse.csr_matrix(np.ascontiguousarray(W.T))
    prod = np.asarray(Wt @ binned.reshape(3 * nsh, nb).T).T.reshape(3, nsh, -1)
    cross, p1, p2 = prod
    return fsc_ratio(cross, p1, p2)
