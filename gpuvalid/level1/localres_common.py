"""What the four local-resolution sections (1.c–1.f) share.

Percentiles, the percentile of R, the spec's warnings, the resolution-estimate median, the histogram, colour
views, and the overlay of the local-resolution histograms (1.c–1.f and Level 0's 0.e).
"""

from __future__ import annotations

import traceback

import numpy as np

from ..analyses.base import Figure, SectionResult, percentile_block
from ..errors import NotMeasurable
from .context import HIST_KEY

EPS_HOMOGENEOUS_A = 0.01
MIN_BETTER_PCT = 0.1

CRITERIA = (f"Warn when the local resolutions are too homogeneous (97.5 % and 2.5 % percentiles closer than "
            f"{EPS_HOMOGENEOUS_A:g} Å, a sign the computation failed) or when fewer than {MIN_BETTER_PCT:g} % "
            "of the voxels are better than the reported resolution R (R would then be better than almost "
            "every part of the map).")


def start_resolution(ctx1) -> tuple[float, str]:
    """Return the coarse end of the sweeps in Å and how it was chosen (a text for the report).

    ``max(10, 5·R)`` Å; without R, ``max(10, 5 × the 1.a FSC 0.143 estimate)`` or 10 Å.
    """
    R = ctx1.resolution
    if R is not None:
        return max(10.0, 5.0 * R), f"max(10, 5·R) = {max(10.0, 5.0 * R):g} Å"
    est = [v for k, v in ctx1.estimates.items() if k.startswith("1.a FSC")]
    if est:
        return max(10.0, 5.0 * est[0]), f"max(10, 5 × the 1.a FSC 0.143 resolution) = {max(10.0, 5 * est[0]):.1f} Å"
    return 10.0, "10 Å (no reported resolution)"


def finish_local(ctx1, res: SectionResult, values_map: np.ndarray, label: str, stem: str,
                 estimate_label: str, warn: bool = True) -> list[float]:
    """Report a local-resolution map and return its percentiles.

    Adds to ``res`` the percentiles, the percentile of R, the warnings (when ``warn``), the estimate, the
    histogram and the views of ``values_map`` (host, Å, NaN outside the voxels measured).

    Raises
    ------
    NotMeasurable
        When no voxel of ``values_map`` is finite (no voxel received a local resolution).
    """
    inside = values_map[np.isfinite(values_map)]
    if inside.size == 0:
        raise NotMeasurable("no voxel received a local resolution")
    R = ctx1.resolution
    p, table = percentile_block(inside, "local resolution (Å)")
    rp = None if R is None else 100.0 * float(np.mean(inside < R))
    res.values.update({"percentiles_A": p, "resolution_percentile": rp, "voxels": int(inside.size),
                       "mean_A": float(inside.mean())})
    res.promised = ("percentiles_A",) + (("resolution_percentile",) if R is not None else ())
    res.blocks.append(table)
    if R is not None:
        res.blocks.append(f"The reported resolution {R:g} Å is at the percentile {rp:.1f} % of the local "
                          f"resolutions ({rp:.1f} % of the voxels are better than R).")
    else:
        res.blocks.append("No reported resolution: the percentile of R is not computed.")
    if warn:
        if abs(p[4] - p[0]) < EPS_HOMOGENEOUS_A:
            res.warnings.append(f"the local resolutions are too homogeneous (97.5 % − 2.5 % percentile "
                                f"< {EPS_HOMOGENEOUS_A:g} Å)")
        if rp is not None and rp < MIN_BETTER_PCT:
            res.warnings.append(f"fewer than {MIN_BETTER_PCT:g} % of the voxels ({rp:.3f} %) are better than the "
                                f"reported resolution {R:g} Å")
    ctx1.estimates[estimate_label] = p[2]
    ctx1.cache.setdefault(HIST_KEY, {})[res.id] = (label, inside)
    _publish(ctx1, res, values_map, p, label, stem)
    res.key = f"median {p[2]:.2f} Å"
    return p


def _publish(ctx1, res, values_map, p, label, stem) -> None:
    """MRC on request (voxels not measured hold the median), histogram and colour views (never raises)."""
    ctx0 = ctx1.ctx0
    if ctx0.options.map_dir is None and ctx0.options.figure_dir is None:
        return
    from ..figures.local import write_local_map_outputs

    filled = np.where(np.isfinite(values_map), values_map, np.float32(p[2])).astype(np.float32)
    unit = "local resolution (Å)"
    write_local_map_outputs(
        res, res.id, ctx0.options, ctx0.figure_errors, stem=stem, inside=values_map[np.isfinite(values_map)],
        unit_label=unit, title=label, percentiles=p, views=(ctx0, filled, p[0], p[4], unit),
        mrc=(stem, filled, ctx0.voxel_size, f"The local-resolution map was written to `maps/{stem}.mrc` (voxels "
                                            "not measured hold the median)."))


def overlay_figure(ctx1, res: SectionResult) -> None:
    """Attach the overlay of the local-resolution histograms computed so far (1.c–1.f and 0.e)."""
    ctx0 = ctx1.ctx0
    fig_dir = ctx0.options.figure_dir
    if fig_dir is None:
        return
    try:
        from ..figures.level1_local import overlay_histograms_png
        series = [(f"{sid} {lab}", v) for sid, (lab, v) in sorted(ctx1.cache.get(HIST_KEY, {}).items())]
        loc = ctx0.local_maps.get("0.e")
        if loc is not None and loc["values"] is not None:
            v = np.asarray(loc["values"])          # 0.e: its grid, NaN outside its mask
            if v.shape == tuple(ctx0.shape):
                v = v[ctx0.be.to_host(ctx0.hard_mask).astype(bool)]
            v = v[np.isfinite(v)]
            if v.size:
                series.insert(0, ("0.e local resolution (Level 0)", v))
        if len(series) < 2:
            return
        f = overlay_histograms_png(fig_dir / "l1_local_overlay.png", series, ctx1.resolution)
        res.figures.append(Figure(f, "Local-resolution histograms of the estimators overlaid (normalised to "
                                     "equal area; medians marked): where they agree, the local resolution is "
                                     "robust to the method."))
    except Exception:
        ctx0.figure_errors.append(f"{res.id}:\n{traceback.format_exc()}")
