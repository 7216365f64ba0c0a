"""Map preparation shared by training and inference (the networks see only this), on any backend.

Every function takes an optional backend ``be`` (:mod:`gpuvalid.backend`): arrays stay on its device
(NumPy/SciPy on the CPU, CuPy/cupyx on a GPU); ``be=None`` is the CPU backend with host NumPy arrays
(training and the hand features call it so).

- Working grid: 1 Å/voxel (``WORK_VOXEL_A``; 0.5 Å for the fine local-resolution model), reached by Fourier
  resampling (spectrum crop = low-pass when downsampling, zero padding when upsampling).
- Local-resolution input: the map divided by its local RMS (Gaussian window σ = 3 Å), which removes the
  arbitrary density scale as DeepRes's per-box L2 normalisation does, but stays convolutional.
- Hand: the map on the working grid as it is (the twist features clip it at 0 and are scale-free; a
  low-pass as in DeepHand would remove the groove pattern they measure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..masks import grown_box
from ..resample import WORK_VOXEL_A, fourier_resample, grid_shape, grid_voxel_sizes

if TYPE_CHECKING:
    from ..backend import Backend

LOCAL_RMS_SIGMA_VOX = 3.0
#: reach (voxels) of the local-RMS Gaussian: SciPy's and CuPy's default truncation at 4 σ
LOCAL_RMS_RADIUS = int(4.0 * LOCAL_RMS_SIGMA_VOX + 0.5)


def cpu_backend():
    """Return the CPU backend (NumPy/SciPy, host arrays), the default of every function here."""
    from ..backend import get_backend

    return get_backend("cpu")


def _be(be: Backend | None) -> Backend:
    return cpu_backend() if be is None else be


def working_shape(shape: tuple, voxel_size: float, new_voxel: float = WORK_VOXEL_A) -> tuple:
    """Working-grid box: per axis the edge nearest ``N·Ts/Ts'`` with small prime factors.

    Each edge is within 1 % of ``N·Ts/Ts'`` (:func:`gpuvalid.resample.grid_shape`: fast transforms on both
    devices).
    """
    return grid_shape(shape, voxel_size, new_voxel)


def resample(V, new_shape: tuple, be: Backend | None = None):
    """Fourier-resample a map to ``new_shape`` (same mean value) on ``be``'s device.

    An alias of :func:`gpuvalid.resample.fourier_resample` with the argument order of this module.
    """
    return fourier_resample(_be(be), V, new_shape)


def to_working_grid(V, voxel_size: float, new_voxel: float = WORK_VOXEL_A, be: Backend | None = None) -> tuple:
    """Map resampled to about ``new_voxel`` Å/voxel (1 Å, or 0.5 Å for the fine local-resolution model).

    Returns ``(V1, ts1)`` with ``ts1`` the exact voxel size of each axis (z, y, x; Å, each within 1 % of
    ``new_voxel``); ``V1`` on ``be``'s device.
    """
    shape = working_shape(V.shape, voxel_size, new_voxel)
    return fourier_resample(_be(be), V, shape), grid_voxel_sizes(V.shape, voxel_size, shape)


def locres_input(V, be: Backend | None = None):
    """Map divided by its local RMS (Gaussian window of σ = 3 voxels), on ``be``'s device.

    The Gaussian runs as its three 1-D passes (what ``gaussian_filter`` does, bit for bit on the CPU) between
    two buffers, the first holding ``V²``: with ``V``, three working-grid arrays at a time, where
    ``gaussian_filter(V * V)`` holds four on a device (CuPy's filter keeps its input and two buffers).
    """
    be = _be(be)
    xp = be.xp
    V = be.asarray(V, dtype=xp.float32)
    a = V * V
    eps = 1e-6 * float(xp.mean(a)) + 1e-30
    return _divide_by_local_rms(be, V, a, eps)


def _divide_by_local_rms(be: Backend, V, a, eps: float):
    """``V / sqrt(G_σ(a) + eps)`` with ``a = V²``; ``a`` is overwritten and returned."""
    xp = be.xp
    b = xp.empty_like(a)
    for axis in range(V.ndim):                       # a → b → a → b (3-D)
        be.ndimage.gaussian_filter1d(a, LOCAL_RMS_SIGMA_VOX, axis=axis, output=b, mode="reflect")
        a, b = b, a
    del b
    a += xp.float32(eps)
    xp.sqrt(a, out=a)
    xp.divide(V, a, out=a)
    return a


def _pairwise_square_sum(flat: np.ndarray, lo: int, hi: int, chunk: int) -> np.float32:
    """``Σ flat[lo:hi]²`` in float32, split where NumPy's pairwise summation splits a contiguous sum.

    Only ``chunk`` squares are held at a time; the halves are added in the same tree as ``np.sum(flat²)``
    (the same float32 number on the NumPy versions tested, where the split is at half the length rounded
    down to a multiple of 8).
    """
    n = hi - lo
    if n <= chunk:
        b = flat[lo:hi]
        return np.add.reduce(b * b)
    n2 = n // 2
    n2 -= n2 % 8
    return np.float32(_pairwise_square_sum(flat, lo, lo + n2, chunk) + _pairwise_square_sum(flat, lo + n2, hi, chunk))


def local_rms_eps(V: np.ndarray, chunk: int = 1 << 22) -> float:
    """Return the regulariser of :func:`locres_input`, ``1e-6·mean(V²) + 1e-30``, without a map-sized ``V²``.

    ``V``: a host float32 map.
    """
    flat = np.ascontiguousarray(V, dtype=np.float32).reshape(-1)
    s = _pairwise_square_sum(flat, 0, flat.size, chunk)
    return 1e-6 * float(s.dtype.type(s / flat.size)) + 1e-30


def locres_input_rows(V: np.ndarray, lo: int, hi: int, eps: float) -> np.ndarray:
    """Rows ``lo:hi`` (first axis) of :func:`locres_input` of the host float32 map ``V``, given its ``eps``.

    Computed from those rows and :data:`LOCAL_RMS_RADIUS` more on each side (the map's own edge reflects, as
    in the whole map's filter): each value is the one of the whole map's, bit for bit.
    """
    a0, a1 = max(0, lo - LOCAL_RMS_RADIUS), min(V.shape[0], hi + LOCAL_RMS_RADIUS)
    block = V[a0:a1]
    x = _divide_by_local_rms(cpu_backend(), block, block * block, eps)
    return x[lo - a0:hi - a0]


def mask_to_grid(mask, voxel_size: float, ts1, shape1: tuple, dilate_vox: int, be: Backend | None = None):
    """Map the ``mask`` voxels of the input grid (Ts = ``voxel_size`` Å) to a grid of ``shape1``.

    The new grid has ``ts1`` Å/voxel (one size, or one per axis z, y, x); each mask voxel goes to its nearest
    voxel, and the result is dilated ``dilate_vox`` times (6-connected).  Returns ``(mask1, points)`` with
    ``points`` (n, 3) the fractional ``[z, y, x]`` coordinates of the mask voxels on that grid (row-major
    order of the mask voxels), both on ``be``'s device.
    """
    be = _be(be)
    xp = be.xp
    mask = be.asarray(mask).astype(bool)
    scale = np.broadcast_to(voxel_size / np.asarray(ts1, dtype=np.float64), (3,))
    pts = xp.argwhere(mask) * xp.asarray(scale)
    m1 = xp.zeros(tuple(shape1), bool)
    hi = xp.asarray(np.array(shape1) - 1)
    q = xp.clip(xp.rint(pts).astype(np.int64), 0, hi)
    m1[q[:, 0], q[:, 1], q[:, 2]] = True
    k = int(dilate_vox)
    if k > 0 and int(q.shape[0]):   # dilate the mapped voxels' bounding box grown by k only: nothing else changes
        ends = be.to_host(xp.concatenate([q.min(axis=0), q.max(axis=0)]))   # the mapped voxels' bounds
        box = grown_box(ends[:3], ends[3:], k, shape1)
        # brute_force: CuPy iterates a dilation only so (NotImplementedError otherwise); SciPy gives the same mask
        m1[box] = be.ndimage.binary_dilation(xp.ascontiguousarray(m1[box]), iterations=k, brute_force=True)
    del q
    return m1, pts


def sample_coords(V_at, points, be: Backend | None = None):
    """Trilinear interpolation of ``V_at`` at fractional ``[z, y, x]`` voxel coordinates (n, 3)."""
    be = _be(be)
    return be.ndimage.map_coordinates(V_at, points.T, order=1, mode="nearest")
