"""0.c Background analysis: whether the solvent outside the molecule is zero-mean Gaussian noise.

Background = voxels outside the hard mask.  A one-sample Student t-test of mean 0 (two-sided), the mean
and population standard deviation σ, and the fraction of background voxels with ``|v| > 5σ`` compared
with the Gaussian expectation ``2·Φ(−5) ≈ 5.733·10⁻⁷``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from scipy import special, stats

from ..errors import NotMeasurable
from .base import Figure, SectionResult, md_table

if TYPE_CHECKING:
    from ..backend import Backend

SID, TITLE = "0.c", "Background analysis"
N_SIGMA = 5.0
GAUSSIAN_FRACTION = float(special.erfc(N_SIGMA / math.sqrt(2.0)))  # 2·Φ(−5)
MAX_P = 1e-3
MAX_RATIO = 20.0

EXPLANATION = (
    "Outside the molecule a well-processed map should contain only noise centred on zero. A mean that "
    "differs significantly from zero points to a wrong background subtraction or a masking artefact; many "
    f"more voxels beyond {N_SIGMA:g} standard deviations than a Gaussian would produce point to unmasked "
    "density, neighbouring particles or artefacts in the solvent. The background is every voxel outside "
    "the hard mask (all major components at the contour level, dilated by 2 Å).")

CRITERIA = (
    f"Warn when the t-test rejects a zero mean (p < {MAX_P:g}) and when the fraction of background voxels "
    f"beyond {N_SIGMA:g}σ exceeds {MAX_RATIO:g} times the Gaussian expectation ({GAUSSIAN_FRACTION:.4g}).")


def background_stats(be: Backend, V, background) -> dict:
    """t-test of zero mean and the 5σ outlier fraction over ``V[background]`` (float64 sums)."""
    xp = be.xp
    b = V[background].astype(xp.float64)
    n = int(b.size)
    if n < 3:
        return {"n": n}
    mean = be.scalar(b.mean())
    var0 = be.scalar(((b - mean) ** 2).mean())
    std = math.sqrt(var0)
    s1 = math.sqrt(var0 * n / (n - 1))
    if s1 == 0:
        t, p = (0.0, 1.0) if mean == 0 else (math.copysign(math.inf, mean), 0.0)
    else:
        t = mean / (s1 / math.sqrt(n))
        p = float(2.0 * stats.t.sf(abs(t), df=n - 1))
    beyond = int(be.scalar(xp.count_nonzero(xp.abs(b) > N_SIGMA * std)))
    frac = beyond / n
    return {"n": n, "t_statistic": t, "p_value": p, "mean": mean, "std": std, "n_beyond_5sigma": beyond,
            "fraction_beyond_5sigma": frac, "gaussian_fraction": GAUSSIAN_FRACTION,
            "outlier_ratio": frac / GAUSSIAN_FRACTION}


def format_p(p: float, digits: int = 2) -> str:
    """Format a p-value for the text: below the smallest double (it underflowed to 0) it is a bound, not 0."""
    return "< 1e-300" if p < 1e-300 else f"{p:.{digits}g}"


def run(ctx) -> SectionResult:
    """Compute section 0.c (background analysis) of the report.

    ``values`` holds the t-test of zero mean over the voxels outside the hard mask (t, two-sided p), their
    mean and σ, the count and fraction beyond 5σ and its ratio to the Gaussian expectation; ``vrs_compat``
    the same with the reference's background (outside the largest mask component only).

    Raises
    ------
    NotMeasurable
        When the hard mask covers the whole box (fewer than 3 background voxels).
    """
    ctx.require_mask()
    be = ctx.be
    background = ~ctx.hard_mask
    s = background_stats(be, ctx.V, background)
    res = SectionResult(SID, TITLE, explanation=EXPLANATION, criteria=CRITERIA)
    if s["n"] < 3:
        raise NotMeasurable("the hard mask covers the whole box: there are no background voxels")
    res.values = {k: v for k, v in s.items() if k != "n"}
    res.values["background_voxels"] = s["n"]
    compat_keys = ("t_statistic", "p_value", "mean", "std", "fraction_beyond_5sigma", "outlier_ratio")
    if len(ctx.hard_mask_component_sizes) > 1:
        # quirk Q6: the reference's background is outside the largest component only, so the other major
        # parts of the molecule count as solvent
        sr = background_stats(be, ctx.V, ~ctx.hard_mask_largest_only)
        res.vrs_compat = {k: sr[k] for k in compat_keys if k in sr}
        res.vrs_compat["background_voxels"] = sr["n"]
        res.differences.append(
            f"The hard mask keeps {len(ctx.hard_mask_component_sizes)} components (each with ≥ 10 % of the "
            "largest one's voxels); the reference keeps the largest only, so the other parts of the molecule "
            f"count as its background: its outlier ratio would be {sr.get('outlier_ratio', float('nan')):.1f} "
            f"and its mean {sr.get('mean', float('nan')):.3g} (under `vrs_compat`).")
    else:
        res.vrs_compat = {k: s[k] for k in compat_keys}
    res.blocks.append(md_table(
        ["quantity", "value"],
        [["background voxels", s["n"]], ["mean", f"{s['mean']:.6g}"], ["standard deviation σ", f"{s['std']:.6g}"],
         ["t statistic (mean = 0)", f"{s['t_statistic']:.2f}"], ["p-value (two-sided)", format_p(s['p_value'], 3)],
         [f"voxels with \\|v\\| > {N_SIGMA:g}σ", f"{s['n_beyond_5sigma']} ({100 * s['fraction_beyond_5sigma']:.4g} %)"],
         ["Gaussian expectation", f"{100 * GAUSSIAN_FRACTION:.4g} %"],
         ["ratio observed / expected", f"{s['outlier_ratio']:.2f}"]]))
    if s["p_value"] < MAX_P:
        res.warnings.append(f"the background mean {s['mean']:.3g} is significantly different from 0 "
                            f"(t = {s['t_statistic']:.1f}, p {'' if s['p_value'] < 1e-300 else '= '}{format_p(s['p_value'])})")
    if s["outlier_ratio"] > MAX_RATIO:
        res.warnings.append(f"{100 * s['fraction_beyond_5sigma']:.3g} % of the background lies beyond "
                            f"{N_SIGMA:g}σ, {s['outlier_ratio']:.0f} times the Gaussian expectation "
                            f"(> {MAX_RATIO:g})")

    fig_dir = ctx.options.figure_dir
    if fig_dir is not None:
        from ..figures.plots import max_variance_slices_png

        xp = be.xp
        outliers = xp.where(background & (xp.abs(ctx.V) > N_SIGMA * s["std"]), ctx.V, 0).astype(xp.float32)
        path = max_variance_slices_png(be, outliers, fig_dir / "background_5sigma.png",
                                       f"Background voxels beyond {N_SIGMA:g}σ (others set to 0)", cmap="RdBu_r",
                                       symmetric=True)
        res.figures.append(Figure(path, f"Max-variance slices of the background voxels with |v| > {N_SIGMA:g}σ; "
                                        "all other voxels are shown as 0."))
    res.key = f"ratio {s['outlier_ratio']:.1f}, p {'' if s['p_value'] < 1e-300 else '= '}{format_p(s['p_value'])}"
    res.summary = ("The background behaves like zero-mean Gaussian noise." if not res.warnings else
                   "The background is not clean noise: " + res.warnings[0] + ".")
    return res
