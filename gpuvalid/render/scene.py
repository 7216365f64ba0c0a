"""Render isosurface views of a map: crop, camera frame, ray cast, shade, colour.

:func:`render_views` is the one entry point; it works on any backend (NumPy or CuPy arrays) and returns
host images.  All views of one call share the crop box and the pixel size, so the views are drawn at
the same scale (``px_per_voxel`` pixels per voxel, i.e. ``px_per_voxel / Ts`` pixels per Å).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..masks import bounding_box
from . import camera, colour, raycast, shading

if TYPE_CHECKING:
    from ..backend import Backend

DEFAULT_SIZE = 512


@dataclass
class Rendering:
    """One rendered view (host arrays)."""

    angles: tuple
    rgb: np.ndarray          # (H, W, 3) uint8, white background
    depth: np.ndarray        # (H, W) float32, voxels from the front of the crop box; NaN = background
    values: np.ndarray | None  # (H, W) float32 local value at the surface (colour views), NaN elsewhere
    px_per_voxel: float

    @property
    def hit(self) -> np.ndarray:
        """Boolean ``(H, W)`` image of the pixels whose ray reached the surface."""
        return ~np.isnan(self.depth)

    @property
    def description(self) -> str:
        """The view in plain words (:func:`gpuvalid.render.camera.describe_view`)."""
        return camera.describe_view(self.angles)


def crop_box(be: Backend, V, threshold: float, margin: int = 2) -> tuple:
    """Slices (z, y, x) of the bounding box of ``V ≥ t`` grown by ``margin`` voxels (None if empty)."""
    return bounding_box(be, V >= threshold, margin)


def _pad_to_two(be: Backend, A, cval):
    """Pad axes shorter than 2 voxels (a flat map still gives a cell to interpolate in).

    The padding is ``cval``, or a repeat of the edge when ``cval`` is None (local maps: no NaN fill on the
    device).
    """
    pad = [(0, max(0, 2 - n)) for n in A.shape]
    if any(p[1] for p in pad):
        if cval is None:
            A = be.xp.pad(A, pad, mode="edge")
        else:
            A = be.xp.pad(A, pad, mode="constant", constant_values=cval)
    return A


def render_views(be: Backend, V, threshold: float, views=camera.SPEC_VIEWS, *, size: int = DEFAULT_SIZE,
                 values=None, lo: float | None = None, hi: float | None = None,
                 cmap: str = colour.DEFAULT_CMAP, surface_colour=shading.SURFACE_COLOUR,
                 lighting: shading.Lighting = shading.DEFAULT_LIGHTING, crop: bool = True) -> list[Rendering]:
    """Isosurface of ``V`` (device ``[z, y, x]``) at ``threshold`` seen from each ``(X, Y, Z)`` view.

    With ``values`` (same grid as ``V``) the surface is painted with the trilinear value at the surface
    point mapped from ``lo..hi`` onto ``cmap``; otherwise it has ``surface_colour``.  The largest image
    side is ``size`` pixels.  Returns one :class:`Rendering` per view (empty images when nothing
    reaches the threshold).

    Raises
    ------
    ValueError
        When ``values`` does not have the shape of ``V``.
    """
    xp = be.xp
    V = be.asarray(V, dtype=xp.float32)
    t = float(threshold)
    if values is not None:
        values = be.asarray(values, dtype=xp.float32)
        if values.shape != V.shape:
            raise ValueError(f"local map shape {values.shape} differs from the map shape {V.shape}")
        if lo is None or hi is None:
            finite = values[xp.isfinite(values)]
            lo = float(xp.percentile(finite, 2.5)) if finite.size else 0.0
            hi = float(xp.percentile(finite, 97.5)) if finite.size else 1.0
    box = crop_box(be, V, t) if crop else tuple(slice(0, n) for n in V.shape)
    views = [tuple(float(a) for a in v) for v in views]
    if box is None:  # nothing reaches the threshold: blank views
        blank = np.full((size, size, 3), 255, np.uint8)
        return [Rendering(v, blank.copy(), np.full((size, size), np.nan, np.float32), None, 1.0) for v in views]
    cval = min(float(xp.min(V)), t) - 1.0
    Vc = _pad_to_two(be, V[box], cval)
    Lc = None if values is None else _pad_to_two(be, values[box], None)
    rots = [camera.rotation_matrix(v) for v in views]
    shapes = [camera.camera_transform(Vc.shape, R)[2] for R in rots]
    s = size / max(max(sh[1], sh[2]) for sh in shapes)
    return [_render_one(be, Vc, Lc, t, v, R, s, cval, lo, hi, cmap, surface_colour, lighting)
            for v, R in zip(views, rots, strict=True)]


def _render_one(be: Backend, Vc, Lc, t, angles, R, s, cval, lo, hi, cmap, surface_colour, lighting) -> Rendering:
    xp = be.xp
    W = camera.camera_volume(be, Vc, R, cval)
    D, H, Wd = W.shape
    ni, nj = max(1, int(round(H * s))), max(1, int(round(Wd * s)))
    rows = raycast.pixel_centres(ni, H, s)
    cols = raycast.pixel_centres(nj, Wd, s)
    depth = raycast.first_crossing(be, W, rows, cols, t)
    hit = ~xp.isnan(depth)
    ii, jj = xp.nonzero(hit)
    d = depth[ii, jj]
    r = be.asarray(rows)[ii]
    c = be.asarray(cols)[jj]
    img = xp.empty((ni, nj, 3), dtype=xp.float32)
    img[...] = xp.asarray(shading.BACKGROUND, dtype=xp.float32)
    vals_img = None
    if d.size:
        n = shading.normals(be, W, d, r, c)
        n = xp.where((d == 0)[:, None], xp.asarray([0.0, 0.0, 1.0], dtype=n.dtype), n)  # box cut face
        if Lc is not None:
            vals = camera.sample_map(be, Lc, R, d, r, c).astype(xp.float32)
            base = colour.map_colours(be, vals, lo, hi, cmap)
            vals_img = xp.full((ni, nj), xp.nan, dtype=xp.float32)
            vals_img[ii, jj] = vals
        else:
            base = xp.broadcast_to(xp.asarray(surface_colour, dtype=xp.float32), (d.size, 3))
        img[ii, jj] = shading.shade(be, base, n, d, lighting)
        edges = shading.silhouette(be, depth, lighting)
        img = xp.where(edges[:, :, None], xp.asarray(lighting.edge_colour, dtype=xp.float32), img)
    rgb = be.to_host(xp.rint(img * 255).astype(xp.uint8))
    return Rendering(tuple(angles), rgb, be.to_host(depth),
                     None if vals_img is None else be.to_host(vals_img), s)
