"""The spiral-amplitude engine: local amplitude of a map in thin Fourier shells (monogenic signal).

For a shell at frequency ``f0`` (Å⁻¹) and Gaussian width ``w`` (Å⁻¹) the shell filter is
``S(f) = exp(−(|f| − f0)² / (2w²))`` normalised to ``Σ S = 1`` over the full Fourier grid, and the spiral
(Riesz) filters are ``H_j(f) = −i·f_j/|f|`` (0 at the origin).  The local amplitude is

    A = sqrt(v0² + vx² + vy² + vz²),  v0 = IFFT(S·F),  v_j = IFFT(H_j·S·F)

where ``F`` is the spectrum of the (real) map.  All four filtered maps are real, so two of them share
one complex inverse transform: with ``u_j = f_j/|f|`` we have ``i·H_j = u_j`` and

    IFFT(S·F·(1 + u_x))       = v0 + i·vx
    IFFT(S·F·(u_z − i·u_y))   = vy + i·vz

so ``A² = |z1|² + |z2|²`` needs two inverse FFTs per shell instead of four, and no real/imaginary
bookkeeping.  ``H_j`` is set to 0 on the Nyquist plane of axis ``j`` (even boxes), where the sign of
``f_j`` is undefined; this keeps ``v_j`` real (the reference keeps a tiny imaginary Nyquist term there).

The forward transform is one real FFT (``rfftn``).  GPU: extended once to the full grid by Hermitian symmetry.
CPU: ``scipy.fft`` with all cores, float32/complex64 when the map is float32, float64 when the map is
float64; the half spectrum is kept, and each z-slab's full rows, radii and Riesz factors are made per shell
(in cache), so a shell holds the half spectrum, one packed spectrum (inverted in place, then refilled for the
second pair of components) and the amplitude: about 13 B per voxel in float32, where two packed spectra and
whole-grid factors took 40 (``bench/RESULTS.md``).  Measured float32 error against float64 (emd_5168, shells
from 1/15 Å⁻¹ to Nyquist): per voxel 2e-7 relative (median), 5e-6 (99.9 %), 1e-4 at worst where A is close to
0; at most 1e-6 of the largest amplitude (``bench/RESULTS.md``).
GPU: CuPy/cuFFT (plans cached across shells) and the raw kernels of ``kernels/spiral.cu`` — one kernel
builds the packed spectra of several shells per launch and their normalisations, one turns the inverse
transforms into amplitudes, and two accumulate the LocBfactor least-squares sums and LocOccupancy counts.

The accumulators :class:`LogLinearFit` and :class:`OccupancyCounter` consume one shell at a time, so no
more than one batch of amplitude maps is ever held in memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np
import scipy.fft as sfft

from ._checks import check_positive, check_volume, work_dtype

if TYPE_CHECKING:
    from .backend import Backend

__all__ = ["SpiralEngine", "LogLinearFit", "OccupancyCounter", "quantile_at", "frequency_axes"]

KERNELS = "spiral.cu"
_TINY_A = 1e-30   # amplitude floor before the log
_TINY_Y = 1e-37   # floor of A²/(A + noise) (float32 normal range)
_BLOCK = 256
BATCH_VOXELS = 2 ** 23         # voxels of all the shells of one GPU launch (100³: 8 shells, 128³: 4, 203³: 1)
BYTES_PER_SHELL_VOXEL = 20     # device bytes per voxel and shell of a launch (complex64 × 2 in place + A)


def frequency_axes(shape: tuple, voxel_size: float) -> list[np.ndarray]:
    """Signed frequencies (Å⁻¹) of each axis of the full FFT grid (NumPy ``fftfreq`` order)."""
    return [np.fft.fftfreq(n, voxel_size) for n in shape]


def _slabs(shape: tuple, elements: int = 1 << 18) -> list[slice]:
    """Slices along z of about ``elements`` voxels each (at least one plane)."""
    plane = int(np.prod(shape[1:]))
    step = max(1, elements // max(plane, 1))
    return [slice(z, min(z + step, shape[0])) for z in range(0, shape[0], step)]


def _nyquist_index(n: int) -> int | None:
    return n // 2 if n % 2 == 0 else None


def hermitian_full(xp, Fh, shape: tuple):
    """Full complex spectrum of a real map from its ``rfftn`` half spectrum (``F(−k) = conj F(k)``).

    Only slicing (no gathers): index ``−k mod n`` is ``0`` for ``k = 0`` and ``n − k`` otherwise.
    """
    nz, ny, nx = shape
    nxh = Fh.shape[-1]
    F = xp.empty(shape, dtype=Fh.dtype)
    F[:, :, :nxh] = Fh
    if nx > nxh:
        src = Fh[:, :, nx - nxh:0:-1]               # columns nx−kx for kx = nxh … nx−1
        mirror = ((slice(0, 1), slice(0, 1)), (slice(1, None), slice(None, 0, -1)))
        for zd, zs in mirror:
            for yd, ys in mirror:
                F[zd, yd, nxh:] = xp.conj(src[zs, ys])
    return F


class SpiralEngine:
    """Local amplitudes of one map in Fourier shells; the forward FFT is done once.

    Each axis has its own frequency grid, so non-cubic boxes are handled.

    Parameters
    ----------
    be : Backend
        The array backend (:func:`gpuvalid.backend.get_backend`).
    V : array
        The map ``[z, y, x]``, host or device.  Computed in the dtype of :func:`gpuvalid._checks.work_dtype`:
        float64 maps in float64 on the CPU, everything else in float32.
    voxel_size : float
        Ts in Å.
    batch : int, optional
        Shells per GPU launch (default: :meth:`batch_size` decides from the free memory).

    Raises
    ------
    ValueError
        When ``V`` is not a non-empty 3-D array of finite values or ``voxel_size`` is not a positive number
        (a caller's bug: the loaders refuse such maps first).
    """

    def __init__(self, be: Backend, V, voxel_size: float, batch: int | None = None):
        self.be = be
        self.voxel_size = check_positive(voxel_size, "SpiralEngine: voxel size (Å)")
        V = be.asarray(V)
        check_volume(V, "SpiralEngine: the map")
        V = V.astype(work_dtype(be, V.dtype), copy=False)
        self.shape = tuple(int(n) for n in V.shape)
        self.real_dtype = V.dtype
        # the map's spectrum: full on a GPU (the packing kernel reads any coefficient), its rfftn half on the
        # CPU (4 B per voxel less; each slab's full rows are rebuilt from it by Hermitian symmetry)
        Fh = be.rfftn(V)
        self.F = hermitian_full(be.xp, Fh, self.shape) if be.is_gpu else None
        self._Fh = None if be.is_gpu else Fh
        self.nvox = int(np.prod(self.shape))
        self._batch = batch
        self._norms: dict = {}   # Σ S of the shells computed so far, keyed by (f0, w)
        if be.is_gpu:
            self._k_pack = be.kernel(KERNELS, "spiral_pack")
            self._k_mag = be.kernel(KERNELS, "spiral_magnitude")
        else:
            self._build_cpu_grids()

    # ---- grids (CPU) -------------------------------------------------------------------------
    def _build_cpu_grids(self) -> None:
        """Keep the frequency axes (Å⁻¹) only: the radius and Riesz factors are made per slab and shell.

        Three map-sized grids (|f|, 1 + u_x and u_z − i·u_y: 16 B per voxel in float32) are never held; the
        slab's are computed by the same element operations, so the amplitudes do not change by one bit.
        """
        rd = self.real_dtype
        fz, fy, fx = (a.astype(rd) for a in frequency_axes(self.shape, self.voxel_size))
        fz, fy, fx = fz[:, None, None], fy[None, :, None], fx[None, None, :]
        units = []
        for axis, f in enumerate((fz, fy, fx)):
            f = f.copy()
            k = _nyquist_index(self.shape[axis])
            if k is not None:
                f.reshape(-1)[k] = 0.0  # Riesz component undefined on the Nyquist plane
            units.append(f)
        self._axes = (fz * fz, fy * fy, fx * fx)     # squared frequencies, broadcast per axis
        self._units = tuple(units)                    # the same with 0 on each axis's Nyquist plane

    def _full_rows(self, sl: slice, out) -> None:
        """Write the full spectrum's z-rows ``sl`` into ``out`` from the half spectrum (``F(−k) = conj F(k)``)."""
        Fh, (nz, ny, nx) = self._Fh, self.shape
        nxh = Fh.shape[-1]
        out[:, :, :nxh] = Fh[sl]
        if nx > nxh:
            zs = (-np.arange(sl.start, sl.stop)) % nz
            ys = (-np.arange(ny)) % ny
            np.conj(Fh[zs[:, None], ys[None, :], nx - nxh:0:-1], out=out[:, :, nxh:])

    def _spectrum_plane(self, axis: int, k: int):
        """Return the full spectrum's plane ``k`` along ``axis`` (a 2-D array of the other two axes)."""
        if self.F is not None:
            return self.be.xp.take(self.F, k, axis=axis)
        Fh, (nz, ny, nx) = self._Fh, self.shape
        nxh = Fh.shape[-1]
        idx = [np.arange(n) for n in self.shape]
        idx[axis] = np.array([k])
        iz, iy, ix = np.ix_(*idx)
        mirrored = ix >= nxh
        direct = Fh[iz, iy, np.where(mirrored, 0, ix)]
        other = np.conj(Fh[(-iz) % nz, (-iy) % ny, np.where(mirrored, nx - ix, 0)])
        return np.take(np.where(mirrored, other, direct), 0, axis=axis)

    def _slab_grids(self, sl: slice, R, INV, C1=None, C2=None) -> None:
        """Fill |f| (``R``), 1 + u_x (``C1``) and u_z − i·u_y (``C2``) for the z-slab ``sl`` (``INV``: scratch).

        ``u_j = f_j/|f|`` (0 at the origin and on axis j's Nyquist plane); ``C1`` or ``C2`` None: not made.
        """
        fz2, fy2, fx2 = self._axes
        qz, qy, qx = self._units
        np.add(fz2[sl] + fy2, fx2, out=R)
        np.sqrt(R, out=R)
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(1.0, R, out=INV)
        np.copyto(INV, 0.0, where=~(R > 0))
        if C1 is not None:
            np.multiply(qx, INV, out=C1)
            np.add(C1, 1.0, out=C1)
        if C2 is not None:
            np.multiply(qz[sl], INV, out=C2.real)
            np.multiply(qy, INV, out=C2.imag)
            np.negative(C2.imag, out=C2.imag)

    # ---- public API --------------------------------------------------------------------------
    def amplitude(self, f0: float, width: float):
        """Return the local amplitude A (device array, the map's shape) at shell frequency ``f0`` (Å⁻¹).

        ``width`` is the Gaussian shell's σ in Å⁻¹; see :meth:`amplitudes`.
        """
        return next(iter(self.amplitudes([f0], width)))[1]

    def amplitudes(self, freqs: Iterable[float], width: float) -> Iterator[tuple[float, object]]:
        """Yield ``(f0, A)`` for each shell frequency, one at a time (the GPU computes batches).

        Parameters
        ----------
        freqs : iterable of float
            Shell centres f0 in Å⁻¹.
        width : float
            The Gaussian shell's σ w in Å⁻¹.

        Yields
        ------
        tuple
            ``(f0, A)``: A the local amplitude ``sqrt(v0² + vx² + vy² + vz²)`` of the band-passed map and its
            Riesz components (device float32 array, the map's shape).  On the GPU the array of a batch is
            reused: use or copy it before asking for the next.

        Raises
        ------
        ValueError
            When ``width`` is not a positive number (raised when the first shell is asked for).
        """
        freqs = [float(f) for f in freqs]
        width = check_positive(width, "shell width (Å⁻¹)")
        if not self.be.is_gpu:
            for f0 in freqs:
                yield f0, self._amplitude_cpu(f0, width)
            return
        b = self.batch_size(len(freqs))
        for i in range(0, len(freqs), b):
            chunk = freqs[i:i + b]
            A = self._amplitudes_gpu(chunk, width)
            for j, f0 in enumerate(chunk):
                yield f0, A[j]
            del A

    def batch_size(self, n_shells: int) -> int:
        """Return the number of shells per GPU launch.

        At most 8, at most ``BATCH_VOXELS`` voxels in all (a launch that large already fills the GPU: more
        shells per launch buy no speed, only memory) and what fits in half of the free memory
        (``BYTES_PER_SHELL_VOXEL`` per voxel and shell: the packed spectra, transformed in place, and the
        amplitude).
        """
        if self._batch:
            return max(1, min(self._batch, n_shells))
        free = self.be.free_memory_bytes()
        if free is None:
            return 1
        per_shell = BYTES_PER_SHELL_VOXEL * self.nvox
        return int(max(1, min(8, n_shells, BATCH_VOXELS // self.nvox, (free // 2) // per_shell)))

    # ---- CPU path ----------------------------------------------------------------------------
    def _amplitude_cpu(self, f0: float, width: float):
        """Compute one shell on the CPU, in z-slabs of ~2^18 voxels, with one packed spectrum.

        Each element-wise chain then runs in cache (memory traffic, not arithmetic, bounds these steps).  The
        packed spectrum ``S·F·(1 + u_x)`` is inverted in place and its squared modulus summed into ``A``; then
        the same buffer takes ``S·F·(u_z − i·u_y)`` (the slab's factors made again) for the second half of the
        sum.  One map-sized complex buffer instead of two, allocated once and reused (fresh large allocations
        cost page faults); the sums are those of two buffers, in the same order.
        """
        rd, cd = self.real_dtype, self._Fh.dtype
        if getattr(self, "_work", None) is None:
            slabs = _slabs(self.shape)
            n0 = slabs[0].stop - slabs[0].start
            tmp_shape = (n0,) + self.shape[1:]
            self._work = (slabs, np.empty(self.shape, cd),
                          *(np.empty(tmp_shape, rd) for _ in range(4)), *(np.empty(tmp_shape, cd) for _ in range(2)))
        slabs, P, _, t0 = self._work[:4]                   # t0: a real slab of scratch
        norm = self._pack_cpu(P, f0, width, second=False)   # → v0 + i·vx
        self._norms[(f0, width)] = norm
        A = np.empty(self.shape, rd)
        if norm <= 0:
            A.fill(0)
            return A
        z = sfft.ifftn(P, workers=-1, overwrite_x=True)
        for sl in slabs:
            a, t, u = A[sl], t0[:sl.stop - sl.start], z[sl]
            np.multiply(u.real, u.real, out=a)
            np.multiply(u.imag, u.imag, out=t)
            a += t
        del z
        self._pack_cpu(P, f0, width, second=True)           # → vy + i·vz
        z = sfft.ifftn(P, workers=-1, overwrite_x=True)
        inv = rd.type(1.0 / norm)
        for sl in slabs:
            a, t, v = A[sl], t0[:sl.stop - sl.start], z[sl]
            np.multiply(v.real, v.real, out=t)
            a += t
            np.multiply(v.imag, v.imag, out=t)
            a += t
            np.sqrt(a, out=a)
            a *= inv
        return A

    def _pack_cpu(self, P, f0: float, width: float, second: bool) -> float:
        """Fill ``P`` with ``S·F·(1 + u_x)`` (or ``S·F·(u_z − i·u_y)`` when ``second``) by slabs; return ``ΣS``."""
        rd = self.real_dtype
        slabs, _, S0, R0, I0, K0, T0, Q0 = self._work
        k = rd.type(-0.5 / (width * width))
        f0r = rd.type(f0)
        norm = 0.0
        for sl in slabs:
            n = sl.stop - sl.start
            S, T, C = S0[:n], T0[:n], (Q0 if second else K0)[:n]
            self._slab_grids(sl, R0[:n], I0[:n], None if second else C, C if second else None)
            np.subtract(R0[:n], f0r, out=S)
            np.multiply(S, S, out=S)
            np.multiply(S, k, out=S)
            np.exp(S, out=S)
            norm += float(S.sum(dtype=np.float64))
            self._full_rows(sl, T)
            np.multiply(T, S, out=T)                       # S·F
            np.multiply(T, C, out=P[sl])
        return norm

    # ---- GPU path ----------------------------------------------------------------------------
    def _amplitudes_gpu(self, freqs: list[float], width: float):
        xp = self.be.xp
        nb = len(freqs)
        nz, ny, nx = self.shape
        ts = self.voxel_size
        P = xp.empty((nb, 2) + self.shape, dtype=xp.complex64)
        norms = xp.zeros(nb, dtype=xp.float64)
        f0s = xp.asarray(np.asarray(freqs, dtype=np.float32))
        grid = ((self.nvox + _BLOCK - 1) // _BLOCK,)
        self._k_pack(grid, (_BLOCK,), (
            self.F, P, f0s, np.int32(nb), np.float32(0.5 / (width * width)),
            np.int32(nz), np.int32(ny), np.int32(nx),
            np.float32(1.0 / (nz * ts)), np.float32(1.0 / (ny * ts)), np.float32(1.0 / (nx * ts)),
            norms))
        # 2·nb batched complex transforms in place (cuFFT plan cached): no second nb × 16 B per voxel; a batch
        # too large for one plan (a map of 2³⁰ voxels gives 2³¹ elements here) goes one volume at a time
        Z = xp.ascontiguousarray(self.be.ifftn(P, axes=(-3, -2, -1), overwrite_x=True))
        del P
        A = xp.empty((nb,) + self.shape, dtype=xp.float32)
        self._k_mag(grid, (_BLOCK,), (Z, A, norms, np.int32(nb), np.int64(self.nvox)))
        for f0, nrm in zip(freqs, self.be.to_host(norms), strict=True):
            self._norms[(f0, width)] = float(nrm)
        return A

    # ---- reference-compatible amplitude (VRS) -------------------------------------------------
    def reference_nyquist_excess(self, f0: float, width: float):
        """``Σ_j m_j²``: what the reference adds to ``A²`` by keeping ``H_j`` on the Nyquist plane of axis j.

        There ``f_j = −1/(2Ts)`` and ``H_j·S·F`` is anti-Hermitian, so the reference's ``v_j`` gains an
        imaginary term ``i·m_j`` with ``m_j = (−1)^{x_j}/N_j · IFFT2(|f_j|/|f| · S·F on the plane)/ΣS``,
        constant in magnitude along axis j.  Only 2-D transforms are needed.  Call after the shell's
        amplitude (it reuses the shell's ``ΣS``).  Returns a device array of the map's shape.
        """
        xp = self.be.xp
        norm = self._norms.get((float(f0), float(width)))
        if norm is None:
            self.amplitude(f0, width)
            norm = self._norms[(float(f0), float(width))]
        out = xp.zeros(self.shape, dtype=xp.float32)
        if norm <= 0:
            return out
        ts = self.voxel_size
        freqs = frequency_axes(self.shape, ts)
        for axis, n in enumerate(self.shape):
            k = _nyquist_index(n)
            if k is None:
                continue
            others = [a for a in range(3) if a != axis]
            fa = xp.asarray(freqs[others[0]])[:, None]
            fb = xp.asarray(freqs[others[1]])[None, :]
            fj = 1.0 / (2.0 * ts)
            r = xp.sqrt(fa * fa + fb * fb + fj * fj)
            S = xp.exp(-(r - f0) ** 2 / (2.0 * width * width))
            plane = self._spectrum_plane(axis, k)
            m = xp.abs(self.be.ifftn(plane * (S * fj / r), axes=(0, 1))) / (n * norm)
            out += xp.expand_dims((m * m).astype(xp.float32), axis)
        return out

    def reference_amplitude(self, A, f0: float, width: float):
        """Return the reference service's amplitude ``sqrt(A² + Σ_j m_j²)``.

        See :meth:`reference_nyquist_excess` for the Nyquist-plane terms ``m_j``.
        """
        E = self.reference_nyquist_excess(f0, width)
        E += A * A
        return self.be.xp.sqrt(E, out=E)


def quantile_at(be: Backend, A, index, q: float, on_device: bool = False):
    """Return the ``q`` quantile (linear interpolation, NumPy's default) of ``A`` at flat indices ``index``.

    A float; or, with ``on_device`` on a GPU backend, a 0-d device array of ``A``'s dtype that the host does
    not read (CuPy's ``quantile`` reads a flag back; here the CPU's formula runs on the device at positions
    the host knows, so the value is the CPU's, and comparing ``A`` with it is comparing with the float).  The
    sort still makes the host wait for the device: CuPy sorts with Thrust's synchronous policy.  NaN when
    ``index`` is empty.
    """
    vals = A.reshape(-1)[index]
    n = int(vals.size)
    if n == 0:
        return be.xp.full((), np.nan, dtype=vals.dtype) if (on_device and be.is_gpu) else float("nan")
    pos = q * (n - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, n - 1)

    def lerp(a, b):                 # one formula for the host floats and the device's float64 0-d arrays
        return a + (pos - lo) * (b - a)

    if be.is_gpu and on_device:
        srt = be.xp.sort(vals)
        return lerp(srt[lo].astype(be.xp.float64), srt[hi].astype(be.xp.float64)).astype(vals.dtype)
    if be.is_gpu:
        return be.scalar(be.xp.quantile(vals, q))
    # CPU: partition the gathered copy in place (np.quantile would copy it again)
    vals.partition([lo, hi] if hi != lo else lo)
    return lerp(float(vals[lo]), float(vals[hi]))


class LogLinearFit:
    """Per-voxel least-squares line of ``y = ln(A²/(A + noise))`` against ``x`` (LocBfactor).

    Accumulates ``Σy`` and ``Σxy`` per voxel shell by shell (and ``Σx``, ``Σx²``, ``n`` per voxel when only
    points above the noise are fitted; otherwise those are the same scalars for every voxel).  ``x`` is
    shifted by ``x_ref`` (the slope does not change) so float32 sums keep their precision.
    """

    def __init__(self, be: Backend, shape: tuple, x_ref: float = 0.0, above_noise: bool = False):
        xp = be.xp
        self.be = be
        self.shape = tuple(shape)
        self.x_ref = float(x_ref)
        self.above_noise = bool(above_noise)
        self.sy = xp.zeros(self.shape, dtype=xp.float32)
        self.sxy = xp.zeros(self.shape, dtype=xp.float32)
        if self.above_noise:
            self.sx = xp.zeros(self.shape, dtype=xp.float32)
            self.sxx = xp.zeros(self.shape, dtype=xp.float32)
            self.n = xp.zeros(self.shape, dtype=xp.float32)
        else:
            self.sx = self.sxx = self.n = 0.0
        self._k = be.kernel(KERNELS, "lsq_accumulate") if be.is_gpu else None

    def add(self, A, x: float, noise: float) -> None:
        """Add one shell's point ``(x, ln(A²/(A + noise)))`` to every voxel's sums.

        Parameters
        ----------
        A : array
            The shell's local amplitude (device array, the fit's shape).
        x : float
            The shell's abscissa (LocBfactor: f0² in Å⁻²).
        noise : float
            The shell's noise amplitude (negative or non-finite counts as 0); with ``above_noise`` only the
            voxels where ``A > noise`` take the point.
        """
        xs = float(x) - self.x_ref
        noise = max(float(noise), 0.0) if np.isfinite(noise) else 0.0
        if self._k is not None:
            nvox = int(np.prod(self.shape))
            dummy = self.sy
            args = (A.astype(self.be.xp.float32, copy=False), np.float32(noise), np.float32(xs),
                    self.sy, self.sxy,
                    self.sx if self.above_noise else dummy,
                    self.sxx if self.above_noise else dummy,
                    self.n if self.above_noise else dummy,
                    np.int32(1 if self.above_noise else 0), np.int64(nvox))
            self._k(((nvox + _BLOCK - 1) // _BLOCK,), (_BLOCK,), args)
            if not self.above_noise:
                self.sx += xs
                self.sxx += xs * xs
                self.n += 1
            return
        Af = A.astype(np.float32, copy=False)
        if getattr(self, "_work", None) is None:
            slabs = _slabs(self.shape)
            tmp_shape = (slabs[0].stop - slabs[0].start,) + self.shape[1:]
            self._work = (slabs, np.empty(tmp_shape, np.float32), np.empty(tmp_shape, np.float32))
        slabs, AM, Y = self._work
        xs32, n32 = np.float32(xs), np.float32(noise)
        for sl in slabs:                                     # z-slabs: each chain stays in cache
            n = sl.stop - sl.start
            a, am, y = Af[sl], AM[:n], Y[:n]
            np.maximum(a, np.float32(_TINY_A), out=am)
            np.add(am, n32, out=y)
            np.divide(am, y, out=y)
            np.multiply(y, am, out=y)                        # A·A/(A + noise), A² never formed
            np.maximum(y, np.float32(_TINY_Y), out=y)
            np.log(y, out=y)
            if self.above_noise:
                keep = np.greater(a, n32, out=am)            # 0/1 as float32; am is free again
                y *= keep
                self.sy[sl] += y
                self.n[sl] += keep
                keep *= xs32
                self.sx[sl] += keep
                keep *= xs32
                self.sxx[sl] += keep
                y *= xs32
                self.sxy[sl] += y
            else:
                self.sy[sl] += y
                y *= xs32
                self.sxy[sl] += y
        if not self.above_noise:
            self.sx += xs
            self.sxx += xs * xs
            self.n += 1

    def slope(self):
        """Per-voxel slope (device float32); NaN where fewer than 3 points (or a degenerate x spread)."""
        xp = self.be.xp
        n, sx, sxx = self.n, self.sx, self.sxx
        den = n * sxx - sx * sx
        num = n * self.sxy - sx * self.sy
        if self.above_noise:
            ok = (n >= 3) & (den > 0)
            return xp.where(ok, num / xp.where(ok, den, 1.0), xp.nan).astype(xp.float32)
        if n < 2 or den <= 0:
            return xp.full(self.shape, xp.nan, dtype=xp.float32)
        return (num / xp.float32(den)).astype(xp.float32)


class OccupancyCounter:
    """Per-voxel fraction of shells where ``A ≥ q`` (q: the shell's 0.25 quantile in the mask)."""

    def __init__(self, be: Backend, shape: tuple):
        self.be = be
        self.count = be.xp.zeros(tuple(shape), dtype=be.xp.float32)
        self.n = 0
        self._k = be.kernel(KERNELS, "occupancy_accumulate") if be.is_gpu else None

    def add(self, A, q: float) -> None:
        """Count one shell: every voxel where ``A ≥ q`` (``q`` the shell's quantile in the mask) gains one."""
        self.n += 1
        if self._k is not None:
            nvox = int(self.count.size)
            self._k(((nvox + _BLOCK - 1) // _BLOCK,), (_BLOCK,),
                    (A.astype(self.be.xp.float32, copy=False), np.float32(q), self.count, np.int64(nvox)))
        else:
            self.count += A >= q

    def fraction(self):
        """Return the per-voxel fraction of the shells added so far where ``A ≥ q`` (device float32, in [0, 1])."""
        return self.count / max(self.n, 1)
