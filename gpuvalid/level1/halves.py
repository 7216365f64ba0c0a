"""The "Half maps" section (not graded).

Files, hashes, real-space agreement and max-variance slices of h1, h2 and h1 − h2 (the difference should look
like noise, with no structure).
"""

from __future__ import annotations

from ..analyses.base import NOT_MEASURED, STATUS_TEXT, SectionResult, md_table
from .common import add_figure

SID, TITLE = "1", "Half maps"
INFO = "info"

EXPLANATION = (
    "Level 1 validates the map with its two half maps, reconstructions from independent halves of the "
    "particles. They must share the primary map's box and voxel size, differ from each other, and their "
    "difference should show noise only: structure in h1 − h2 means the halves were not refined "
    "independently or differ in alignment or scale.")


class InfoSection(SectionResult):
    """A section that reports but is not graded (not counted in the score)."""

    @property
    def evaluable(self) -> bool:
        """Always False: the section is not graded."""
        return False

    @property
    def status_text(self) -> str:
        """Status as shown in the report: "not graded", or the usual status text otherwise (e.g. not measured)."""
        if self.status == INFO:
            return "not graded"
        return STATUS_TEXT[self.status].format(n=len(self.warnings))


def refused(reason: str) -> InfoSection:
    """Return the section when the halves cannot be used: "could not be measured" with the one-line reason."""
    return InfoSection(SID, TITLE, status=NOT_MEASURED, reason=reason, explanation=EXPLANATION,
                       summary=f"Level 1 could not run: {reason}.", key="—")


def run(ctx1) -> InfoSection:
    """Compute the "Half maps" section (not graded).

    Results: file names, SHA-256, mean and σ of each half, σ(h1 − h2), the real-space correlation of the halves
    inside the mask, the mask used, and (with a figure folder) max-variance slices of h1, h2 and h1 − h2.
    """
    be, xp = ctx1.be, ctx1.be.xp
    hm = ctx1.halves
    res = InfoSection(SID, TITLE, status=INFO, explanation=EXPLANATION)
    h1, h2 = ctx1.h1, ctx1.h2
    mask, mask_text, soft = ctx1.mask_info
    stats = []
    for h in (h1, h2):
        stats.append((float(h.mean(dtype=xp.float64)), float(h.std(dtype=xp.float64))))
    d = h1 - h2
    sd = float(d.std(dtype=xp.float64))
    w = mask / float(mask.sum(dtype=xp.float64))

    def wcorr(a, b):
        ma, mb = float((w * a).sum(dtype=xp.float64)), float((w * b).sum(dtype=xp.float64))
        cab = float((w * (a - ma) * (b - mb)).sum(dtype=xp.float64))
        caa = float((w * (a - ma) ** 2).sum(dtype=xp.float64))
        cbb = float((w * (b - mb) ** 2).sum(dtype=xp.float64))
        return cab / max((caa * cbb) ** 0.5, 1e-30)

    cc = wcorr(h1, h2)
    nz, ny, nx = ctx1.shape
    rows = [["file", f"`{hm.paths[0].name}`", f"`{hm.paths[1].name}`"],
            ["SHA-256", f"`{hm.sha256[0]}`", f"`{hm.sha256[1]}`"],
            ["header voxel size (x, y, z)", *[", ".join(f"{v:.4g}" for v in vs) + " Å" for vs in hm.header_voxel_size]],
            ["mean / σ", *[f"{m:.4g} / {s:.4g}" for m, s in stats]]]
    res.blocks.append(md_table(["", "half map 1", "half map 2"], rows))
    res.blocks.append(
        f"Box {nx} × {ny} × {nz} voxels at Ts = {ctx1.voxel_size:.4g} Å (the primary map's). Real-space "
        f"correlation of the halves inside {'the soft mask' if soft else 'a spherical mask'}: **{cc:.3f}**; "
        f"σ(h1 − h2) = {sd:.4g}.")
    for n in hm.notes:
        res.blocks.append(f"Note: {n}.")
    res.values = {"files": [p.name for p in hm.paths], "sha256": list(hm.sha256),
                  "real_space_correlation": cc, "sigma_difference": sd,
                  "mean": [m for m, _ in stats], "sigma": [s for _, s in stats], "mask": mask_text}
    fig_dir = ctx1.options.figure_dir
    if fig_dir is not None:
        from ..figures import level1 as figs
        add_figure(ctx1, res, lambda: figs.half_slices_png(be, h1, fig_dir / "l1_half1.png",
                                                           "Half map 1: max-variance slices"),
                   "Half map 1, max-variance slice along each axis.")
        add_figure(ctx1, res, lambda: figs.half_slices_png(be, h2, fig_dir / "l1_half2.png",
                                                           "Half map 2: max-variance slices"),
                   "Half map 2, max-variance slice along each axis.")
        add_figure(ctx1, res, lambda: figs.half_slices_png(be, d, fig_dir / "l1_halfdiff.png",
                                                           "h1 − h2: max-variance slices", symmetric=True),
                   "Difference h1 − h2 (should show noise only, no molecular features).")
    res.key = f"real-space CC {cc:.3f}"
    res.reason = res.key   # shown by the CLI table for sections that are not graded
    return res
