"""0.a Mass analysis: how the molecule (hard mask) and the density's centre of mass sit in the box.

For each axis the first and last index ``i0``, ``i1`` where the hard mask's projection is non-zero give
the empty space on the left ``L = Ts·i0`` and right ``Rt = Ts·(N−1−i1)`` (Å) and the decentering
``100·|Rt − L| / (Ts·N)`` (%).  The centre of mass of the whole map (all voxels, as the reference does)
is ``c = Σ V·r / Σ V`` in voxels, with decentering ``100·|c − N/2| / N``.
"""

from __future__ import annotations

import numpy as np

from ..errors import NotMeasurable
from .base import SectionResult, md_table

SID, TITLE = "0.a", "Mass analysis"
MAX_DECENTERING_PCT = 20.0
MIN_SPACE_A = 20.0
AXES = ("x", "y", "z")

EXPLANATION = (
    "The molecule should sit near the centre of the box with some empty space on every side: a map cut "
    "too tightly loses density at the edges and biases Fourier-based analyses, and a strongly "
    "off-centre molecule often means a wrong box or origin. The hard mask (largest connected component "
    "at the contour level, dilated by 2 Å) defines the molecule. For each axis we report the empty space "
    "left and right of it, how unequal those are relative to the box, and the centre of mass of the map "
    "(all voxels, including negative densities, as the reference service does).")

CRITERIA = (
    f"Warn when the decentering along an axis exceeds {MAX_DECENTERING_PCT:g} %, when the empty space on "
    f"any side is below {MIN_SPACE_A:g} Å, or when the centre of mass is more than "
    f"{MAX_DECENTERING_PCT:g} % of the box away from the centre along an axis.")


def mask_extent(be, mask) -> list[tuple[int, int] | None]:
    """``(i0, i1)`` per axis in x, y, z order (None for an empty mask)."""
    xp = be.xp
    out = []
    for axis in (2, 1, 0):  # x, y, z in a [z, y, x] array
        other = tuple(a for a in range(3) if a != axis)
        proj = be.to_host(xp.any(mask, axis=other))
        idx = np.flatnonzero(proj)
        out.append(None if idx.size == 0 else (int(idx[0]), int(idx[-1])))
    return out


def center_of_mass(be, V) -> tuple[float, float, float] | None:
    """Density-weighted centre ``Σ V·r / Σ V`` in voxels (x, y, z); None when ``Σ V`` ≈ 0."""
    xp = be.xp
    Vd = V.astype(xp.float64)
    total = be.scalar(Vd.sum())
    scale = be.scalar(xp.abs(Vd).sum())
    if scale == 0 or abs(total) < 1e-9 * scale:
        return None
    c = []
    for axis in (2, 1, 0):
        other = tuple(a for a in range(3) if a != axis)
        prof = Vd.sum(axis=other)
        c.append(be.scalar((prof * xp.arange(prof.size, dtype=xp.float64)).sum()) / total)
    return tuple(c)


def run(ctx) -> SectionResult:
    if ctx.threshold is None:
        raise NotMeasurable("no contour threshold was given (use --threshold or an EMDB header)")
    res = SectionResult(SID, TITLE, explanation=EXPLANATION, criteria=CRITERIA)
    ts = ctx.voxel_size
    n_xyz = ctx.shape[::-1]

    com = center_of_mass(ctx.be, ctx.V)
    if ctx.threshold_too_high:
        res.warnings.append(f"threshold too high: the contour level {ctx.threshold:g} is at or above the map "
                            f"maximum {ctx.vmax:g}, so the mask is empty and the spaces cannot be measured")
        extent = [None, None, None]
    else:
        extent = mask_extent(ctx.be, ctx.hard_mask)

    left, right, dec, right_vrs, dec_vrs = [], [], [], [], []
    rows = []
    for ax, n, e in zip(AXES, n_xyz, extent):
        if e is None:
            left.append(None), right.append(None), dec.append(None), right_vrs.append(None), dec_vrs.append(None)
            continue
        i0, i1 = e
        L, R = ts * i0, ts * (n - 1 - i1)
        Rq = ts * (n - i1)  # quirk Q1 of the reference: one voxel too many
        d = 100.0 * abs(R - L) / (ts * n)
        left.append(L), right.append(R), dec.append(d)
        right_vrs.append(Rq), dec_vrs.append(100.0 * abs(Rq - L) / (ts * n))
        rows.append([ax.upper(), f"{L:.2f}", f"{R:.2f}", f"{d:.2f}"])
        if d > MAX_DECENTERING_PCT:
            res.warnings.append(f"the molecule is decentred along {ax.upper()} by {d:.1f} % "
                                f"(> {MAX_DECENTERING_PCT:g} %)")
        for side, s in (("left", L), ("right", R)):
            if s < MIN_SPACE_A:
                res.warnings.append(f"only {s:.1f} Å of empty space on the {side} along {ax.upper()} "
                                    f"(< {MIN_SPACE_A:g} Å)")
    if rows:
        res.blocks.append("Empty space around the hard mask:\n\n" +
                          md_table(["axis", "left space (Å)", "right space (Å)", "decentering (%)"], rows))

    com_dec = None
    if com is None:
        res.blocks.append("The map's total density is zero, so its centre of mass is undefined.")
        res.warnings.append("the centre of mass is undefined (total density ≈ 0)")
    else:
        com_dec = [100.0 * abs(c - n / 2.0) / n for c, n in zip(com, n_xyz)]
        res.blocks.append("Centre of mass of the map (voxels):\n\n" + md_table(
            ["axis", "centre of mass (voxel)", "box centre (voxel)", "decentering (%)"],
            [[a.upper(), f"{c:.2f}", f"{n / 2:.1f}", f"{d:.2f}"] for a, c, n, d in zip(AXES, com, n_xyz, com_dec)]))
        for a, d in zip(AXES, com_dec):
            if d > MAX_DECENTERING_PCT:
                res.warnings.append(f"the centre of mass is decentred along {a.upper()} by {d:.1f} % "
                                    f"(> {MAX_DECENTERING_PCT:g} %)")

    res.values = {"left_space_A": left, "right_space_A": right, "decentering_pct": dec,
                  "center_of_mass_vox": list(com) if com else None, "com_decentering_pct": com_dec}
    res.vrs_compat = {"right_space_A": right_vrs, "decentering_pct": dec_vrs}
    res.differences = [
        "Right space: gpuvalid uses Ts·(N−1−i1), the true number of empty voxels after the last mask "
        "voxel; the reference uses Ts·(N−i1), one voxel more (its values are under `vrs_compat`).",
        "Minimum space: the reference's criteria text says \"20 % of the box\" but its code compares with "
        "20 Å; gpuvalid applies 20 Å, as the reference's code does.",
    ]
    valid = [d for d in dec if d is not None]
    res.key = f"max decentering {max(valid):.1f} %" if valid else "empty mask"
    res.summary = ("The molecule is well centred in the box with enough empty space around it."
                   if not res.warnings else
                   "The position of the molecule in the box needs attention: " + res.warnings[0] + ".")
    return res
