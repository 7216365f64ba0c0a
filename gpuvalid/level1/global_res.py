"""1.a Global resolution: FSC (unmasked and soft-masked), DPR and SSNR between the two half maps.

- FSC per 1-voxel shell ``k = round(|f|·N)``: ``Σ Re(F1 F2*) / √(Σ|F1|² Σ|F2|²)``; crossings at 0.143 and 0.5.
- DPR (degrees): ``√(Σ(|F1|+|F2|)·Δφ² / Σ(|F1|+|F2|))``, ``Δφ = arg(F1 F2*)``; crossing at 45°
  (random phases give 180°/√3 ≈ 103.9°).
- SSNR of the full map: ``Σ|S|²/Σ|Nz|² − 1`` with ``S = (F1+F2)/2``, ``Nz = (F1−F2)/2``; crossing at 1.
Crossings are interpolated linearly between the two shells around them and ignore shells 0 and 1.
DPR and SSNR use the halves of the graded FSC (soft-masked when the soft mask exists).
"""

from __future__ import annotations

import numpy as np

from ..analyses.base import SectionResult, md_table
from . import shells
from .common import CRITERION, add_figure, check_estimate, fmt_A, grade_without_R
from .context import resolution_of

SID, TITLE = "1.a", "Global resolution"
DPR_DEG = 45.0
DPR_VRS_DEG = 102.9

EXPLANATION = (
    "The two half maps are reconstructed from independent halves of the particles, so what they share is "
    "signal and what differs is noise. The Fourier shell correlation (FSC) measures their agreement in each "
    "shell of spatial frequency; the resolution is where it falls to 0.143 (the value for which the full map "
    "has an expected correlation of 0.5 with the true structure). The FSC of the soft-masked halves is what "
    "depositors report and what is graded here; the unmasked FSC is lower when the box holds much solvent "
    "noise. The differential phase residual (DPR) is the amplitude-weighted RMS phase difference of the halves "
    "(45° is the usual criterion; 103.9° is the value of random phases), and the spectral signal-to-noise ratio "
    "(SSNR) of the full map compares the power of the half-map sum with that of their difference (SSNR = 1 "
    "corresponds to FSC = 1/3).")


def run(ctx1) -> SectionResult:
    """Compute section 1.a, the global resolution of the halves: FSC, DPR and SSNR crossings.

    Results: the unmasked and soft-masked FSC 0.143 and 0.5 crossings, the DPR 45° and SSNR 1 crossings (all in
    Å, on the soft-masked halves when the soft mask exists), the reasons for missing crossings, the curves per
    shell and the Nyquist limit; ``vrs_compat`` holds the reference's readings (unmasked FSC, DPR 102.9°,
    amplitude-ratio SSNR).
    """
    geo = ctx1.geo
    f = geo.freq
    R = ctx1.resolution
    res = SectionResult(SID, TITLE, explanation=EXPLANATION)
    fsc_u = ctx1.fsc_unmasked.fsc
    mask, mask_text, soft = ctx1.mask_info
    # every reading of the unmasked spectra first (the reference's DPR and SSNR): no other section reads them,
    # so with a soft mask they are dropped before the masked spectra are made (8 B per voxel less at this
    # section's peak and in 1.b, 1.g, 1.h)
    dpr_u = shells.dpr(geo, ctx1.F1, ctx1.F2)
    radial, idx = shells.ssnr_vrs(ctx1.be, ctx1.F1, ctx1.F2, ctx1.shape)
    if soft:
        ctx1.drop_unmasked_spectra()
    fsc_m = ctx1.fsc_masked.fsc if soft else None

    def cross(y, level, mode="below"):
        x, why = shells.first_crossing(f, y, level, mode)
        return resolution_of(x), why

    u143, u143_why = cross(fsc_u, 0.143)
    u05, u05_why = cross(fsc_u, 0.5)
    if soft:
        m143, m143_why = cross(fsc_m, 0.143)
        m05, m05_why = cross(fsc_m, 0.5)
        G1, G2 = ctx1.M1, ctx1.M2
    else:
        m143 = m05 = None
        m143_why = m05_why = f"no soft mask ({mask_text})"
        G1, G2 = ctx1.F1, ctx1.F2
    dpr_g = shells.dpr(geo, G1, G2) if soft else dpr_u
    ssnr_g = shells.ssnr(geo, G1, G2)
    del G1, G2
    ctx1.drop_unmasked_spectra()          # without a soft mask they were the graded halves: done with them too
    d45, d45_why = cross(dpr_g, DPR_DEG, "above")
    s1, s1_why = cross(ssnr_g, 1.0)
    graded_fsc, graded_why = (m143, m143_why) if soft else (u143, u143_why)
    label_g = "soft-masked" if soft else "unmasked"

    # ---- reference-compatible values -------------------------------------------------------------------
    rows = slice(1, None)  # the reference drops shell 0
    v_fsc = shells.vrs_first_cross(f[rows], fsc_u[rows], 0.143, "lesser")
    v_dpr = shells.vrs_first_cross(f[rows], dpr_u[rows], DPR_VRS_DEG, "greater")
    with np.errstate(invalid="ignore", divide="ignore"):
        log_ssnr = np.log10(radial - 1.0)
    f_vrs = idx * 2.0 * ctx1.voxel_size / ctx1.shape[0]
    v_ssnr = shells.vrs_first_cross(f_vrs, log_ssnr, 0.0, "lesser")
    res.vrs_compat = {"fsc_0143_A": resolution_of(v_fsc), "dpr_103_A": resolution_of(v_dpr),
                      "ssnr_A": resolution_of(v_ssnr), "dpr_threshold_deg": DPR_VRS_DEG,
                      "ssnr_log10_amplitude_ratio": log_ssnr}

    res.values = {
        "fsc_0143_A": u143, "fsc_05_A": u05, "fsc_0143_masked_A": m143, "fsc_05_masked_A": m05,
        "dpr_45_A": d45, "ssnr_1_A": s1, "graded_on": label_g, "mask": mask_text,
        "reasons": {k: v for k, v in {"fsc_0143_A": u143_why, "fsc_05_A": u05_why, "fsc_0143_masked_A": m143_why,
                                      "fsc_05_masked_A": m05_why, "dpr_45_A": d45_why,
                                      "ssnr_1_A": s1_why}.items() if v},
        "curves": {"frequency_invA": f, "fsc": fsc_u, "fsc_masked": fsc_m, "dpr_deg": dpr_g,
                   "dpr_unmasked_deg": dpr_u, "ssnr": ssnr_g, "shell_coefficients": geo.counts()},
        "nyquist_A": ctx1.nyquist_A(),
    }
    for lab, v in (("FSC 0.143", graded_fsc), ("DPR 45°", d45), ("SSNR 1", s1)):
        if v is not None:
            ctx1.estimates[f"1.a {lab}"] = v

    def cell(v, why):
        return fmt_A(v) if v is not None else f"— ({why})"

    res.blocks.append(md_table(
        ["estimate", "unmasked halves", "soft-masked halves"],
        [["FSC = 0.143", cell(u143, u143_why), cell(m143, m143_why)],
         ["FSC = 0.5", cell(u05, u05_why), cell(m05, m05_why)],
         ["DPR = 45°", "—" if soft else cell(d45, d45_why), cell(d45, d45_why) if soft else "—"],
         ["SSNR = 1", "—" if soft else cell(s1, s1_why), cell(s1, s1_why) if soft else "—"]]))
    res.blocks.append(f"Masked analyses use {mask_text}. Shells are 1/(N·Ts) = {f[1]:.4f} Å⁻¹ wide "
                      f"(N = {geo.n_edge}, Nyquist {ctx1.nyquist_A():.2f} Å). The graded FSC is the {label_g} one.")

    fig_dir = ctx1.options.figure_dir
    if fig_dir is not None:
        from ..figures import level1 as figs
        curves = [(fsc_u, "FSC, unmasked halves")]
        if soft:
            curves.append((fsc_m, "FSC, soft-masked halves"))
        add_figure(ctx1, res, lambda: figs.curves_png(
            fig_dir / "l1_fsc.png", f, curves, "Fourier shell correlation of the half maps", "FSC",
            hlines=[(0.143, "0.143"), (0.5, "0.5")], ylim=(-0.1, 1.02),
            vlines=[(1 / graded_fsc if graded_fsc else None, f"0.143 crossing ({label_g})")]),
            "FSC between the half maps (unmasked and soft-masked) with the 0.143 and 0.5 thresholds.")
        add_figure(ctx1, res, lambda: figs.curves_png(
            fig_dir / "l1_dpr.png", f, [(dpr_g, f"DPR, {label_g} halves")], "Differential phase residual",
            "DPR (degrees)", hlines=[(DPR_DEG, "45°"), (180 / np.sqrt(3), "103.9° (random phases)")],
            ylim=(0, 130)), "Amplitude-weighted differential phase residual with the 45° criterion and the "
                            "random-phase level used by the reference.")
        add_figure(ctx1, res, lambda: figs.curves_png(
            fig_dir / "l1_ssnr.png", f, [(ssnr_g, f"SSNR of the full map ({label_g} halves)")],
            "Spectral signal-to-noise ratio", "SSNR", hlines=[(1.0, "SSNR = 1")], logy=True),
            "SSNR = Σ|S|²/Σ|N|² − 1 per shell (S = half-map mean, N = half difference), log scale.")

    what = (f"the {label_g} FSC 0.143, the DPR 45° and the SSNR 1 resolutions")
    res.criteria = CRITERION.format(what=f"each of {what}")
    check_estimate(res, R, graded_fsc, f"{label_g} FSC 0.143 resolution")
    check_estimate(res, R, d45, "DPR 45° resolution")
    check_estimate(res, R, s1, "SSNR = 1 resolution")
    res.differences = [
        "The reference grades the unmasked FSC only; gpuvalid gives both and grades the soft-masked one "
        f"(the reference's unmasked crossing, with its 'index > 1' rule, is `vrs_compat.fsc_0143_A` = "
        f"{fmt_A(res.vrs_compat['fsc_0143_A'])}).",
        f"The reference's DPR criterion is the random-phase level (102.9° in its code, 103.9° in its text): a "
        f"point where no phase information is left, far more optimistic than the usual 45° "
        f"(`vrs_compat.dpr_103_A` = {fmt_A(res.vrs_compat['dpr_103_A'])}).",
        "The reference's SSNR is the shell mean of the amplitude ratio |S|/|N| (not a power ratio) tested "
        "against 2, on a frequency axis i·2·Ts/N instead of i/(N·Ts), which divides the resolution by 2·Ts² "
        f"(`vrs_compat.ssnr_A` = {fmt_A(res.vrs_compat['ssnr_A'])}).",
        "The reference's logistic fit of the FSC ('information preserved up to FSC 0.9') is not reproduced; "
        "the FSC 0.5 crossing is given instead.",
    ]
    key = f"FSC 0.143 = {fmt_A(graded_fsc)} ({label_g})"
    res.key = key
    if R is None:
        return grade_without_R(res, key)
    if graded_fsc is None:
        res.summary = (f"The {label_g} FSC does not cross 0.143 ({graded_why}).")
    else:
        res.summary = (f"The half maps give a global resolution of {graded_fsc:.2f} Å ({label_g} FSC 0.143; "
                       f"unmasked {fmt_A(u143)}), DPR 45° {fmt_A(d45)}, SSNR 1 {fmt_A(s1)}.")
    return res
