"""First threshold crossing along each pixel ray (orthographic camera).

Rays run along the depth axis of the camera-frame map ``W[d, r, c]`` (see :mod:`.camera`) through
fractional in-plane positions ``(r, c)``.  At each depth plane the ray's value is the bilinear
combination of its four neighbouring columns; between planes the trilinear field is linear in depth, so
the first crossing of the contour level ``t`` is exact: the first plane ``p`` with value ``≥ t`` and
the linear root between planes ``p − 1`` and ``p``.  Depth is in voxels from the front of the box;
a ray already inside at ``p = 0`` (a cut through the box face) gets depth 0; a ray that never
reaches ``t`` gets NaN.

CPU: vectorised NumPy with empty-space skipping (each ray starts at the first plane where one of its
four columns reaches ``t``; only the few rays still undecided march on).  GPU: one CUDA thread per
pixel in ``kernels/raycast.cu`` with the same arithmetic (compiled without FMA contraction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..backend import Backend

KERNEL_FILE = "raycast.cu"
KERNEL_OPTIONS = ("--std=c++17", "--fmad=false")
BLOCK = (16, 16, 1)                     # first_crossing's thread block: 16 × 16 rays


def pixel_centres(n_pixels: int, n_voxels: int, px_per_voxel: float) -> np.ndarray:
    """Camera-grid coordinate (voxels) of each pixel centre along one image axis (float32).

    The image spans the voxel extent ``[-0.5, n_voxels - 0.5]``; coordinates are clamped to the
    voxel centres ``[0, n_voxels - 1]``.
    """
    x = (np.arange(n_pixels, dtype=np.float64) + 0.5) / px_per_voxel - 0.5
    return np.clip(x, 0, n_voxels - 1).astype(np.float32)


def _split(x: np.ndarray, n: int):
    """Integer cell index (0..n-2) and fraction of fractional coordinates ``x`` in ``[0, n-1]``."""
    i = np.minimum(np.floor(x).astype(np.int64), n - 2)
    return i, (x - i).astype(np.float32)


def first_crossing(be: Backend, W, rows, cols, t: float):
    """Depth (voxels, float32, NaN = miss) of the first crossing of ``t`` for each pixel ray.

    ``W`` is the contiguous float32 camera-frame map (device), ``rows`` and ``cols`` host float32
    arrays of pixel-centre coordinates; the result has shape ``(len(rows), len(cols))`` on the device.

    Raises
    ------
    ValueError
        When ``W`` has fewer than 2 rows or 2 columns (no cell to interpolate in).
    """
    if W.shape[1] < 2 or W.shape[2] < 2:
        raise ValueError("camera-frame map needs at least 2 rows and 2 columns")
    if be.is_gpu:
        return _first_crossing_cuda(be, W, rows, cols, t)
    return _first_crossing_numpy(np.asarray(W), rows, cols, t)


def _first_crossing_numpy(W: np.ndarray, rows: np.ndarray, cols: np.ndarray, t: float) -> np.ndarray:
    D, H, Wd = W.shape
    t = np.float32(t)
    iv, fv = _split(rows, H)
    iu, fu = _split(cols, Wd)
    inside = W >= t
    first = np.where(inside.any(axis=0), inside.argmax(axis=0), D)  # per column (H, Wd)
    del inside
    I, J = iv[:, None], iu[None, :]
    start = np.minimum(np.minimum(first[I, J], first[I, J + 1]), np.minimum(first[I + 1, J], first[I + 1, J + 1]))
    depth = np.full(start.shape, np.nan, dtype=np.float32)
    flat_depth = depth.reshape(-1)
    act = np.flatnonzero(start.reshape(-1) < D)
    if act.size == 0:
        return depth
    n_cols = len(cols)
    pr, pc = act // n_cols, act % n_cols
    i0, j0 = iv[pr], iu[pc]
    a_v, a_u = fv[pr], fu[pc]
    p = start.reshape(-1)[act].astype(np.int64)
    flatW = W.reshape(D, -1)

    def value(pp, i, j, fvv, fuu):
        base = i * Wd + j
        a = flatW[pp, base]
        b = flatW[pp, base + 1]
        c = flatW[pp, base + Wd]
        d = flatW[pp, base + Wd + 1]
        top = a + fuu * (b - a)
        bot = c + fuu * (d - c)
        return top + fvv * (bot - top)

    while act.size:
        v = value(p, i0, j0, a_v, a_u)
        hit = v >= t
        if hit.any():
            h = np.flatnonzero(hit)
            ph = p[h]
            out = np.zeros(h.size, dtype=np.float32)
            inner = ph > 0
            if inner.any():
                k = h[inner]
                vp = value(p[k] - 1, i0[k], j0[k], a_v[k], a_u[k])
                vk = v[k]
                out[inner] = (p[k] - 1).astype(np.float32) + (t - vp) / (vk - vp)
            flat_depth[act[h]] = out
        keep = ~hit
        p = p[keep] + 1
        keep2 = p < D
        act, p = act[keep][keep2], p[keep2]
        i0, j0, a_v, a_u = i0[keep][keep2], j0[keep][keep2], a_v[keep][keep2], a_u[keep][keep2]
    return depth


def _first_crossing_cuda(be: Backend, W, rows, cols, t: float):
    xp = be.xp
    D, H, Wd = W.shape
    W = xp.ascontiguousarray(W, dtype=xp.float32)
    r = be.asarray(np.ascontiguousarray(rows, dtype=np.float32))
    c = be.asarray(np.ascontiguousarray(cols, dtype=np.float32))
    nr, nc = len(rows), len(cols)
    depth = xp.empty((nr, nc), dtype=xp.float32)
    kern = be.kernel(KERNEL_FILE, "first_crossing", KERNEL_OPTIONS)
    grid = ((nc + BLOCK[0] - 1) // BLOCK[0], (nr + BLOCK[1] - 1) // BLOCK[1], 1)
    kern(grid, BLOCK, (W, np.int32(D), np.int32(H), np.int32(Wd), r, c, np.int32(nr), np.int32(nc),
                       np.float32(t), depth))
    return depth
