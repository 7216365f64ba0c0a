"""0.f LocBfactor: a B-factor per voxel from the decay of the local amplitude with frequency.

On the map resampled to ``Ts' = R/2`` the spiral engine gives the local amplitude ``A`` at 10 shell
frequencies ``f0`` from 1/15 Å⁻¹ to 1/R (Gaussian shells of width ``w = 4.8/(N·Ts')``).  At each ``f0`` the
noise level is the 0.9 quantile of ``A`` over the background inside the inscribed sphere; the weighted
log amplitude ``ln(A·A/(A + noise))`` is fitted per voxel by a line against ``f0²`` and the local
B-factor is ``4·slope`` (Å², negative for decaying amplitudes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import NotMeasurable
from ..masks import background_sphere_index
from ..spiral import LogLinearFit, SpiralEngine, quantile_at
from .base import SectionResult, md_table, not_applicable, percentile_block

if TYPE_CHECKING:
    from ..backend import Backend

SID, TITLE = "0.f", "Local B-factor (LocBfactor)"
LOW_FREQ_A = 15.0
N_SHELLS = 10
WIDTH_FACTOR = 4.8
NOISE_QUANTILE = 0.9
EPS_HOMOGENEOUS = 0.01
MEDIAN_RANGE = (-300.0, 0.0)

EXPLANATION = (
    "A single B-factor hides how sharp different parts of a map are. Here the map (resampled so that its "
    "Nyquist frequency is the resolution) is split into thin Fourier shells between 15 Å and R; in each "
    "shell the local amplitude at every voxel comes from the monogenic signal (the shell-filtered map and "
    "its three spiral/Riesz components). Its logarithm, down-weighted where it approaches the noise "
    "level of the background, falls along a line against the squared frequency; four times that slope "
    "is the local B-factor (Å², negative when the amplitude decays). Well-ordered regions have B close to "
    "0; flexible or poorly resolved regions have strongly negative B.")

CRITERIA = (f"Warn when the local B-factors are too homogeneous (97.5 % and 2.5 % percentiles closer than "
            f"{EPS_HOMOGENEOUS:g} Å², a sign the computation failed) or when their median is outside "
            f"[{MEDIAN_RANGE[0]:g}, {MEDIAN_RANGE[1]:g}] Å².")

DIFFERENCES = [
    "Spiral filters: gpuvalid sets the Riesz component along an axis to 0 on that axis's Nyquist plane "
    "(even boxes), where the sign of the frequency is undefined, so all filtered maps are real; the "
    "reference keeps H_j = −i·f_j/|f| there, which adds a spurious imaginary term to its spiral "
    "components and raises its amplitude in the shells nearest 1/R (the Nyquist frequency of the "
    "resized map).",
    "Amplitudes are computed in float32: per voxel they differ from a float64 computation by about 2e-7 "
    "(median) and 5e-6 (99.9 %) relative, at most 1e-6 of the largest amplitude; quantiles use linear "
    "interpolation.",
]


def shell_frequencies(resolution: float, low_A: float = LOW_FREQ_A, n: int = N_SHELLS) -> np.ndarray:
    """``n`` frequencies (Å⁻¹) linearly spaced from 1/low_A to 1/R."""
    return np.linspace(1.0 / low_A, 1.0 / resolution, n)


def local_bfactor(be: Backend, V, voxel_size: float, hard_mask, resolution: float, above_noise: bool = False,
                  compat: bool = False):
    """Local B-factor map (device float32, Å²) of ``V`` and the per-shell ``(f0, noise)`` list.

    ``V`` should be sampled at ``Ts = R/2``; ``hard_mask`` its hard mask (bool, device).  With ``compat``
    also returns the map computed from the reference service's amplitude (Nyquist Riesz term kept) as a
    third value.

    Raises
    ------
    NotMeasurable
        When R is not finer than 15 Å (no frequency range to fit) or the hard mask leaves no background
        voxels in the inscribed sphere for the noise level.
    """
    if 1.0 / resolution <= 1.0 / LOW_FREQ_A + 1e-12:
        raise NotMeasurable(f"the resolution {resolution:g} Å is not finer than {LOW_FREQ_A:g} Å, so there is "
                            "no frequency range for the local B-factor fit")
    freqs = shell_frequencies(resolution)
    width = WIDTH_FACTOR / (min(V.shape) * voxel_size)
    eng = SpiralEngine(be, V, voxel_size)
    bg = background_sphere_index(be, hard_mask)
    if bg.size == 0:
        raise NotMeasurable("the hard mask fills the whole box: no background to estimate the noise level")
    xs = freqs ** 2
    fit = LogLinearFit(be, eng.shape, x_ref=float(xs.mean()), above_noise=above_noise)
    fit_ref = LogLinearFit(be, eng.shape, x_ref=float(xs.mean()), above_noise=above_noise) if compat else None
    shells = []
    for f0, A in eng.amplitudes(freqs, width):
        noise = quantile_at(be, A, bg, NOISE_QUANTILE)
        fit.add(A, f0 * f0, noise)
        shells.append((f0, noise))
        if compat:
            Ar = eng.reference_amplitude(A, f0, width)
            fit_ref.add(Ar, f0 * f0, quantile_at(be, Ar, bg, NOISE_QUANTILE))
            del Ar
        del A
    B = (fit.slope() * 4.0).astype(be.xp.float32)
    if compat:
        return B, shells, (fit_ref.slope() * 4.0).astype(be.xp.float32)
    return B, shells


def publish_local_map(ctx, res: SectionResult, sid: str, values, lo: float, hi: float, label: str,
                      stem: str, title: str, unit_label: str, percentiles: list[float]) -> None:
    """Keep the local map (resized grid, host) for the report.

    Also writes the MRC on request, the histogram and the colour views
    (:func:`gpuvalid.figures.local.write_local_map_outputs`).
    """
    rz = ctx.resized
    ctx.local_maps[sid] = {"values": values, "lo": lo, "hi": hi, "label": label}
    if ctx.options.figure_dir is None and ctx.options.map_dir is None:
        return
    from ..figures.local import write_local_map_outputs

    inside = values[be_mask_host(ctx)]
    write_local_map_outputs(
        res, sid, ctx.options, ctx.figure_errors, stem=stem, inside=inside[np.isfinite(inside)],
        unit_label=unit_label, title=title, percentiles=percentiles, views=(rz, values, lo, hi, label),
        mrc=(stem, values, rz.voxel_size, f"The {label} map (on the resized grid, Ts' = {rz.voxel_size:.3f} Å) "
                                          f"was written to `maps/{stem}.mrc`."))


def be_mask_host(ctx) -> np.ndarray:
    """Hard mask of the resized map on the host (cached)."""
    m = ctx.cache.get("resized_hard_mask_host")
    if m is None:
        m = ctx.be.to_host(ctx.resized.hard_mask).astype(bool)
        ctx.cache["resized_hard_mask_host"] = m
    return m


def applicability(ctx) -> SectionResult | None:
    """Return the "does not apply" result when no resolution is reported, else None."""
    if ctx.resolution is None:
        return not_applicable(SID, TITLE, "no resolution reported", EXPLANATION)
    return None


def run(ctx) -> SectionResult:
    """Compute section 0.f (local B-factor) of the report on the map resized to Ts' = R/2.

    ``values`` holds the 2.5/25/50/75/97.5 % percentiles of the local B-factor (Å²) inside the hard mask,
    the voxel count, the resized grid, and the shell frequencies (Å⁻¹), noise levels and width;
    ``vrs_compat`` the percentiles with the reference's Nyquist term.  Not applicable without a resolution.

    Raises
    ------
    NotMeasurable
        When the resized hard mask is empty or holds no finite local B-factor.
    """
    skip = applicability(ctx)
    if skip is not None:
        return skip
    ctx.require_mask()
    be = ctx.be
    rz = ctx.resized
    mask = rz.hard_mask
    if not bool(be.to_host(mask.any())):
        raise NotMeasurable("the hard mask of the resized map is empty")
    B, shells, Bref = local_bfactor(be, rz.V, rz.voxel_size, mask, ctx.resolution, compat=True)
    Bh = be.to_host(B).astype(np.float32)
    m = be_mask_host(ctx)
    ref_inside = be.to_host(Bref)[m]
    del B, Bref
    inside = Bh[m]
    inside = inside[np.isfinite(inside)]
    if inside.size == 0:
        raise NotMeasurable("no finite local B-factor inside the hard mask")

    res = SectionResult(SID, TITLE, explanation=EXPLANATION, criteria=CRITERIA, differences=list(DIFFERENCES))
    p, table = percentile_block(inside, "local B-factor (Å²)")
    res.values = {"percentiles_A2": p, "mask_voxels": int(inside.size),
                  "resized_voxel_size_A": rz.voxel_size, "resized_box_zyx": list(rz.shape),
                  "shell_frequencies_invA": [f for f, _ in shells],
                  "shell_noise": [n for _, n in shells],
                  "shell_width_invA": WIDTH_FACTOR / (min(rz.shape) * rz.voxel_size)}
    res.blocks.append(
        f"Computed on the map resampled to Ts' = {rz.voxel_size:.3f} Å (box {' × '.join(map(str, rz.shape))}), "
        f"{len(shells)} shells from 1/{LOW_FREQ_A:g} to 1/{ctx.resolution:g} Å⁻¹, over "
        f"{inside.size} voxels of its hard mask.\n\n" + table)
    p_ref = [float(v) for v in np.percentile(ref_inside[np.isfinite(ref_inside)], [2.5, 25, 50, 75, 97.5])]
    res.vrs_compat = {"percentiles_A2": p_ref}
    res.differences.append(
        "With the reference's Nyquist term the percentiles would be " + ", ".join(f"{v:.2f}" for v in p_ref) +
        " Å² (under `vrs_compat`).")
    res.blocks.append("Shells used (noise = 0.9 quantile of the local amplitude in the background sphere):\n\n" +
                      md_table(["f0 (Å⁻¹)", "d (Å)", "noise"],
                               [[f"{f:.4f}", f"{1 / f:.2f}", f"{n:.4g}"] for f, n in shells]))

    if abs(p[4] - p[0]) < EPS_HOMOGENEOUS:
        res.warnings.append(f"the local B-factors are too homogeneous (97.5 % − 2.5 % percentile "
                            f"< {EPS_HOMOGENEOUS:g} Å²)")
    med = p[2]
    if not (MEDIAN_RANGE[0] <= med <= MEDIAN_RANGE[1]):
        res.warnings.append(f"the median local B-factor {med:.1f} Å² is outside "
                            f"[{MEDIAN_RANGE[0]:g}, {MEDIAN_RANGE[1]:g}] Å²")
    publish_local_map(ctx, res, SID, Bh, p[0], p[4], "local B-factor (Å²)", "locbfactor",
                      "Local B-factor", "local B-factor (Å²)", p)
    res.key = f"median {med:.1f} Å²"
    res.summary = (f"Local B-factors inside the mask have median {med:.1f} Å² (2.5–97.5 %: {p[0]:.1f} to "
                   f"{p[4]:.1f} Å²)" + ("." if not res.warnings else f"; {res.warnings[0]}."))
    return res
