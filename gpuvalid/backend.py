"""Array backend: the one module that decides NumPy/SciPy (CPU) or CuPy/cupyx (CUDA).

Analyses receive a :class:`Backend` and use ``be.xp`` (NumPy or CuPy), ``be.ndimage``
(``scipy.ndimage`` or ``cupyx.scipy.ndimage``) and the FFT helpers ``be.rfftn`` etc.; they never
import cupy themselves.  Raw CUDA sources live in the top-level ``kernels/`` folder (shipped in the wheel
as ``gpuvalid/kernels``) and are compiled on first use by :meth:`Backend.kernel`; CuPy keeps every compiled
kernel (raw modules and its own element-wise/reduction kernels) in ``$CUPY_CACHE_DIR`` (default
``~/.cupy/kernel_cache``), so only a node's first run pays for NVRTC.  NumPy is imported with this module;
SciPy and CuPy only when a backend that needs them is created.
"""

from __future__ import annotations

import math
import os
import platform
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import BackendError

__all__ = ["Backend", "get_backend", "cuda_available", "kernel_dirs", "find_kernel_source"]


def kernel_dirs() -> list[Path]:
    """Return the folders searched for ``*.cu`` sources, in order.

    The order is ``$GPUVALID_KERNELS``, the installed package (``gpuvalid/kernels``, shipped in the wheel),
    the top-level ``kernels/`` of a source checkout.
    """
    dirs = []
    if os.environ.get("GPUVALID_KERNELS"):
        dirs.append(Path(os.environ["GPUVALID_KERNELS"]))
    here = Path(__file__).resolve().parent
    dirs.append(here / "kernels")
    if (here.parent / "pyproject.toml").is_file():  # a source checkout, not some site-packages/kernels
        dirs.append(here.parent / "kernels")
    return [d for d in dirs if d.is_dir()]


def find_kernel_source(filename: str) -> Path:
    """Return the path of CUDA source ``filename`` (e.g. ``"spiral.cu"``) in the first folder of :func:`kernel_dirs`.

    Raises
    ------
    BackendError
        When no folder of :func:`kernel_dirs` holds ``filename``.
    """
    for d in kernel_dirs():
        p = d / filename
        if p.is_file():
            return p
    raise BackendError(f"CUDA kernel source {filename!r} not found (searched {[str(d) for d in kernel_dirs()]})")


#: CuPy plans cuFFT transforms with 32-bit sizes and distances: it cannot transform 2³¹ elements or more at once
#: (cupy/cupy#4406), and a plan's work area can be as large as the transform.  On a device, a complex 3-D
#: transform of at least this many elements (a 1 Å working grid of 1,024³: a 588³ map at 1.742 Å) runs as
#: 2-D transforms of z-slabs and 1-D transforms of y-slabs of at most FFT_SLAB_ELEMENTS each.
FFT_SLABS_ABOVE = 2 ** 30
FFT_SLAB_ELEMENTS = 2 ** 27
#: cuFFT reads and writes at addresses aligned to its complex type (8 bytes in single precision, 16 in double)
#: and answers CUFFT_INVALID_VALUE otherwise (cupy/cupy#9229): every slab handed to it starts at a multiple of
#: FFT_ALIGN_BYTES from a base that is itself aligned (a z-slab of a float32 map with an odd number of voxels
#: per plane would start 4 bytes off)
FFT_ALIGN_BYTES = 16
#: boolean-mask selections of more elements go by slabs on a GPU (:meth:`Backend.masked`)
MASK_SLAB_ELEMENTS = 2 ** 30


def _address(a) -> int:
    """Address (bytes) of ``a``'s first element: CuPy's ``data.ptr``, NumPy's ``ctypes.data``."""
    data = a.data
    return int(data.ptr) if hasattr(data, "ptr") else int(a.ctypes.data)


def _slab_step(plane_elements: int, itemsize: int) -> int:
    """Planes per slab: at most ``FFT_SLAB_ELEMENTS`` elements, and a whole number of ``FFT_ALIGN_BYTES``.

    The step is a multiple of ``FFT_ALIGN_BYTES / gcd(plane bytes, FFT_ALIGN_BYTES)`` planes (rounded down,
    at least one such multiple), so that every slab of an aligned array starts aligned.
    """
    q = FFT_ALIGN_BYTES // math.gcd(int(plane_elements) * int(itemsize), FFT_ALIGN_BYTES)
    step = max(1, FFT_SLAB_ELEMENTS // int(plane_elements))
    return max(q, step - step % q)


class Backend:
    """Namespace of array functions for one device.

    Attributes: ``name`` ('numpy' or 'cupy'), ``device`` ('cpu' or 'cuda:N'), ``xp``, ``ndimage``,
    ``is_gpu``.  FFT helpers use all CPU cores (``workers=-1``) on the CPU path and cuFFT (with CuPy's
    plan cache) on the GPU path.
    """

    def __init__(self, name: str, device: str, xp, ndimage, fft, device_id: int | None = None):
        self.name = name
        self.device = device
        self.xp = xp
        self.ndimage = ndimage
        self._fft = fft
        self.device_id = device_id
        self.is_gpu = name == "cupy"
        self._kernels: dict = {}
        #: complex 3-D transforms of at least this many elements go by slabs (:meth:`_fftn_slabs`)
        self.fft_slabs_above = FFT_SLABS_ABOVE if self.is_gpu else None

    def __repr__(self) -> str:
        return f"Backend({self.device})"

    # ---- data movement -------------------------------------------------------------------
    def asarray(self, a, dtype=None):
        """Array on this backend's device (no copy when already there)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_host(self, a) -> np.ndarray:
        """NumPy copy of ``a`` (no copy on the CPU backend)."""
        if self.is_gpu and hasattr(a, "get"):
            return a.get()
        return np.asarray(a)

    def scalar(self, a) -> float:
        """Python float of a 0-d array (synchronises on GPU)."""
        return float(self.to_host(a))

    def masked(self, a, mask):
        """``a[mask]`` (row-major order) for a boolean ``mask`` of ``a``'s shape, on arrays of any size.

        On a GPU, arrays of more than ``MASK_SLAB_ELEMENTS`` go by slabs along the first axis: CuPy places
        the selected elements by a scan of the mask, and its scans went wrong past 2³¹–2³² elements
        (cupy/cupy#9841, #10268), which a working grid at 1 Å reaches (1700³).
        """
        if not self.is_gpu or a.ndim == 0 or a.size <= MASK_SLAB_ELEMENTS:
            return a[mask]
        step = max(1, MASK_SLAB_ELEMENTS // max(1, a.size // a.shape[0]))
        return self.xp.concatenate([a[i:i + step][mask[i:i + step]] for i in range(0, a.shape[0], step)])

    def flatnonzero(self, a):
        """``xp.flatnonzero(a)`` (int64 flat indices, ascending) for arrays of any size.

        On a GPU, by slabs of ``MASK_SLAB_ELEMENTS`` of the flattened array, like :meth:`masked`.
        """
        flat = a.reshape(-1)
        if not self.is_gpu or flat.size <= MASK_SLAB_ELEMENTS:
            return self.xp.flatnonzero(flat)
        xp, step = self.xp, MASK_SLAB_ELEMENTS
        return xp.concatenate([xp.flatnonzero(flat[i:i + step]) + i for i in range(0, flat.size, step)])

    def index_dtype(self, size: int):
        """Return the dtype of flat indices into an array of ``size`` elements: int32 below 2³¹, else int64.

        Half the memory of int64 for the per-voxel (or per-coefficient) indices the sections hold.
        """
        return self.xp.int32 if int(size) < 2 ** 31 else self.xp.int64

    def mask_indices(self, mask):
        """Return the flat indices (ascending) of the true voxels of ``mask``, as :meth:`flatnonzero` finds them.

        In :meth:`index_dtype` (int32 below 2³¹ elements).
        """
        return self.flatnonzero(mask).astype(self.index_dtype(mask.size), copy=False)

    def hypot_in_place(self, a, b):
        """Return ``√(a² + b²)`` written into ``a`` (float arrays of one shape; ``b`` may be destroyed).

        One fused kernel on a GPU (``hypot``: one read of each array, one write); on the CPU the squares and
        the root in place, because NumPy's float32 ``hypot`` calls the C library per element (about 10 times
        slower on a 128³ map).  The two agree to a few float32 ulps.
        """
        xp = self.xp
        if self.is_gpu:
            return xp.hypot(a, b, out=a)
        a *= a
        b *= b
        a += b
        return xp.sqrt(a, out=a)

    def synchronize(self) -> None:
        """Wait until this backend's device has finished its queued work (nothing to do on CPU)."""
        if self.is_gpu:
            self.xp.cuda.Device(self.device_id).synchronize()

    # ---- FFTs ------------------------------------------------------------------------------
    def _kw(self):
        return {} if self.is_gpu else {"workers": -1}

    def fftn(self, a, s=None, axes=None, overwrite_x: bool = False):
        """Compute the complex FFT.

        ``overwrite_x`` lets the transform reuse ``a``'s memory (cuFFT runs a C2C transform of a contiguous array
        in place: no second array of the same size on the device).
        """
        if self._by_slabs(a, s, axes):
            return self._fftn_slabs(a, False, overwrite_x)
        if self._by_volumes(a, s, axes):
            return self._fftn_volumes(a, False, overwrite_x)
        return self._fft.fftn(a, s=s, axes=axes, overwrite_x=overwrite_x, **self._kw())

    def ifftn(self, a, s=None, axes=None, overwrite_x: bool = False):
        """Inverse of :meth:`fftn` (same ``overwrite_x`` rule)."""
        if self._by_slabs(a, s, axes):
            return self._fftn_slabs(a, True, overwrite_x)
        if self._by_volumes(a, s, axes):
            return self._fftn_volumes(a, True, overwrite_x)
        return self._fft.ifftn(a, s=s, axes=axes, overwrite_x=overwrite_x, **self._kw())

    def _by_slabs(self, a, s, axes, elements: int | None = None) -> bool:
        """Whether a 3-D transform of ``a`` (of ``elements`` elements: ``a.size`` unless given) goes by slabs."""
        return (self.fft_slabs_above is not None and s is None and axes in (None, (0, 1, 2))
                and a.ndim == 3 and (a.size if elements is None else elements) >= self.fft_slabs_above)

    def _by_volumes(self, a, s, axes) -> bool:
        """Tell whether a batch of 3-D transforms is too large for one plan and goes one volume at a time.

        The batch is ``a`` of more than 3 axes, transformed over its last three.
        """
        return (self.fft_slabs_above is not None and s is None and a.ndim > 3 and axes is not None
                and tuple(x % a.ndim for x in axes) == tuple(range(a.ndim - 3, a.ndim))
                and a.size >= self.fft_slabs_above)

    def _complex_work(self, a, overwrite_x: bool):
        """Return ``a`` itself when it may be transformed in place, else a complex copy.

        In place means ``overwrite_x``, complex and C-contiguous; the copy is a C-contiguous complex64
        (complex128 for double precision).
        """
        xp = self.xp
        ctype = xp.complex128 if a.dtype in (xp.float64, xp.complex128) else xp.complex64
        if overwrite_x and a.dtype == ctype and a.flags.c_contiguous:
            return a
        return xp.array(a, dtype=ctype, order="C")

    def _fftn_volumes(self, a, inverse: bool, overwrite_x: bool):
        """Compute the 3-D (inverse) FFT of each volume ``a[i, ...]`` of a batch in place.

        Each volume goes by :meth:`fftn`'s rules (by slabs when large itself): the same numbers as one batched
        transform, for batches of 2³⁰ elements or more (one plan could not hold them: cupy/cupy#4406).
        """
        a = self._complex_work(a, overwrite_x)
        f = self.ifftn if inverse else self.fftn
        for i in np.ndindex(*a.shape[:-3]):
            vol = a[i]                                  # contiguous
            r = f(vol, overwrite_x=True)
            if r is not vol:
                vol[...] = r
            del r
        return a

    def _fftn_slabs(self, a, inverse: bool, overwrite_x: bool):
        """Compute the 3-D complex (inverse) FFT of ``a`` by slabs.

        2-D transforms over (y, x) of z-slabs, then 1-D transforms over z of y-slabs (each copied to a
        contiguous block and back), every plan at most ``FFT_SLAB_ELEMENTS``: the same transform and
        normalisation as :meth:`fftn`/:meth:`ifftn`, for arrays that cuFFT cannot plan at once.  In place on a
        complex64/complex128 C-contiguous ``a`` with ``overwrite_x``, else on a complex copy.
        """
        a = self._complex_work(a, overwrite_x)
        f = self._fft.ifftn if inverse else self._fft.fftn
        nz, ny, nx = a.shape
        step = _slab_step(ny * nx, a.itemsize)
        for z0 in range(0, nz, step):
            blk = a[z0:z0 + step]                       # contiguous
            r = f(blk, axes=(1, 2), overwrite_x=True, **self._kw())
            if r is not blk:
                blk[...] = r
            del r
        self._axis0_by_slabs(a, inverse)
        return a

    def rfftn(self, a, s=None, axes=None):
        """Compute the real-to-complex FFT.

        The result is the half spectrum over the last axis; by slabs like :meth:`fftn` for large 3-D maps.
        """
        if self._by_slabs(a, s, axes):
            return self._rfftn_slabs(a)
        return self._fft.rfftn(a, s=s, axes=axes, **self._kw())

    def irfftn(self, a, s=None, axes=None, overwrite_x: bool = False):
        """Compute the inverse of :meth:`rfftn` (``s``: the real output's shape).

        ``overwrite_x`` lets the transform destroy ``a`` instead of working on a copy (a complex-to-real
        transform overwrites its input).
        """
        if s is not None and len(s) == 3 and self._by_slabs(a, None, axes, elements=math.prod(int(n) for n in s)):
            return self._irfftn_slabs(a, tuple(int(n) for n in s), overwrite_x)
        if not self.is_gpu and overwrite_x and axes is None and s is not None and self._lean_c2r(a, s):
            return self._irfftn_in_place(a, tuple(int(n) for n in s))
        return self._fft.irfftn(a, s=s, axes=axes, overwrite_x=overwrite_x, **self._kw())

    @staticmethod
    def _lean_c2r(a, s) -> bool:
        """Whether ``a`` is the whole half spectrum of a real map of shape ``s`` (C-contiguous, complex)."""
        return (a.ndim >= 2 and len(s) == a.ndim and a.flags.c_contiguous
                and a.dtype in (np.complex64, np.complex128)
                and tuple(a.shape) == tuple(int(n) for n in s[:-1]) + (int(s[-1]) // 2 + 1,))

    def _irfftn_in_place(self, a, s: tuple):
        """Compute :meth:`irfftn` on the CPU without SciPy's complex temporary (``a`` is destroyed).

        ``scipy.fft.irfftn`` copies the half spectrum for its complex passes even with ``overwrite_x``.  Here they
        run in place on ``a`` unscaled, then the complex-to-real pass on the last axis, then the ``1/N``: the
        passes and the scaling of pocketfft's own ``irfftn`` (the same float32 numbers, checked in the tests),
        with one map-sized array less.
        """
        kw = self._kw()
        y = self._fft.ifftn(a, axes=tuple(range(a.ndim - 1)), norm="forward", overwrite_x=True, **kw)
        v = self._fft.irfft(y, n=s[-1], axis=-1, norm="forward", **kw)
        del y
        v *= v.dtype.type(np.longdouble(1) / math.prod(s))
        return v

    def _rfftn_slabs(self, a):
        """Compute :meth:`rfftn` of a 3-D real ``a`` by slabs.

        2-D real transforms over (y, x) of z-slabs, then 1-D complex transforms over z of y-slabs of the half
        spectrum (in place, each slab at most ``FFT_SLAB_ELEMENTS``).
        """
        xp = self.xp
        ctype = xp.complex128 if a.dtype == xp.float64 else xp.complex64
        if _address(a) % FFT_ALIGN_BYTES or not a.flags.c_contiguous:
            a = a.copy()                                 # an aligned, contiguous base for the slabs
        nz, ny, nx = a.shape
        out = xp.empty((nz, ny, nx // 2 + 1), dtype=ctype)
        step = _slab_step(ny * nx, a.itemsize)
        for z0 in range(0, nz, step):
            out[z0:z0 + step] = self._fft.rfftn(a[z0:z0 + step], axes=(1, 2), **self._kw())
        self._axis0_by_slabs(out, inverse=False)
        return out

    def _irfftn_slabs(self, a, s: tuple, overwrite_x: bool):
        """Compute :meth:`irfftn` to the real shape ``s`` by slabs.

        1-D inverse transforms over z of y-slabs of the half spectrum (in place on ``a`` with ``overwrite_x``,
        else on a copy), then 2-D complex-to-real transforms over (y, x) of z-slabs into the output.
        """
        xp = self.xp
        if a.shape != (s[0], s[1], s[2] // 2 + 1):
            raise ValueError(f"irfftn by slabs: a half spectrum of shape {a.shape} is not that of a {s} map")
        a = self._complex_work(a, overwrite_x)
        self._axis0_by_slabs(a, inverse=True)
        rtype = xp.float64 if a.dtype == xp.complex128 else xp.float32
        out = xp.empty(s, dtype=rtype)
        step = _slab_step(s[1] * s[2], out.itemsize)     # aligned output slabs; ``a``'s start on whole complex
        # elements, all the alignment a complex-to-real input needs
        for z0 in range(0, s[0], step):
            blk = a[z0:z0 + step]                       # contiguous, destroyed by the C2R transform
            out[z0:z0 + step] = self._fft.irfftn(blk, s=s[1:], axes=(1, 2), overwrite_x=True, **self._kw())
            del blk
        return out

    def _axis0_by_slabs(self, a, inverse: bool) -> None:
        """Compute the 1-D (inverse) FFT over the first axis, in place on a C-contiguous complex ``a``.

        It goes by y-slabs copied to contiguous blocks of at most ``FFT_SLAB_ELEMENTS``.
        """
        xp = self.xp
        f = self._fft.ifftn if inverse else self._fft.fftn
        nz, ny, nx = a.shape
        step = max(1, FFT_SLAB_ELEMENTS // (nz * nx))
        for y0 in range(0, ny, step):
            blk = xp.ascontiguousarray(a[:, y0:y0 + step])
            a[:, y0:y0 + step] = f(blk, axes=(0,), overwrite_x=True, **self._kw())
            del blk

    def fftfreq(self, n: int, d: float = 1.0):
        """Return the sample frequencies of an ``n``-point FFT (cycles per unit of ``d``), on this device."""
        return self.xp.asarray(np.fft.fftfreq(n, d))

    def rfftfreq(self, n: int, d: float = 1.0):
        """Return the sample frequencies of an ``n``-point real FFT's half spectrum, on this device."""
        return self.xp.asarray(np.fft.rfftfreq(n, d))

    # ---- raw kernels -----------------------------------------------------------------------
    def module(self, filename: str, options: tuple = ("--std=c++17",)):
        """Return the compiled ``cupy.RawModule`` for ``kernels/<filename>`` (cached). GPU only.

        Raises
        ------
        BackendError
            When this backend is not a CUDA backend.
        """
        if not self.is_gpu:
            raise BackendError("raw CUDA kernels need a CUDA backend")
        key = (filename, tuple(options))
        if key not in self._kernels:
            src = find_kernel_source(filename).read_text()
            self._kernels[key] = self.xp.RawModule(code=src, options=tuple(options))
        return self._kernels[key]

    def kernel(self, filename: str, name: str, options: tuple = ("--std=c++17",)):
        """One ``__global__`` function of ``kernels/<filename>`` (extern "C" name)."""
        return self.module(filename, options).get_function(name)

    # ---- memory and description ----------------------------------------------------------
    def free_memory_bytes(self) -> int | None:
        """Free device memory (GPU) or None on CPU."""
        if not self.is_gpu:
            return None
        free, _total = self.xp.cuda.Device(self.device_id).mem_info
        pool = self.xp.get_default_memory_pool()
        return int(free + pool.free_bytes())

    def free_pool(self) -> None:
        """Return cached device blocks (between maps in batch runs).

        The cuFFT plans go first: their work areas are pool blocks, which only become free once the plans are
        dropped.
        """
        if self.is_gpu:
            self.release_fft_plans()
            self.xp.get_default_memory_pool().free_all_blocks()

    def release_fft_plans(self) -> None:
        """Drop CuPy's cached cuFFT plans (after a section).

        Each holds its work area, up to the size of its transform, in the memory pool, where the next section
        would count it as used.  The plans are removed one by one: ``PlanCache.clear()`` also runs a full
        ``gc.collect()``, even on an empty cache (40–60 ms with torch loaded: 0.46 s of the 1.16 s that the
        eight sections of a 384³ map took on an H200, bench/RESULTS.md).  The cache holds the only reference
        to a plan, so each one, and its work area, is freed as it leaves.
        """
        if self.is_gpu:
            cache = self.xp.fft.config.get_plan_cache()
            for key in [k for k, _ in cache]:       # (key, node) pairs, most recently used first
                del cache[key]

    def info(self) -> dict:
        """Describe the backend and device for ``gpuvalid info`` and the report."""
        import scipy

        d = {"backend": self.name, "device": self.device, "numpy": np.__version__, "scipy": scipy.__version__}
        if self.is_gpu:
            cp = self.xp
            props = cp.cuda.runtime.getDeviceProperties(self.device_id)
            name = props["name"]
            d["device_name"] = name.decode() if isinstance(name, bytes) else str(name)
            free, total = cp.cuda.Device(self.device_id).mem_info
            d["memory_total_GiB"] = round(total / 2**30, 2)
            d["memory_free_GiB"] = round(free / 2**30, 2)
            d["cupy"] = cp.__version__
            d["cuda_runtime"] = cp.cuda.runtime.runtimeGetVersion()
            d["cuda_driver"] = cp.cuda.runtime.driverGetVersion()
            d["compute_capability"] = f"{props['major']}.{props['minor']}"
        else:
            d["device_name"] = platform.processor() or platform.machine()
            d["cpu_cores"] = os.cpu_count()
        return d


def _import_cupy():
    try:
        import cupy  # noqa: F401  (the one place cupy is imported)
        import cupyx.scipy.fft
        import cupyx.scipy.ndimage
    except Exception as exc:  # ImportError, or a CUDA library failing to load
        raise BackendError(f"CuPy is not usable here ({type(exc).__name__}: {exc}); "
                           "install gpuvalid[cuda12] or gpuvalid[cuda13], or use --device cpu") from None
    return cupy, cupyx.scipy.fft, cupyx.scipy.ndimage


@lru_cache(maxsize=None)
def cuda_available() -> bool:
    """Return True when CuPy imports and at least one CUDA device answers."""
    try:
        cp, _, _ = _import_cupy()
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@lru_cache(maxsize=None)
def get_backend(device: str = "auto") -> Backend:
    """Return the backend for ``'cpu'``, ``'cuda'``/``'cuda:N'`` or ``'auto'`` (GPU 0 when one works, else CPU).

    Raises
    ------
    BackendError
        When the device name is not understood, CuPy is not usable, or the CUDA device does not answer or
        does not exist.
    """
    dev = (device or "auto").strip().lower()
    if dev == "auto":
        return get_backend("cuda:0") if cuda_available() else get_backend("cpu")
    if dev in ("cpu", "numpy"):
        import scipy.fft  # imported here: a GPU run or ``gpuvalid --help`` need not load SciPy for the backend
        import scipy.ndimage

        return Backend("numpy", "cpu", np, scipy.ndimage, scipy.fft)
    if dev in ("cuda", "gpu") or dev.startswith(("cuda:", "gpu:")):
        idx_txt = dev.split(":", 1)[1] if ":" in dev else "0"
        try:
            idx = int(idx_txt)
        except ValueError:
            raise BackendError(f"bad device {device!r}: use cpu, auto or cuda:N") from None
        cp, cfft, cnd = _import_cupy()
        try:
            n = cp.cuda.runtime.getDeviceCount()
        except Exception as exc:
            raise BackendError(f"no CUDA device answers ({exc}); use --device cpu") from None
        if idx >= n:
            raise BackendError(f"device cuda:{idx} requested but only {n} CUDA device(s) found")
        cp.cuda.Device(idx).use()
        return Backend("cupy", f"cuda:{idx}", cp, cnd, cfft, device_id=idx)
    raise BackendError(f"bad device {device!r}: use cpu, auto or cuda:N")
