"""3-D views of the report: isosurface views (input section) and colour views (0.e, 0.f, 0.g).

Each function renders the three orientations of the spec (``(X, Y, Z)`` = (0, −90, −90), (−90, 0, −90),
(0, 0, 0); see :mod:`gpuvalid.render.camera` for the convention) with :func:`gpuvalid.render.render_views`
on the map's backend and writes one PNG with three panels drawn at the same scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..render import SPEC_VIEWS, angles_text, describe_view, render_views
from ..render.colour import DEFAULT_CMAP
from .figure import Figure

PANEL_PX = 512     # largest side of one view (pixels)
_GAP = 16          # pixels between panels
_TITLE = 44        # pixels above the panels for the two-line titles
_BAR = 90          # pixels for the colour bar and its labels


def isosurface_views(ctx, fig_dir) -> list[Figure]:
    """Three views of ``ctx.V`` at the contour threshold ``ctx.threshold``; one PNG, one Figure."""
    if ctx.threshold is None or ctx.threshold >= ctx.vmax:
        return []
    fig_dir = Path(fig_dir)
    views = render_views(ctx.be, ctx.V, ctx.threshold, SPEC_VIEWS, size=PANEL_PX)
    name = "isosurface_views.png"
    _compose(views, fig_dir / name)
    caption = (f"Isosurface of the map at the contour threshold t = {ctx.threshold:g}, three views at the "
               f"same scale ({_px_per_A(views, ctx.voxel_size):.2f} px/Å). " + _orientation_text(views))
    return [Figure(file=f"figures/{name}", caption=caption)]


def colour_views(ctx, values, lo, hi, label, fig_dir, stem) -> list[Figure]:
    """Isosurface of ``ctx.V`` inside the hard mask at ``ctx.threshold`` painted with ``values``.

    The reference paints the soft-masked map ``V·soft``; on the resized grid the soft mask is well below 1
    just inside the contour (σ = 2 voxels of R/2), so that surface breaks into fragments.  Cutting the map
    to the hard mask instead keeps the molecule's full contour surface and still drops loose density.

    ``values`` is a host float32 local map on the grid of ``ctx.V`` (the resized map for the local
    analyses); its trilinear value at each surface point is coloured from ``lo`` (blue) to ``hi``
    (red), the 2.5 % and 97.5 % percentiles, with a colour bar labelled ``label``.  Writes
    ``<fig_dir>/<stem>_views.png``; returns ``[]`` when the masked map never reaches the threshold.

    Raises
    ------
    ValueError
        When ``values`` does not have the shape of ``ctx.V``.
    """
    if ctx.threshold is None:
        return []
    fig_dir = Path(fig_dir)
    be = ctx.be
    vals = np.asarray(be.to_host(values), dtype=np.float32)
    if vals.shape != tuple(ctx.shape):
        raise ValueError(f"local map shape {vals.shape} differs from the map shape {tuple(ctx.shape)}")
    masked = be.xp.where(ctx.hard_mask, ctx.V, be.xp.float32(min(ctx.vmin, ctx.threshold) - 1.0))
    if float(be.xp.max(masked)) < ctx.threshold:
        return []
    views = render_views(be, masked, ctx.threshold, SPEC_VIEWS, size=PANEL_PX, values=vals,
                         lo=float(lo), hi=float(hi), cmap=DEFAULT_CMAP)
    name = f"{stem}_views.png"
    _compose(views, fig_dir / name, colourbar=(float(lo), float(hi), label))
    caption = (f"Isosurface of the map inside the hard mask at t = {ctx.threshold:g} coloured by {label}, "
               f"from {_num(lo)} (blue, 2.5 % percentile) to {_num(hi)} (red, 97.5 % percentile). "
               + _orientation_text(views))
    return [Figure(file=f"figures/{name}", caption=caption)]


def _num(x: float) -> str:
    return f"{x:.3g}".replace("-", "−")


def _px_per_A(views, voxel_size: float) -> float:
    return views[0].px_per_voxel / voxel_size if views else float("nan")


def _orientation_text(views) -> str:
    """Describe the panels: ``"Views (X, Y, Z rotation), left to right: (0°, −90°, −90°) down map X; …"``."""
    parts = [f"{angles_text(v.angles)} down map {describe_view(v.angles).split()[3]}" for v in views]
    return "Views (X, Y, Z rotation), left to right: " + "; ".join(parts) + "."


def _compose(views, path: Path, colourbar=None) -> None:
    """Write the panels side by side (same scale, vertically centred) with titles and a colour bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    widths = [v.rgb.shape[1] for v in views]
    height = max(v.rgb.shape[0] for v in views)
    bar = _BAR if colourbar else 0
    W = sum(widths) + _GAP * (len(views) + 1)
    H = height + _TITLE + _GAP + bar
    dpi = 100
    fig = MplFigure(figsize=(W / dpi, H / dpi), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    x = _GAP
    for v, w in zip(views, widths, strict=True):
        h = v.rgb.shape[0]
        y0 = bar + _GAP / 2 + (height - h) / 2
        ax = fig.add_axes([x / W, y0 / H, w / W, h / H])
        ax.imshow(v.rgb, interpolation="nearest")
        ax.set_axis_off()
        fig.text((x + w / 2) / W, (bar + _GAP / 2 + height + 6) / H,
                 f"{angles_text(v.angles)}\n{_short(v.angles)}", ha="center", va="bottom", fontsize=9)
        x += w + _GAP
    if colourbar:
        import matplotlib
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        lo, hi, label = colourbar
        if not hi > lo:
            hi = lo + 1e-6
        cax = fig.add_axes([0.2, 50 / H, 0.6, 18 / H])
        sm = ScalarMappable(norm=Normalize(lo, hi), cmap=matplotlib.colormaps[DEFAULT_CMAP])
        cb = fig.colorbar(sm, cax=cax, orientation="horizontal")
        cb.set_label(label, fontsize=9)
        cb.ax.tick_params(labelsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, facecolor="white")


def _short(angles) -> str:
    """``down X · Y→ Z↑`` style label for a panel title."""
    d = describe_view(angles)
    return d.replace("looking down map", "down").replace(" (viewer on", " (from")
