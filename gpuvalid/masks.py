"""Masks of the map at the contour threshold, and the Fourier-resampled map.

- raw mask ``V ≥ t``;
- hard mask: every 26-connected component of the raw mask holding at least 10 % of the voxels of the
  largest one (a symmetric assembly that splits at its contour keeps all its parts), dilated by a ball of
  radius ``ceil(2 Å / Ts)`` voxels (all voxels within that Euclidean distance of the centre); the
  reference service keeps the largest component only (quirk Q6, :func:`hard_mask_largest_only`);
- soft mask: the hard mask convolved with a Gaussian of σ = 2 voxels (values in [0, 1]);
- resized map: Fourier resampling to the box ``M = round(N·Ts/Ts')`` with ``Ts' = R/2`` (never
  upsampling; voxel ``N·Ts/M`` within half a voxel of R/2, Nyquist ≈ 1/R), then a centred crop to the even
  box ``2·floor(N·Ts/Ts'/2)``.

All functions take a :class:`~gpuvalid.backend.Backend` and arrays on its device.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ._checks import check_number, check_positive
from .resample import fourier_resample

if TYPE_CHECKING:
    from .backend import Backend

DILATION_A = 2.0
SOFT_SIGMA_VOX = 2.0
KEEP_FRACTION = 0.10  # keep components with ≥ 10 % of the largest one's voxels
_STRUCT26 = np.ones((3, 3, 3), dtype=bool)


def raw_mask(be: Backend, V, threshold: float):
    """Return ``V ≥ t`` as a boolean array.

    Raises
    ------
    ValueError
        When the threshold t is not a finite number (a NaN threshold would give an empty mask silently).
    """
    return V >= check_number(threshold, "contour threshold")


def grown_box(first, last, margin: int, shape: tuple) -> tuple:
    """Return the slices from index ``first`` to ``last`` (inclusive, per axis) grown by ``margin`` voxels.

    Each slice is clipped to the box ``shape``.
    """
    return tuple(slice(max(0, int(a) - margin), min(int(n), int(b) + margin + 1))
                 for a, b, n in zip(first, last, shape, strict=True))


def bounding_box(be: Backend, mask, margin: int = 0) -> tuple | None:
    """Return the slices (z, y, x) of the bounding box of ``mask``'s ``True`` voxels (None if it is empty).

    The box is grown by ``margin`` voxels and clipped to the mask's box.
    """
    first, last = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        occupied = np.flatnonzero(be.to_host(be.xp.any(mask, axis=other)))
        if occupied.size == 0:
            return None
        first.append(occupied[0])
        last.append(occupied[-1])
    return grown_box(first, last, margin, mask.shape)


def label26(be: Backend, mask):
    """Label the 26-connected components of ``mask`` inside its bounding box.

    Returns ``(labels, n, box)``: ``box`` the slices (z, y, x) of the bounding box (None for an empty mask),
    ``labels`` the labels 1..n of ``mask[box]`` on the device (0 off the mask; None when empty).  No
    component leaves the box, so labelling it gives the whole map's components at the molecule's cost, not
    the box's.
    """
    box = bounding_box(be, mask)
    if box is None:
        return None, 0, None
    labels, n = be.ndimage.label(be.xp.ascontiguousarray(mask[box]), structure=be.asarray(_STRUCT26))
    return labels, int(n), box


def component_sizes(be: Backend, labels, n: int):
    """Voxel count of each component 1..n (host int64 array, in label order)."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    counts = be.xp.bincount(labels.ravel(), minlength=n + 1)
    return be.to_host(counts)[1:].astype(np.int64)


def _paste(be: Backend, shape: tuple, box: tuple, crop):
    """Return a boolean array of ``shape`` holding ``crop`` at ``box`` and False elsewhere."""
    out = be.xp.zeros(shape, dtype=bool)
    out[box] = crop
    return out


def largest_component(be: Backend, mask):
    """Return the largest 26-connected component of ``mask`` (empty mask → empty result)."""
    labels, n, box = label26(be, mask)
    if n == 0:
        return be.xp.zeros(mask.shape, dtype=bool)
    sizes = component_sizes(be, labels, n)
    return _paste(be, mask.shape, box, labels == (int(np.argmax(sizes)) + 1))


def major_components(be: Backend, mask, keep_fraction: float = KEEP_FRACTION):
    """Components of ``mask`` with at least ``keep_fraction`` of the largest one's voxels.

    Returns ``(kept mask, sizes of the kept components sorted descending)``; an empty mask gives an
    empty result and no sizes.
    """
    labels, n, box = label26(be, mask)
    if n == 0:
        return be.xp.zeros(mask.shape, dtype=bool), np.zeros(0, dtype=np.int64)
    sizes = component_sizes(be, labels, n)
    keep = np.flatnonzero(sizes >= keep_fraction * sizes.max()) + 1
    if keep.size == 1:
        kept = labels == int(keep[0])
    else:
        lut = np.zeros(n + 1, dtype=bool)
        lut[keep] = True
        kept = be.asarray(lut)[labels]
    return _paste(be, mask.shape, box, kept), np.sort(sizes[keep - 1])[::-1]


def ball(radius_vox: int) -> np.ndarray:
    """Boolean ball: voxels whose centre is within ``radius_vox`` (Euclidean) of the centre."""
    r = int(radius_vox)
    g = np.arange(-r, r + 1)
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    return (x * x + y * y + z * z) <= r * r


def dilation_radius_vox(voxel_size: float, distance_A: float = DILATION_A) -> int:
    """Return ``ceil(distance / Ts)`` voxels (at least 1), the radius of the dilation ball.

    Examples
    --------
    >>> dilation_radius_vox(1.742), dilation_radius_vox(0.9), dilation_radius_vox(1.0)   # 2 Å
    (2, 3, 2)

    Raises
    ------
    ValueError
        When the voxel size Ts (Å) or the distance (Å) is not a finite positive number.
    """
    ts = check_positive(voxel_size, "voxel size (Å)")
    return max(1, int(math.ceil(check_positive(distance_A, "dilation distance (Å)") / ts - 1e-9)))


def dilate(be: Backend, mask, radius_vox: int):
    """Binary dilation of ``mask`` by a ball of ``radius_vox`` voxels.

    Only the mask's bounding box grown by the radius can change, so the dilation runs on that crop and
    is pasted into an empty box (the same voxels as dilating the whole box: a molecule in a large box
    costs its own size, not the box's). On the crop: a thresholded Euclidean distance transform on the
    CPU (exact, O(N)) and ``binary_dilation`` with the ball on the GPU.  Both give the same voxels
    (``tests/test_masks.py`` and ``test_gpu_equivalence.py``).  The GPU keeps the ball: cupyx's distance
    transform (PBA+) pads the crop to its block size and holds two encoded int32/int64 arrays and the
    distances per padded voxel, where the ball dilation holds one bool mask; at 2 Å the ball has at most
    (2·ceil(2/Ts) + 1)³ voxels.
    """
    box = bounding_box(be, mask, radius_vox)
    if box is None:
        return be.xp.zeros(mask.shape, dtype=bool)
    crop = be.xp.ascontiguousarray(mask[box])
    if not be.is_gpu:
        from scipy import ndimage as ndi

        # squared distance from every crop voxel to the nearest mask voxel (all of which are in the crop)
        grown = ndi.distance_transform_edt(~crop, return_distances=True) ** 2 <= radius_vox * radius_vox + 1e-6
    else:
        grown = be.ndimage.binary_dilation(crop, structure=be.asarray(ball(radius_vox)))
    return _paste(be, mask.shape, box, grown)


def distance_to_mask(be: Backend, mask, voxel_size: float, reach_A: float):
    """Return the distance (Å) from every voxel to the nearest voxel of ``mask`` (float64, 0 on the mask).

    Exact up to ``reach_A`` and +inf beyond (+inf everywhere for an empty mask).

    A voxel outside the mask's bounding box grown by ``ceil(reach/Ts) + 1`` voxels is more than ``reach_A``
    from every mask voxel, so the Euclidean distance transform runs on that crop only.
    """
    xp = be.xp
    box = bounding_box(be, mask, int(math.ceil(reach_A / voxel_size)) + 1)
    dist = xp.full(mask.shape, xp.inf, dtype=xp.float64)
    if box is not None:
        crop = xp.ascontiguousarray(mask[box])
        dist[box] = be.ndimage.distance_transform_edt(~crop, sampling=float(voxel_size))
    return dist


def hard_mask(be: Backend, V, threshold: float, voxel_size: float, with_sizes: bool = False):
    """Components of ``V ≥ t`` with ≥ 10 % of the largest one's voxels, dilated by 2 Å.

    With ``with_sizes`` also returns the voxel counts of the kept components (descending).
    """
    core, sizes = major_components(be, raw_mask(be, V, threshold))
    hard = dilate(be, core, dilation_radius_vox(voxel_size))
    return (hard, sizes) if with_sizes else hard


def hard_mask_largest_only(be: Backend, V, threshold: float, voxel_size: float):
    """Return the reference service's hard mask (quirk Q6): the largest component of ``V ≥ t`` dilated by 2 Å."""
    core = largest_component(be, raw_mask(be, V, threshold))
    return dilate(be, core, dilation_radius_vox(voxel_size))


SOFT_TRUNCATE = 4.0   # the Gaussian's support: round(4σ) voxels (scipy's and cupyx's default truncation)


def soft_mask(be: Backend, hard, sigma_vox: float = SOFT_SIGMA_VOX, box: tuple | None = None):
    """Hard mask blurred by a Gaussian of σ voxels (float32 in [0, 1]).

    The blur reaches ``int(4σ + 0.5)`` voxels, so it is computed on the hard mask's bounding box grown by
    that much (every other voxel is exactly 0, as when the whole box is filtered with zeros outside it).
    ``box``: the hard mask's bounding box (slices z, y, x) when the caller already has it; found here
    when None.
    """
    xp = be.xp
    reach = int(SOFT_TRUNCATE * float(sigma_vox) + 0.5)
    if box is None:
        box = bounding_box(be, hard)
    soft = xp.zeros(hard.shape, dtype=xp.float32)
    if box is None:
        return soft
    box = grown_box([sl.start for sl in box], [sl.stop - 1 for sl in box], reach, hard.shape)
    crop = xp.ascontiguousarray(hard[box]).astype(xp.float32)
    soft[box] = xp.clip(be.ndimage.gaussian_filter(crop, sigma=sigma_vox, mode="constant",
                                                   truncate=SOFT_TRUNCATE), 0.0, 1.0)
    return soft


def background_sphere_index(be: Backend, hard_mask):
    """Return the flat indices of the background voxels (``~Mhard``) inside the inscribed sphere.

    The sphere has radius min(N)/2 voxels and is centred at N/2; when that region holds no background voxel,
    the whole background is used.  The noise reference of the local analyses (0.e's monogenic estimate, 0.f).
    """
    xp = be.xp
    shape = hard_mask.shape
    c = [n / 2.0 for n in shape]
    rad = min(shape) / 2.0
    z = xp.arange(shape[0], dtype=xp.float32)[:, None, None] - c[0]
    y = xp.arange(shape[1], dtype=xp.float32)[None, :, None] - c[1]
    x = xp.arange(shape[2], dtype=xp.float32)[None, None, :] - c[2]
    inside = (z * z + y * y + x * x) < rad * rad
    idx = be.flatnonzero(~hard_mask & inside)
    if idx.size == 0:
        idx = be.flatnonzero(~hard_mask)
    return idx


def resampled_shape(shape: tuple, voxel_size: float, new_voxel_size: float) -> tuple:
    """Box ``M = round(N·Ts/Ts')`` per axis: the resampled voxel ``N·Ts/M`` is within half a voxel of Ts'."""
    return tuple(max(2, int(math.floor(n * voxel_size / new_voxel_size + 0.5))) for n in shape)


def resized_shape(shape: tuple, voxel_size: float, new_voxel_size: float) -> tuple:
    """Even box ``2·floor(N·Ts/Ts'/2)`` per axis (the crop of the resampled map)."""
    return tuple(max(2, 2 * int(math.floor(n * voxel_size / new_voxel_size / 2))) for n in shape)


def centred_crop(V, shape: tuple):
    """Crop ``V`` to ``shape`` (each edge ≤ V's), dropping ``(n − m) // 2`` voxels at the start of each axis."""
    sl = tuple(slice((n - m) // 2, (n - m) // 2 + m) for n, m in zip(V.shape, shape, strict=True))
    return V[sl]


def resize_for_resolution(be: Backend, V, voxel_size: float, resolution: float):
    """Resample the map to ``Ts' = R/2`` (only when ``R/2 > Ts``) and crop it to the even box of the spec.

    The spectrum is cropped to the box ``M = round(N·Ts/Ts')`` (voxel ``N·Ts/M`` Å, Nyquist ≈ 1/R), then
    the resampled map is cropped, centred, to ``2·floor(N·Ts/Ts'/2)`` (at most a voxel or two per axis; the
    voxel size is unchanged).  Returns ``(V', Ts_eff)`` with ``Ts_eff`` the mean over axes of ``N·Ts/M``
    (the axes differ by less than half a voxel of R/2); when ``R/2 ≤ Ts`` the map is only cropped to an
    even box at its own voxel size.

    Raises
    ------
    ValueError
        When the voxel size Ts or the resolution R (Å) is not a finite positive number.
    """
    voxel_size = check_positive(voxel_size, "voxel size (Å)")
    target = check_positive(resolution, "resolution (Å)") / 2.0
    if target <= voxel_size:
        shape = tuple(n - (n % 2) for n in V.shape)
        return V[: shape[0], : shape[1], : shape[2]].copy(), float(voxel_size)
    full = resampled_shape(V.shape, voxel_size, target)
    even = tuple(min(e, m) for e, m in zip(resized_shape(V.shape, voxel_size, target), full, strict=True))
    eff = float(np.mean([n * voxel_size / m for n, m in zip(V.shape, full, strict=True)]))
    Vr = fourier_resample(be, V, full)
    if even != full:
        Vr = be.xp.ascontiguousarray(centred_crop(Vr, even))
    return Vr, eff
