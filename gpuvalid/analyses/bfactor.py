"""0.d Global B-factor: Guinier fit of the map's radial amplitude between 15 Å and the resolution R.

``ln(mean |F|)`` per Fourier shell against ``x = 1/d²`` (Å⁻²) is fitted by a straight line
``lnF = a·x + b`` over shells with ``15 Å ≥ d ≥ R``; ``B = 4·a`` (Å²), negative when the amplitudes decay.
The map sharpened by ``exp(−B·s²/4)`` up to R is written on request (see :mod:`gpuvalid.guinier`).
"""

from __future__ import annotations

import traceback

from ..errors import NotMeasurable
from ..guinier import LOW_RES_LIMIT_A, guinier
from .base import Figure, SectionResult, md_table, not_applicable

SID, TITLE = "0.d", "Global B-factor (Guinier)"
B_MIN, B_MAX = -300.0, 0.0

EXPLANATION = (
    "Atomic models and maps lose contrast at high resolution: thermal motion, beam-induced movement and "
    "alignment errors damp the Fourier amplitudes roughly as a Gaussian of the spatial frequency. On a "
    "Guinier plot (logarithm of the mean amplitude of each Fourier shell against 1/d²) this damping is a "
    "straight line, and its slope gives the B-factor. We fit that line between 15 Å, where the "
    "low-resolution shape of the molecule dominates, and the reported resolution R. The map multiplied by "
    "the inverse damping up to R is the sharpened map; its Guinier curve (corrected) should be flat over "
    "the fitted range. Here B = 4·slope, so a map whose amplitudes decay has B < 0.")

CRITERIA = (f"Warn when the B-factor is outside [{B_MIN:g}, {B_MAX:g}] Å²: below {B_MIN:g} Å² the map is "
            "strongly blurred (heavy damping), above 0 Å² it is oversharpened.")


def applicability(ctx) -> SectionResult | None:
    """Return the "does not apply" result when no resolution is reported, else None."""
    if ctx.resolution is None:
        return not_applicable(SID, TITLE, "no resolution reported", EXPLANATION)
    return None


def run(ctx) -> SectionResult:
    """Compute section 0.d (global B-factor from the Guinier fit) of the report.

    ``values`` holds the fitted slope a (Å²), intercept b, ``B = 4·a`` (Å²), the number of fitted shells and
    range (Å), and the per-shell ``x = 1/d²`` (Å⁻²), ln(mean |F|) and the sharpened map's curve; writes the
    Guinier figure and the sharpened map on request.  Not applicable without a reported resolution.

    Raises
    ------
    NotMeasurable
        When the Guinier fit cannot be made (too few shells between 15 Å and R).
    """
    skip = applicability(ctx)
    if skip is not None:
        return skip
    R = ctx.resolution
    be = ctx.be
    try:
        prof, fit, sharp, sharp_prof = guinier(be, ctx.V, ctx.voxel_size, R)
    except ValueError as exc:
        raise NotMeasurable(str(exc)) from None

    res = SectionResult(SID, TITLE, explanation=EXPLANATION, criteria=CRITERIA)
    keep = prof.d >= R - 1e-9                     # shells with d ≥ R (k ≥ 1)
    x, lnF, lnC = prof.x[keep], prof.lnF[keep], sharp_prof.lnF[keep]
    res.values = {"slope": fit.slope, "intercept": fit.intercept, "bfactor_A2": fit.bfactor,
                  "fit_shells": fit.fit_shells, "fit_range_A": [LOW_RES_LIMIT_A, R],
                  "shell_x_invA2": x, "shell_lnF": lnF, "shell_lnF_corrected": lnC}
    res.vrs_compat = {"slope": fit.slope, "intercept": fit.intercept, "bfactor_A2": fit.bfactor}
    res.differences = [
        "The reference's text describes the Guinier plot as ln|F|², but its numbers come from the mean "
        "amplitude |F| of each shell (quirk Q5); gpuvalid fits ln(mean |F|) as the spec says, so its B "
        "matches the reference's value (a fit of ln|F|² would give twice the slope)."]

    b = fit.bfactor
    if b < B_MIN:
        res.warnings.append(f"the B-factor {b:.1f} Å² is below {B_MIN:g} Å²: the map's amplitudes decay strongly")
    elif b > B_MAX:
        res.warnings.append(f"the B-factor {b:.1f} Å² is positive: the map looks oversharpened")

    sign = "+" if fit.intercept >= 0 else "−"
    res.blocks.append(
        f"Fitted line over {fit.fit_shells} shells ({LOW_RES_LIMIT_A:g} Å ≥ d ≥ {R:g} Å): "
        f"**lnF = {fit.slope:.1f}·x {sign} {abs(fit.intercept):.2f}**, "
        f"B-factor **{b:.1f} Å²**.\n\n" +
        md_table(["quantity", "value"],
                 [["slope a (Å²)", f"{fit.slope:.2f}"], ["intercept b", f"{fit.intercept:.3f}"],
                  ["B = 4·a (Å²)", f"{b:.1f}"], ["shells in the fit", fit.fit_shells],
                  ["box edge N × Ts", f"{prof.n_edge} × {ctx.voxel_size:g} Å"]]))

    fig_dir = ctx.options.figure_dir
    if fig_dir is not None:
        from ..figures import bfactor as figs
        try:
            f = figs.guinier_png(fig_dir / "guinier.png", x, lnF, lnC, fit.slope, fit.intercept,
                                 fit.fit_mask[keep], R)
            res.figures.append(Figure(f, "Guinier plot: experimental ln(mean |F|), the fitted line and the "
                                         "curve of the sharpened map (corrected)."))
            f = figs.sharpened_slices_png(be, sharp, fig_dir / "sharpened_slices.png")
            res.figures.append(Figure(f, "Max-variance slices of the sharpened map."))
        except Exception:
            ctx.figure_errors.append(f"{SID}:\n{traceback.format_exc()}")
    if ctx.options.map_dir is not None:
        from ..io.mrc import write_mrc
        write_mrc(ctx.options.map_dir / "sharpened.mrc", be.to_host(sharp), ctx.voxel_size)
        res.blocks.append("The sharpened map was written to `maps/sharpened.mrc`.")

    res.key = f"B = {b:.1f} Å²"
    if not res.warnings:
        res.summary = f"The global B-factor ({b:.1f} Å²) is in the usual range."
    elif b > B_MAX:
        res.summary = f"The global B-factor is positive ({b:.1f} Å²): the map appears oversharpened."
    else:
        res.summary = f"The global B-factor ({b:.1f} Å²) shows strong amplitude decay; the map may be blurred."
    del sharp
    return res

