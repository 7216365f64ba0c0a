"""0.a Mass analysis: how the molecule (hard mask) and the density's centre of mass sit in the box.

For each axis the first and last index ``i0``, ``i1`` where the hard mask's projection is non-zero give
the empty space on the left ``L = Ts·i0`` and right ``Rt = Ts·(N−1−i1)`` (Å) and the decentering
``100·|Rt − L| / (Ts·N)`` (%).  The centre of mass of the molecule is that of the positive density inside
the hard mask, ``c = Σ w·r / Σ w`` with ``w = max(V, 0)·Mhard``, in voxels, with decentering
``100·|c − N/2| / N``.  The reference takes the whole map's signed densities (meaningless when they sum
to about zero, as in a normalised map); that value is kept under ``vrs_compat`` only when it means
something.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import NotMeasurable
from ..masks import bounding_box
from .base import SectionResult, md_table

if TYPE_CHECKING:
    from ..backend import Backend

SID, TITLE = "0.a", "Mass analysis"
MAX_DECENTERING_PCT = 20.0
MIN_SPACE_A = 20.0
AXES = ("x", "y", "z")

EXPLANATION = (
    "The molecule should sit near the centre of the box with some empty space on every side: a map cut "
    "too tightly loses density at the edges and biases Fourier-based analyses, and a strongly "
    "off-centre molecule often means a wrong box or origin. The hard mask (the major connected components "
    "at the contour level, dilated by 2 Å) defines the molecule. For each axis we report the empty space "
    "left and right of it, how unequal those are relative to the box, and the centre of mass of the "
    "molecule: of the positive density inside the hard mask.")

CRITERIA = (
    f"Warn when the decentering along an axis exceeds {MAX_DECENTERING_PCT:g} %, when the empty space on "
    f"any side is below {MIN_SPACE_A:g} Å, or when the centre of mass is more than "
    f"{MAX_DECENTERING_PCT:g} % of the box away from the centre along an axis.")


MIN_NET_FRACTION = 0.01  # |Σ V| below 1 % of Σ |V|: the signed total is noise, its centre meaningless


def center_of_mass(be: Backend, W, start: tuple = (0, 0, 0), box: tuple | None = None) -> tuple[float, float, float] | None:
    """Weighted centre ``Σ W·r / Σ W`` in voxels (x, y, z), float64 sums.

    ``W`` may be a crop of a box of shape ``box`` ([z, y, x]; default ``W``'s own) that starts at voxel
    ``start`` (z, y, x); the centre is in the box's voxels.  None when the weights cannot define a centre:
    ``Σ W`` is zero or below ``MIN_NET_FRACTION`` of ``Σ |W|`` (signed weights that cancel), or the centre
    falls outside the box.  The sums accumulate in float64 without a float64 copy of ``W``: one pass for
    ``Σ |W|``, one for the (y, x) plane of sums over z and one for the z profile.
    """
    xp = be.xp
    f8 = xp.float64
    plane = W.sum(axis=0, dtype=f8)             # [y, x]
    prof_z = W.sum(axis=(1, 2), dtype=f8)
    profiles = (plane.sum(axis=0), plane.sum(axis=1), prof_z)   # x, y, z
    total = be.scalar(prof_z.sum())
    scale = be.scalar(xp.abs(W).sum(dtype=f8))
    if not (scale > 0) or not (abs(total) >= MIN_NET_FRACTION * scale):
        return None
    c = [be.scalar((prof * xp.arange(prof.size, dtype=f8)).sum()) / total + s0
         for prof, s0 in zip(profiles, start[::-1], strict=True)]
    n_xyz = (W.shape if box is None else box)[::-1]
    if not all(-0.5 <= ci <= n - 0.5 for ci, n in zip(c, n_xyz, strict=True)):
        return None
    return tuple(c)


def molecule_center_of_mass(be: Backend, V, hard_mask, box: tuple | None = None):
    """Centre of mass of ``max(V, 0)`` inside the hard mask, in voxels (x, y, z), or None.

    Summed over the mask's bounding box ``box`` (slices z, y, x; :func:`gpuvalid.masks.bounding_box` when
    not given) only: the weights are 0 outside it.
    """
    xp = be.xp
    box = bounding_box(be, hard_mask) if box is None else box
    if box is None:
        return None
    W = xp.where(hard_mask[box], xp.maximum(V[box], 0), 0)
    return center_of_mass(be, W, start=tuple(sl.start for sl in box), box=V.shape)


def run(ctx) -> SectionResult:
    """Compute section 0.a (mass analysis) of the report: where the molecule sits in the box.

    ``values`` holds per axis (x, y, z) the empty space left and right of the hard mask (Å), the
    decentering (%), and the centre of mass of the positive density inside the hard mask (voxels) with its
    decentering (%); ``vrs_compat`` the reference's right space and whole-map signed centre of mass.

    Raises
    ------
    NotMeasurable
        When the hard mask is empty.
    """
    # no threshold, or one at/above the maximum (empty mask): nothing to measure (the reference would list a
    # "threshold too high" warning and count the section; an empty mask gives no number that means anything)
    ctx.require_mask()
    res = SectionResult(SID, TITLE, explanation=EXPLANATION, criteria=CRITERIA)
    ts = ctx.voxel_size
    n_xyz = ctx.shape[::-1]

    com_raw = center_of_mass(ctx.be, ctx.V)  # the reference's centre (signed densities, all voxels)
    box = ctx.hard_mask_box   # slices z, y, x; None: empty mask
    extent = [None if box is None else (box[a].start, box[a].stop - 1) for a in (2, 1, 0)]  # (i0, i1) x, y, z
    com = None if box is None else molecule_center_of_mass(ctx.be, ctx.V, ctx.hard_mask, box)

    left, right, dec, right_vrs, dec_vrs = [], [], [], [], []
    rows = []
    for ax, n, e in zip(AXES, n_xyz, extent, strict=True):
        if e is None:
            raise NotMeasurable("the hard mask is empty")
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
        res.blocks.append("The centre of mass of the molecule could not be measured: there is no positive "
                          "density inside the hard mask.")
    else:
        com_dec = [100.0 * abs(c - n / 2.0) / n for c, n in zip(com, n_xyz, strict=True)]
        res.blocks.append("Centre of mass of the molecule (positive density inside the hard mask, voxels):\n\n"
                          + md_table(
            ["axis", "centre of mass (voxel)", "box centre (voxel)", "decentering (%)"],
            [[a.upper(), f"{c:.2f}", f"{n / 2:.1f}", f"{d:.2f}"]
             for a, c, n, d in zip(AXES, com, n_xyz, com_dec, strict=True)]))
        for a, d in zip(AXES, com_dec, strict=True):
            if d > MAX_DECENTERING_PCT:
                res.warnings.append(f"the centre of mass is decentred along {a.upper()} by {d:.1f} % "
                                    f"(> {MAX_DECENTERING_PCT:g} %)")

    res.values = {"left_space_A": left, "right_space_A": right, "decentering_pct": dec,
                  "center_of_mass_vox": list(com) if com else None, "com_decentering_pct": com_dec,
                  "hard_mask_components": len(ctx.hard_mask_component_sizes)}
    res.vrs_compat = {"right_space_A": right_vrs, "decentering_pct": dec_vrs,
                      "center_of_mass_vox": list(com_raw) if com_raw else None,
                      "com_decentering_pct": ([100.0 * abs(c - n / 2.0) / n
                                               for c, n in zip(com_raw, n_xyz, strict=True)]
                                              if com_raw else None)}
    if com_raw is None:
        res.vrs_compat["center_of_mass_note"] = (
            "the reference's centre of mass (signed densities over the whole box) is undefined for this map: "
            "its densities sum to about zero (|Σ V| < 1 % of Σ |V|) or the centre falls outside the box")
    res.differences = [
        "Right space: gpuvalid uses Ts·(N−1−i1), the true number of empty voxels after the last mask "
        "voxel; the reference uses Ts·(N−i1), one voxel more (its values are under `vrs_compat`).",
        "Minimum space: the reference's criteria text says \"20 % of the box\" but its code compares with "
        "20 Å; gpuvalid applies 20 Å, as the reference's code does.",
        "Centre of mass: gpuvalid takes the positive density inside the hard mask (the molecule); the reference "
        "takes the signed densities of the whole box, which is dominated by solvent noise and meaningless when "
        "the densities sum to about zero. The reference's value is under `vrs_compat` when it is defined"
        + ("" if com_raw is None else
           " (" + ", ".join(f"{a.upper()} {c:.2f}" for a, c in zip(AXES, com_raw, strict=True)) + " voxels)") + ".",
        "Hard mask: gpuvalid keeps every component with at least 10 % of the largest one's voxels; the reference "
        "keeps only the largest (quirk Q6).",
    ]
    res.key = f"max decentering {max(dec):.1f} %"
    res.summary = ("The molecule is well centred in the box with enough empty space around it."
                   if not res.warnings else
                   "The position of the molecule in the box needs attention: " + res.warnings[0] + ".")
    return res
