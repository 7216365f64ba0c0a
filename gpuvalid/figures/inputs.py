"""Figures of the input section: central and max-variance slices, projections, mask slices."""

from __future__ import annotations

from pathlib import Path

from .figure import Figure
from .plots import AXIS_NAMES, SLICE_AXES, max_variance_slices_png, slices_png, take_slice


def map_figures(ctx, fig_dir: Path) -> list[Figure]:
    """Slices and projections of the map, and max-variance slices of the hard and soft masks."""
    be, V = ctx.be, ctx.V
    labels = [SLICE_AXES[a] for a in range(3)]
    figs = []
    centre = [take_slice(be, V, a, V.shape[a] // 2) for a in range(3)]
    figs.append(Figure(slices_png(fig_dir / "central_slices.png", centre,
                                  [f"{AXIS_NAMES[a]} = {V.shape[a] // 2}" for a in range(3)],
                                  "Central slices", labels),
                       "Central slices (index N/2 along Z, Y and X)."))
    figs.append(Figure(max_variance_slices_png(be, V, fig_dir / "max_variance_slices.png", "Max-variance slices"),
                       "Max-variance slices: along each axis, the slice whose values vary most."))
    proj = [be.to_host(V.sum(axis=a)) for a in range(3)]
    figs.append(Figure(slices_png(fig_dir / "projections.png", proj,
                                  [f"sum along {AXIS_NAMES[a]}" for a in range(3)], "Projections", labels),
                       "Orthogonal projections (sums along Z, Y and X)."))
    if ctx.threshold is not None and not ctx.threshold_too_high:
        figs.append(Figure(max_variance_slices_png(be, ctx.hard_mask.astype(be.xp.float32),
                                                   fig_dir / "hard_mask_slices.png", "Hard mask"),
                           "Max-variance slices of the hard mask (the components at the contour level with at least "
                           "10 % of the largest one's voxels, dilated by 2 Å)."))
        figs.append(Figure(max_variance_slices_png(be, ctx.soft_mask, fig_dir / "soft_mask_slices.png",
                                                   "Soft mask"),
                           "Max-variance slices of the soft mask (hard mask blurred by a Gaussian of σ = 2 voxels)."))
    return figs
