"""Camera: view rotations and the map resampled into the camera frame.

Orientation convention
----------------------
Screen axes are those of ChimeraX: ``x`` to the right, ``y`` up, ``z`` towards the viewer (the viewer
looks along ``-z``).  A view is given by three angles ``(X, Y, Z)`` in degrees, applied to the map as
rotations about the fixed *screen* axes, first about ``x``, then ``y``, then ``z`` (ChimeraX
``turn x X; turn y Y; turn z Z`` from the default view), counter-clockwise (right-hand rule).  A map
vector ``m = (x, y, z)`` (Å, map axes of the MRC ``[z, y, x]`` array) appears on screen at
``s = Rz(Z) · Ry(Y) · Rx(X) · m``.

The three views of the spec then look along the three map axes:

- ``(0, −90, −90)``: looking down the map X axis (viewer on +X), map Y → right, map Z → up;
- ``(−90, 0, −90)``: looking down the map Y axis (viewer on −Y), map Z → right, map X → down;
- ``(0, 0, 0)``: looking down the map Z axis (viewer on +Z), map X → right, map Y → up.

Camera frame
------------
Rendering works on ``W[d, r, c]``: the map resampled on a voxel-spaced grid whose first axis is depth
(``d = 0`` nearest the viewer), second the image row (top to bottom) and third the image column
(left to right).  When the rotation is a signed permutation (every multiple of 90°, so the three
views above) ``W`` is an exact transpose/flip of the map; other angles use trilinear resampling.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..backend import Backend

SPEC_VIEWS = ((0.0, -90.0, -90.0), (-90.0, 0.0, -90.0), (0.0, 0.0, 0.0))

_AXIS_NAMES = ("X", "Y", "Z")


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def rotation_matrix(angles) -> np.ndarray:
    """``R`` with ``screen = R @ map`` (vectors ``(x, y, z)``) for angles ``(X, Y, Z)`` in degrees."""
    ax, ay, az = (math.radians(float(a)) for a in angles)
    R = _rz(az) @ _ry(ay) @ _rx(ax)
    Rr = np.round(R)
    return Rr if np.allclose(R, Rr, atol=1e-9) else R


def is_signed_permutation(R: np.ndarray) -> bool:
    """Return True when ``R`` maps map axes onto screen axes exactly (multiples of 90°)."""
    A = np.abs(R)
    return bool(np.all((A == 0) | (A == 1)) and np.all(A.sum(0) == 1) and np.all(A.sum(1) == 1))


def describe_view(angles) -> str:
    """Plain words for a view, e.g. ``"looking down map Z; X → right, Y ↑"`` (permutation views)."""
    R = rotation_matrix(angles)
    if not is_signed_permutation(R):
        return "oblique view"

    def axis_to(screen_row: int) -> str:
        j = int(np.argmax(np.abs(R[screen_row])))
        sign = "" if R[screen_row, j] > 0 else "−"
        return sign + _AXIS_NAMES[j]

    toward = axis_to(2)  # map axis pointing at the viewer
    look = toward[-1]
    side = "−" if toward.startswith("−") else "+"
    right, up = axis_to(0), axis_to(1)
    horiz = f"{right[-1]} → right" if right[0] != "−" else f"{right[-1]} → left"
    vert = f"{up[-1]} ↑" if up[0] != "−" else f"{up[-1]} ↓"
    return f"looking down map {look} (viewer on {side}{look}); {horiz}, {vert}"


def angles_text(angles) -> str:
    """``(0°, −90°, −90°)`` with proper minus signs."""
    return "(" + ", ".join(f"{a:g}°".replace("-", "−") for a in angles) + ")"


def camera_transform(shape_zyx, R: np.ndarray):
    """Index map from the camera grid to the map array.

    Returns ``(M, offset, out_shape)`` with ``map_index_zyx = M @ (d, r, c) + offset`` and
    ``out_shape = (D, H, W)`` covering the rotated box (voxel spacing, centre preserved).
    """
    nz, ny, nx = shape_zyx
    centre = np.array([(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2])  # x, y, z
    corners = np.array([[x, y, z] for x in (0, nx - 1) for y in (0, ny - 1) for z in (0, nz - 1)], float)
    s = (corners - centre) @ R.T
    smin, smax = s.min(0), s.max(0)
    ext = smax - smin
    W = int(math.floor(ext[0] + 1e-6)) + 1
    H = int(math.floor(ext[1] + 1e-6)) + 1
    D = int(math.floor(ext[2] + 1e-6)) + 1
    # (d, r, c) -> screen s = (smin_x + c, smax_y - r, smax_z - d)
    A = np.array([[0, 0, 1], [0, -1, 0], [-1, 0, 0]], float)  # columns: d, r, c
    b = np.array([smin[0], smax[1], smax[2]])
    # map xyz = R^T s + centre; map zyx = P (map xyz)
    P = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], float)
    M = P @ R.T @ A
    off = P @ (R.T @ b + centre)
    return M, off, (D, H, W)


def camera_volume(be: Backend, V, R: np.ndarray, cval: float):
    """``W[d, r, c]``: the map ``V[z, y, x]`` (device array) seen through rotation ``R``.

    Signed permutations are exact transposes/flips (contiguous copy); other rotations are trilinear
    resampling with ``cval`` (finite) outside the box.

    Raises
    ------
    ValueError
        When the rotation needs resampling and ``cval`` is not finite.
    """
    M, off, out_shape = camera_transform(V.shape, R)
    if is_signed_permutation(M):
        perm, flips = [], []
        for k in range(3):
            j = int(np.argmax(np.abs(M[:, k])))
            perm.append(j)
            flips.append(M[j, k] < 0)
        W = V.transpose(perm)
        sl = tuple(slice(None, None, -1) if f else slice(None) for f in flips)
        return be.xp.ascontiguousarray(W[sl])
    if not np.isfinite(cval):
        # CuPy writes cval into the generated CUDA source: ``(Y)nan`` does not compile (CUDA 12/13)
        raise ValueError("camera_volume needs a finite cval (use sample_map for maps with NaN)")
    # ... and every new cval would be a new kernel to compile: resample V − cval with the fixed fill 0
    # (trilinear interpolation commutes with the shift), then add cval back
    c = V.dtype.type(cval)
    W = be.ndimage.affine_transform(V - c, be.asarray(M), offset=tuple(off), output_shape=out_shape,
                                    order=1, mode="constant", cval=0.0)
    W += c
    return W


def sample_map(be: Backend, L, R: np.ndarray, d, r, c):
    """Trilinear samples of the map ``L[z, y, x]`` (device) at camera-frame points ``(d, r, c)``.

    The points (1-D device arrays, voxels of the camera grid of rotation ``R`` for a box of
    ``L.shape``) are mapped to map indices with :func:`camera_transform` and ``L`` is interpolated
    there directly, edge clamped: no camera-frame copy of ``L`` and no NaN fill value (which CuPy's
    interpolation kernels cannot compile).  NaN voxels of ``L`` propagate to the samples that use them.
    For signed-permutation views this equals sampling the transposed map at ``(d, r, c)``.
    """
    xp = be.xp
    M, off, _ = camera_transform(L.shape, R)
    dc = xp.stack([d, r, c]).astype(xp.float64)
    coords = be.asarray(M) @ dc + be.asarray(off)[:, None]
    return be.ndimage.map_coordinates(L, coords, order=1, mode="nearest")
