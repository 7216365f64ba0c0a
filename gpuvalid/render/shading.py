"""Surface normals, lighting and silhouette edges for a depth image (backend arrays).

Screen axes: ``x`` right, ``y`` up, ``z`` towards the viewer.  The outward surface normal is
``−∇V / |∇V|`` (density rises inside the contour), taken from central differences (±1 voxel) of the
trilinear field at the hit point.  Lighting follows ChimeraX's default two-light scheme: a key light
from the upper left front, a weaker fill light from the right, ambient light, a small Blinn–Phong
specular highlight, and depth cueing that fades the far half of the object towards the white
background.  Silhouette edges are drawn where the surface meets the background or jumps in depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..backend import Backend


@dataclass(frozen=True)
class Lighting:
    """Light set-up (directions point from the surface towards the light, screen axes)."""

    key_dir: tuple = (-1.0, 1.0, 1.0)
    key: float = 0.85
    fill_dir: tuple = (1.0, 0.2, 1.0)
    fill: float = 0.35
    ambient: float = 0.30
    specular: float = 0.25
    shininess: float = 30.0
    depth_cue: float = 0.45          # fraction of white at the farthest surface point
    depth_cue_start: float = 0.5     # fraction of the depth range where fading starts
    edge_width: int = 2              # silhouette width (pixels); 0 disables edges
    edge_jump: float = 3.0           # depth jump (voxels) that counts as an edge
    edge_colour: tuple = (0.0, 0.0, 0.0)


DEFAULT_LIGHTING = Lighting()
SURFACE_COLOUR = (0.70, 0.73, 0.93)  # light steel blue, like a ChimeraX map surface
BACKGROUND = (1.0, 1.0, 1.0)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return (v / np.linalg.norm(v)).astype(np.float32)


def sample(be: Backend, W, d, r, c):
    """Trilinear samples of ``W[d, r, c]`` at fractional points (1-D device arrays; edge clamped)."""
    coords = be.xp.stack([d, r, c]).astype(be.xp.float32)
    return be.ndimage.map_coordinates(W, coords, order=1, mode="nearest")


def normals(be: Backend, W, d, r, c, h: float = 1.0):
    """Compute unit outward normals ``(n, 3)`` in screen axes at camera-frame points ``(d, r, c)``."""
    xp = be.xp
    gd = sample(be, W, d + h, r, c) - sample(be, W, d - h, r, c)
    gr = sample(be, W, d, r + h, c) - sample(be, W, d, r - h, c)
    gc = sample(be, W, d, r, c + h) - sample(be, W, d, r, c - h)
    # screen: x = c, y = -r, z = -d  ->  n = -grad_s V = (-dV/dc, dV/dr, dV/dd)
    n = xp.stack([-gc, gr, gd], axis=1)
    norm = xp.sqrt((n * n).sum(axis=1, keepdims=True))
    flat = norm[:, 0] < 1e-12
    n = n / xp.maximum(norm, 1e-12)
    n = xp.where(flat[:, None], xp.asarray([0.0, 0.0, 1.0], dtype=n.dtype), n)
    # first hits face the viewer; flip the rare grazing normal that numerically points away
    n[:, 2] = xp.abs(n[:, 2])
    return n


def shade(be: Backend, base, n, depth, lighting: Lighting = DEFAULT_LIGHTING):
    """RGB ``(n, 3)`` of surface points with colours ``base`` ``(n, 3)``, normals ``n`` and depth."""
    xp = be.xp
    L = be.asarray(_unit(lighting.key_dir))
    F = be.asarray(_unit(lighting.fill_dir))
    Hh = be.asarray(_unit(np.asarray(lighting.key_dir) / np.linalg.norm(lighting.key_dir) + np.array([0, 0, 1.0])))
    diff = lighting.ambient + lighting.key * xp.maximum(n @ L, 0) + lighting.fill * xp.maximum(n @ F, 0)
    spec = lighting.specular * xp.maximum(n @ Hh, 0) ** lighting.shininess
    rgb = base * diff[:, None] + spec[:, None]
    if lighting.depth_cue > 0 and depth.size:
        d0, d1 = xp.min(depth), xp.max(depth)
        f = (depth - d0) / xp.maximum(d1 - d0, 1e-6)
        fade = lighting.depth_cue * xp.clip((f - lighting.depth_cue_start) / (1 - lighting.depth_cue_start), 0, 1)
        rgb = rgb * (1 - fade[:, None]) + fade[:, None] * xp.asarray(BACKGROUND, dtype=rgb.dtype)
    return xp.clip(rgb, 0, 1)


def silhouette(be: Backend, depth_img, lighting: Lighting = DEFAULT_LIGHTING):
    """Return the boolean image of silhouette pixels.

    Those are surface pixels within ``edge_width`` of the background or of a surface lying more than
    ``edge_jump`` voxels farther away.
    """
    xp = be.xp
    w = int(lighting.edge_width)
    hit = ~xp.isnan(depth_img)
    if w <= 0:
        return xp.zeros(depth_img.shape, dtype=bool)
    far = float(1e9)
    d = xp.where(hit, depth_img, far).astype(xp.float32)
    size = 2 * w + 1
    nb_far = be.ndimage.maximum_filter(d, size=size, mode="nearest")
    return hit & (nb_far - d > lighting.edge_jump)
