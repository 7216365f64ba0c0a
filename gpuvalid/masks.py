"""Masks of the map at the contour threshold, and the Fourier-resampled map.

- raw mask ``V ≥ t``;
- hard mask: the largest 26-connected component of the raw mask, dilated by a ball of radius
  ``ceil(2 Å / Ts)`` voxels (all voxels within that Euclidean distance of the centre);
- soft mask: the hard mask convolved with a Gaussian of σ = 2 voxels (values in [0, 1]);
- resized map: Fourier resampling to ``Ts' = R/2`` (never upsampling) into an even box.

All functions take a :class:`~gpuvalid.backend.Backend` and arrays on its device.
"""

from __future__ import annotations

import math

import numpy as np

DILATION_A = 2.0
SOFT_SIGMA_VOX = 2.0
_STRUCT26 = np.ones((3, 3, 3), dtype=bool)


def raw_mask(be, V, threshold: float):
    """``V ≥ t`` as a boolean array."""
    return V >= threshold


def label26(be, mask):
    """Label 26-connected components; returns ``(labels, n)`` with labels 1..n on the device."""
    labels, n = be.ndimage.label(mask, structure=be.asarray(_STRUCT26))
    return labels, int(n)


def component_sizes(be, labels, n: int):
    """Voxel count of each component 1..n (host int64 array, in label order)."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    counts = be.xp.bincount(labels.ravel(), minlength=n + 1)
    return be.to_host(counts)[1:].astype(np.int64)


def largest_component(be, mask):
    """The largest 26-connected component of ``mask`` (empty mask → empty result)."""
    labels, n = label26(be, mask)
    if n == 0:
        return be.xp.zeros(mask.shape, dtype=bool)
    sizes = component_sizes(be, labels, n)
    return labels == (int(np.argmax(sizes)) + 1)


def bounding_box(be, mask, margin: int = 0) -> tuple | None:
    """Slices (z, y, x) of the bounding box of the ``True`` voxels of ``mask`` grown by ``margin`` voxels
    and clipped to the box (None if the mask is empty)."""
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        occupied = np.flatnonzero(be.to_host(be.xp.any(mask, axis=other)))
        if occupied.size == 0:
            return None
        out.append(slice(max(0, int(occupied[0]) - margin), min(mask.shape[axis], int(occupied[-1]) + margin + 1)))
    return tuple(out)


def ball(radius_vox: int) -> np.ndarray:
    """Boolean ball: voxels whose centre is within ``radius_vox`` (Euclidean) of the centre."""
    r = int(radius_vox)
    g = np.arange(-r, r + 1)
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    return (x * x + y * y + z * z) <= r * r


def dilation_radius_vox(voxel_size: float, distance_A: float = DILATION_A) -> int:
    """``ceil(distance / Ts)`` voxels, the radius of the dilation ball."""
    return max(1, int(math.ceil(distance_A / voxel_size - 1e-9)))


def dilate(be, mask, radius_vox: int):
    """Binary dilation of ``mask`` by a ball of ``radius_vox`` voxels.

    Implemented as a thresholded Euclidean distance transform on the CPU (exact, O(N) in the box)
    and as ``binary_dilation`` with the ball on the GPU.
    """
    if not be.is_gpu:
        from scipy import ndimage as ndi

        m = be.to_host(mask)
        if not m.any():
            return m.copy()
        # distance from every background voxel to the nearest mask voxel (mask voxels: 0)
        dist2 = ndi.distance_transform_edt(~m, return_distances=True) ** 2
        return dist2 <= radius_vox * radius_vox + 1e-6
    return be.ndimage.binary_dilation(mask, structure=be.asarray(ball(radius_vox)))


def hard_mask(be, V, threshold: float, voxel_size: float):
    """Largest 26-connected component of ``V ≥ t`` dilated by 2 Å."""
    core = largest_component(be, raw_mask(be, V, threshold))
    return dilate(be, core, dilation_radius_vox(voxel_size))


def soft_mask(be, hard, sigma_vox: float = SOFT_SIGMA_VOX):
    """Hard mask blurred by a Gaussian of σ voxels (float32 in [0, 1])."""
    soft = be.ndimage.gaussian_filter(hard.astype(be.xp.float32), sigma=sigma_vox, mode="constant")
    return be.xp.clip(soft, 0.0, 1.0)


def resized_shape(shape: tuple, voxel_size: float, new_voxel_size: float) -> tuple:
    """Even box ``2·floor(N·Ts/Ts'/2)`` per axis."""
    return tuple(max(2, 2 * int(math.floor(n * voxel_size / new_voxel_size / 2))) for n in shape)


def fourier_resample(be, V, new_shape: tuple):
    """Band-limited resampling of ``V`` to ``new_shape`` by cropping (or zero-padding) its spectrum.

    Densities are preserved (mean value unchanged): the inverse transform is scaled by
    ``prod(new_shape) / prod(V.shape)``.
    """
    xp = be.xp
    F = xp.fft.fftshift(be.fftn(V.astype(xp.complex64)))
    src, dst = V.shape, tuple(new_shape)
    out = xp.zeros(dst, dtype=F.dtype)
    sl_src, sl_dst = [], []
    for n, m in zip(src, dst):
        k = min(n, m)
        cs, cd = n // 2 - k // 2, m // 2 - k // 2
        sl_src.append(slice(cs, cs + k))
        sl_dst.append(slice(cd, cd + k))
    out[tuple(sl_dst)] = F[tuple(sl_src)]
    v = be.ifftn(xp.fft.ifftshift(out)).real
    return (v * (np.prod(dst) / np.prod(src))).astype(xp.float32)


def resize_for_resolution(be, V, voxel_size: float, resolution: float):
    """Map resampled to ``Ts' = R/2`` (only when ``R/2 > Ts``) into the even box of the spec.

    Returns ``(V', Ts_eff)`` where ``Ts_eff = N·Ts/N'`` (first axis) is the voxel size actually obtained;
    when ``R/2 ≤ Ts`` the map is only cropped to an even box at its own voxel size.
    """
    target = resolution / 2.0
    if target <= voxel_size:
        shape = tuple(n - (n % 2) for n in V.shape)
        return V[: shape[0], : shape[1], : shape[2]].copy(), float(voxel_size)
    shape = resized_shape(V.shape, voxel_size, target)
    eff = float(np.mean([n * voxel_size / m for n, m in zip(V.shape, shape)]))
    return fourier_resample(be, V, shape), eff
