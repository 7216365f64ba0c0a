"""1.h 3-D FSC (conical FSC, Tan et al. 2017).

The FSC of the soft-masked halves inside hard double cones of 20° half-angle: along the map axes X, Y and Z,
and around 500 directions covering the hemisphere (Fibonacci lattice) for the histogram of directional
resolutions and the sphericity.  Shells run up to the global FSC's first drop below 0.13 plus 4 shells
(``RMax``, the reference's extent); a direction that has not crossed 0.143 by then is given the resolution of
``RMax`` and counted as "no crossing".  Sphericity ``ψ = π^{1/3}(6V)^{2/3}/A`` (1 for a sphere) of the region
where the conical FSC ≥ 0.5, a star-shaped surface meshed over the direction lattice.  Cone sums come from
direction-binned shell sums: no all-pairs cost.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import ConvexHull

from ..analyses.base import SectionResult, md_table
from . import shells
from .common import CRITERION, add_figure, check_estimate, fmt_A, grade_without_R
from .context import resolution_of

SID, TITLE = "1.h", "3-D FSC (conical FSC)"
CONE_DEG = 20.0
THRESHOLD = 0.143
SPHERICITY_THRESHOLD = 0.5
N_DIRECTIONS = 500
AXES = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])

EXPLANATION = (
    "The 3-D FSC computes the FSC inside a 20° cone around every direction. Its cuts along the X, Y and Z "
    "axes show whether some directions are resolved worse than others (typically those along a preferred "
    "particle orientation); the histogram of directional resolutions shows the spread, and the sphericity of "
    "the region where the conical FSC exceeds 0.5 is 1 for an isotropic map and lower for an anisotropic one.")


def sphericity(directions: np.ndarray, radius: np.ndarray) -> float:
    """Sphericity of the star-shaped surface ``r(u)`` over hemisphere axes ``u`` (mirrored to the full sphere)."""
    P = np.concatenate([directions, -directions])
    r = np.concatenate([radius, radius])
    hull = ConvexHull(P)
    V = P * r[:, None]
    a, b, c = V[hull.simplices[:, 0]], V[hull.simplices[:, 1]], V[hull.simplices[:, 2]]
    vol = float(np.abs(np.einsum("ij,ij->i", a, np.cross(b, c))).sum() / 6.0)
    area = float(np.linalg.norm(np.cross(b - a, c - a), axis=1).sum() / 2.0)
    if area <= 0:
        return float("nan")
    return math.pi ** (1 / 3) * (6 * vol) ** (2 / 3) / area


def run(ctx1) -> SectionResult:
    """Compute section 1.h, the 3-D (conical) FSC of the soft-masked halves.

    Results: the global and X/Y/Z-cone resolutions at FSC 0.143 and 0.5 (Å), the sphericity, the min/max/mean
    of the 500 directional resolutions (Å) and how many never cross before ``RMax``, the curves and the
    direction table; ``vrs_compat`` holds the reference's values on its frequency axis ``i·2·Ts/N``.
    """
    geo = ctx1.geo
    f = geo.freq
    R = ctx1.resolution
    mask, mask_text, soft = ctx1.mask_info
    gfsc = ctx1.fsc_masked.fsc
    bins = ctx1.direction_bins
    binned = ctx1.binned_masked
    # RMax: first shell (≥ 2) with |FSC| < 0.13, plus 4
    below = np.flatnonzero(np.abs(np.nan_to_num(gfsc[2:], nan=0.0)) < 0.13)
    kmax = geo.nshell - 1 if below.size == 0 else min(geo.nshell - 1, int(below[0]) + 2 + 4)
    ff = f[: kmax + 1]
    axes_fsc = shells.directional_fsc(binned, shells.cone_weights(bins.centres, AXES, CONE_DEG, "hard"))[: kmax + 1]
    D = shells.fibonacci_hemisphere(N_DIRECTIONS)
    dfsc = shells.directional_fsc(binned, shells.cone_weights(bins.centres, D, CONE_DEG, "hard"))[: kmax + 1]

    def cross(y, lev=THRESHOLD):
        x, why = shells.first_crossing(ff, y, lev, "below")
        return resolution_of(x), why

    g_A, g_why = cross(gfsc[: kmax + 1])
    xyz = [cross(axes_fsc[:, i]) for i in range(3)]
    half = [cross(gfsc[: kmax + 1], 0.5)] + [cross(axes_fsc[:, i], 0.5) for i in range(3)]
    dres = np.empty(N_DIRECTIONS)
    rad05 = np.empty(N_DIRECTIONS)
    never = np.zeros(N_DIRECTIONS, bool)
    for j in range(N_DIRECTIONS):
        x, _ = shells.first_crossing(ff, dfsc[:, j], THRESHOLD, "below")
        never[j] = x is None
        dres[j] = 1.0 / (ff[-1] if x is None else x)
        x5, _ = shells.first_crossing(ff, dfsc[:, j], SPHERICITY_THRESHOLD, "below")
        rad05[j] = ff[-1] if x5 is None else x5
    sph = sphericity(D, rad05)

    res = SectionResult(SID, TITLE, explanation=EXPLANATION)
    if g_A is not None:
        ctx1.estimates["1.h 3-D FSC global"] = g_A
    res.values = {"global_A": g_A, "x_A": xyz[0][0], "y_A": xyz[1][0], "z_A": xyz[2][0], "sphericity": sph,
                  "global_05_A": half[0][0], "x_05_A": half[1][0], "y_05_A": half[2][0], "z_05_A": half[3][0],
                  "sphericity_threshold": SPHERICITY_THRESHOLD, "rmax_shell": kmax, "cone_half_angle_deg": CONE_DEG,
                  "reasons": ({k: w for k, (_, w) in zip(("x_A", "y_A", "z_A"), xyz, strict=True) if w}
                              | ({"global_A": g_why} if g_why else {})),
                  "directional_resolution_A": {"min": float(dres.min()), "max": float(dres.max()),
                                               "mean": float(dres.mean()), "never_cross": int(never.sum())},
                  "curves": {"frequency_invA": ff, "global": gfsc[: kmax + 1], "x": axes_fsc[:, 0],
                             "y": axes_fsc[:, 1], "z": axes_fsc[:, 2]},
                  "direction_table": {"xyz": D, "resolution_A": dres}, "mask": mask_text}
    # the reference's frequency axis i·2·Ts/N: each resolution divided by 2·Ts²
    ts = ctx1.voxel_size
    fac = 1.0 / (2.0 * ts * ts)
    res.vrs_compat = {k: (None if v is None else v * fac) for k, v in
                      (("global_A", g_A), ("x_A", xyz[0][0]), ("y_A", xyz[1][0]), ("z_A", xyz[2][0]))}
    res.vrs_compat["axis_factor"] = fac

    rows = [["global (soft-masked FSC)", fmt_A(g_A, f"— ({g_why})"), fmt_A(half[0][0], "—")]] + [
        [f"cone along {n}", fmt_A(v, f"— ({w})"), fmt_A(h[0], "—")]
        for n, (v, w), h in zip("XYZ", xyz, half[1:], strict=True)]
    res.blocks.append(md_table(["FSC", "0.143 crossing", "0.5 crossing"], rows))
    rows = [["directional resolutions (500 cones, 0.143)", f"{dres.min():.2f} – {dres.max():.2f} Å (mean {dres.mean():.2f} Å)"
             + (f"; {int(never.sum())} reach RMax without crossing" if never.any() else "")],
            [f"sphericity (conical FSC ≥ {SPHERICITY_THRESHOLD:g})", f"{sph:.3f}"]]
    res.blocks.append(md_table(["quantity", "value"], rows))
    res.blocks.append(f"Shells up to RMax = {kmax} ({1 / ff[-1]:.2f} Å: the global FSC's drop below 0.13 plus 4 "
                      f"shells); {CONE_DEG:g}° hard cones; halves multiplied by {mask_text}.")

    fig_dir = ctx1.options.figure_dir
    if fig_dir is not None:
        from ..figures import level1 as figs
        from ..figures.plots import histogram_png
        add_figure(ctx1, res, lambda: figs.curves_png(
            fig_dir / "l1_fsc3d_xyz.png", ff, [(gfsc[: kmax + 1], "global FSC"), (axes_fsc[:, 0], "X cone"),
                                               (axes_fsc[:, 1], "Y cone"), (axes_fsc[:, 2], "Z cone")],
            "Conical FSC along the map axes (20° cones)", "FSC", hlines=[(THRESHOLD, "0.143")], ylim=(-0.1, 1.02)),
            "Global FSC and the conical FSC along X, Y and Z.")
        add_figure(ctx1, res, lambda: histogram_png(
            fig_dir / "l1_fsc3d_hist.png", dres, "directional resolution (Å)",
            "Directional resolutions (FSC 0.143 in 20° cones)", marker=g_A,
            marker_label=None if g_A is None else f"global {g_A:.2f} Å", bins=30),
            "Histogram of the directional resolutions of 500 cones covering the hemisphere.")
        add_figure(ctx1, res, lambda: figs.hemisphere_png(
            fig_dir / "l1_fsc3d_directions.png", D, np.where(never, np.nan, dres),
            "Directional resolution (conical FSC 0.143, 20° cones)", "resolution (Å)", never=never),
            "Directional resolution on the hemisphere (equal-area projection centred on Z, rim = X–Y plane).")
    res.criteria = (CRITERION.format(what="the global 3-D FSC resolution") +
                    " Also warn when the global FSC does not cross 0.143.")
    check_estimate(res, R, g_A, "global 3-D FSC resolution")
    if g_A is None:
        res.warnings.append(f"the global FSC does not cross 0.143 ({g_why})")
    res.differences = [
        "The reference reads the 3-D FSC curves on the frequency axis i·2·Ts/N (instead of i/(N·Ts)), so its "
        f"resolutions are the true ones divided by 2·Ts² = {2 * ts * ts:.3f} (`vrs_compat`: global "
        f"{fmt_A(res.vrs_compat['global_A'])}, X {fmt_A(res.vrs_compat['x_A'])}, Y {fmt_A(res.vrs_compat['y_A'])}, "
        f"Z {fmt_A(res.vrs_compat['z_A'])}).",
        "The reference reports only the X/Y/Z cuts and the global value; gpuvalid adds the histogram and the "
        "sphericity. Cone sums use direction bins (about 1.9° cells) instead of all pairs of shell points; "
        "3DFSC's +2 zero-padding of x and its round(2·inc·|k|) shells are not reproduced.",
    ]
    res.key = f"global {fmt_A(g_A)}, sphericity {sph:.2f}"
    if R is None:
        return grade_without_R(res, res.key)
    res.summary = (f"The 3-D FSC gives {fmt_A(g_A)} globally (cones along X {fmt_A(xyz[0][0])}, Y {fmt_A(xyz[1][0])}, "
                   f"Z {fmt_A(xyz[2][0])}; at FSC 0.5 X {fmt_A(half[1][0])}, Y {fmt_A(half[2][0])}, "
                   f"Z {fmt_A(half[3][0])}), directional resolutions {dres.min():.2f}–{dres.max():.2f} Å, "
                   f"sphericity {sph:.2f}.")
    return res
