"""Map preparation shared by training and inference (host NumPy/SciPy; the networks see only this).

- Working grid: 1 Å/voxel (``WORK_VOXEL_A``; 0.5 Å for the fine local-resolution model), reached by Fourier resampling (spectrum crop = low-pass when
  downsampling, zero padding when upsampling).
- Local-resolution input: the map divided by its local RMS (Gaussian window σ = 3 Å), which removes the
  arbitrary density scale as DeepRes's per-box L2 normalisation does, but stays convolutional.
- Hand: the map on the working grid as it is (the twist features clip it at 0 and are scale-free; a
  low-pass as in DeepHand would remove the groove pattern they measure).
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.ndimage


WORK_VOXEL_A = 1.0
LOCAL_RMS_SIGMA_VOX = 3.0


def working_shape(shape: tuple, voxel_size: float, new_voxel: float = WORK_VOXEL_A) -> tuple:
    return tuple(max(4, int(round(n * voxel_size / new_voxel))) for n in shape)


def resample(V: np.ndarray, new_shape: tuple) -> np.ndarray:
    """Fourier resampling of a host map to ``new_shape`` (densities kept: same mean value)."""
    V = np.asarray(V, dtype=np.float32)
    if tuple(new_shape) == V.shape:
        return V.copy()
    F = np.fft.fftshift(scipy.fft.fftn(V))
    out = np.zeros(new_shape, dtype=np.complex64)
    src, dst = [], []
    for n, m in zip(V.shape, new_shape):
        k = min(n, m)
        cs, cd = n // 2 - k // 2, m // 2 - k // 2
        src.append(slice(cs, cs + k))
        dst.append(slice(cd, cd + k))
    out[tuple(dst)] = F[tuple(src)]
    v = scipy.fft.ifftn(np.fft.ifftshift(out)).real
    return (v * (np.prod(new_shape) / np.prod(V.shape))).astype(np.float32)


def to_working_grid(V: np.ndarray, voxel_size: float, new_voxel: float = WORK_VOXEL_A) -> tuple[np.ndarray, float]:
    """Map resampled to about ``new_voxel`` Å/voxel (1 Å, or 0.5 Å for the fine local-resolution model);
    returns ``(V1, ts1)`` with ``ts1`` the exact voxel size (first axis)."""
    shape = working_shape(V.shape, voxel_size, new_voxel)
    ts1 = V.shape[0] * voxel_size / shape[0]
    return resample(V, shape), float(ts1)


def locres_input(V: np.ndarray) -> np.ndarray:
    """Map divided by its local RMS (Gaussian window of σ = 3 voxels)."""
    V = np.asarray(V, dtype=np.float32)
    ms = scipy.ndimage.gaussian_filter(V * V, LOCAL_RMS_SIGMA_VOX, mode="reflect")
    eps = 1e-6 * float(np.mean(V * V)) + 1e-30
    return (V / np.sqrt(ms + eps)).astype(np.float32)


def sample_coords(V_at: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of ``V_at`` at fractional ``[z, y, x]`` voxel coordinates (n, 3)."""
    return scipy.ndimage.map_coordinates(V_at, points.T, order=1, mode="nearest")
