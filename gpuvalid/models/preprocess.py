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
    b = xp.empty_like(a)
    for axis in range(V.ndim):                       # a → b → a → b (3-D)
        be.ndimage.gaussian_filter1d(a, LOCAL_RMS_SIGMA_VOX, axis=axis, output=b, mode="reflect")
        a, b = b, a
    del b
    a += xp.float32(eps)
    xp.sqrt(a, out=a)
    xp.divide(V, a, out=a)
    return a


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
