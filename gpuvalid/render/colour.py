"""Colour mapping of local values (local resolution, B-factor, occupancy) onto the surface."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..backend import Backend

DEFAULT_CMAP = "jet"
LUT_SIZE = 256


def lut(cmap: str = DEFAULT_CMAP, n: int = LUT_SIZE) -> np.ndarray:
    """``(n, 3)`` float32 RGB table of a Matplotlib colour map."""
    import matplotlib

    cm = matplotlib.colormaps[cmap]
    return cm(np.linspace(0.0, 1.0, n))[:, :3].astype(np.float32)


def map_colours(be: Backend, values, lo: float, hi: float, cmap: str = DEFAULT_CMAP):
    """RGB ``(n, 3)`` for ``values`` (device, 1-D): ``lo`` → first colour, ``hi`` → last, clipped.

    The table index is ``round((v − lo) / (hi − lo) · (n − 1))``; NaN values get grey.
    """
    xp = be.xp
    table = be.asarray(lut(cmap))
    n = table.shape[0]
    span = float(hi) - float(lo)
    if not np.isfinite(span) or span <= 0:
        f = xp.full(values.shape, 0.5, dtype=xp.float32)
    else:
        f = (values.astype(xp.float32) - np.float32(lo)) / np.float32(span)
    bad = xp.isnan(values)
    idx = xp.rint(xp.clip(xp.where(bad, 0.5, f), 0.0, 1.0) * (n - 1)).astype(xp.int64)
    rgb = table[idx]
    return xp.where(bad[:, None], xp.asarray([0.6, 0.6, 0.6], dtype=rgb.dtype), rgb)
