"""0.e Local resolution: gpuvalid's own network, cross-checked by a monogenic (MonoRes-like) estimate.

Applies for 1.5 Å ≤ R ≤ 13 Å (2 Å without the fine model's weights).  The network (:mod:`gpuvalid.models`,
trained here on simulated maps) sees the map resampled to 1 Å/voxel and divided by its local RMS; each output
voxel regresses the local resolution from the 13³ Å cube around it.  For R < 2 Å a second network of the same
shape runs on a 0.5 Å/voxel grid (a 6.5³ Å cube, trained on 1.5–6 Å).  The monogenic estimate (:mod:`gpuvalid.monores`) needs no
training: the highest shell frequency whose local amplitude stays above the 0.95 quantile of the
background.  Without PyTorch (or without the shipped weights) the section reports the monogenic estimate.
``P`` = 100·#(local < R)/# over the hard mask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import models
from ..errors import NotMeasurable
from .base import SectionResult, md_table, not_applicable, percentile_block

if TYPE_CHECKING:
    from ..backend import Backend

SID, TITLE = "0.e", "Local resolution"
R_RANGE = (2.0, 13.0)
FINE_R_RANGE = (1.5, 6.0)     # the fine model (0.5 Å grid), used below 2 Å when shipped
EPS_HOMOGENEOUS = 0.01
MIN_PERCENTILE = 0.1

EXPLANATION = (
    "Resolution varies across a map: rigid cores are usually better resolved than flexible surfaces. A "
    "local-resolution map gives, at every voxel of the molecule, the finest detail the density supports "
    "there. gpuvalid estimates it twice: with a small 3-D convolutional network trained here on maps "
    "simulated from atomic models at known, spatially varying resolutions (it looks at a 13 Å cube around "
    "each voxel of the map resampled to about 1 Å/voxel; below 2 Å a second network looks at a 6.5 Å cube at "
    "0.5 Å/voxel), and with a monogenic estimate that needs no training "
    "(the highest Fourier-shell frequency whose local amplitude stays above the noise level of the "
    "background). The two should broadly agree; the reported resolution R should fall inside the "
    "distribution of local values.")

CRITERIA = (f"Warn when the local resolutions are too homogeneous (97.5 % and 2.5 % percentiles closer than "
            f"{EPS_HOMOGENEOUS:g} Å) or when fewer than {MIN_PERCENTILE:g} % of the voxels are better resolved "
            f"than the reported resolution R (P < {MIN_PERCENTILE:g}).")

DIFFERENCES = [
    "The reference runs DeepRes (Keras), whose weights are downloaded from its model server and are not "
    "redistributable; gpuvalid uses its own network trained on simulated maps (docs/models.md gives the "
    "training data and held-out errors), so the numbers are not the reference's.",
    "gpuvalid also reports a non-learned monogenic estimate and the agreement of both; the monogenic "
    "estimate says \"could not be measured\" where its noise reference is degenerate (a masked or zeroed "
    "background), instead of returning the grid limit.",
    "On five real maps with fitted models the network's median is within 0.35 Å of a local map-model FSC "
    "reference at 3.2–3.4 Å and within 1 Å at 6.6–7 Å (−0.89 Å on EMD-5168, −0.07 Å on GroEL), but its "
    "voxel-wise agreement with that reference is weak (docs/models.md). The fine network used below 2 Å is "
    "checked on simulations at 1.5–2.5 Å (median bias +0.24 Å) and on the same real maps at 3.2–3.4 Å; no "
    "real map finer than 2 Å with a fitted model was available to check it.",
]


def _device(be: Backend) -> str:
    return be.device if be.is_gpu else "cpu"


def _fine_model_shipped() -> bool:
    return (models.weights_path("locres").with_name("locres_fine.pt")).is_file()


def r_range() -> tuple[float, float]:
    """Resolutions R (Å) the section applies to: 2–13 Å, from 1.5 Å when the fine model is shipped."""
    return (FINE_R_RANGE[0] if _fine_model_shipped() else R_RANGE[0], R_RANGE[1])


def _network_estimate(ctx) -> tuple:
    """Run the network local-resolution estimate on the map's device.

    Returns the map (NaN outside the hard mask) or None, the reason when None, and the network's output
    range (Å) and model kind.
    """
    if not models.torch_available():
        return None, "PyTorch is not installed", None
    if not models.weights_path("locres").is_file():
        return None, f"the model weights are missing ({models.weights_path('locres').name})", None
    from ..models.infer import load, locres_kind, predict_locres
    kind = locres_kind(ctx.resolution)
    out = predict_locres(ctx.V, ctx.voxel_size, ctx.hard_mask, _device(ctx.be), kind=kind, be=ctx.be)
    net = load("locres", None if kind == "locres" else str(models.weights_path("locres").with_name(f"{kind}.pt")),
               _device(ctx.be))
    return out, None, (net.LO, net.HI, kind)


def _bound_reason(values: np.ndarray, voxel_size: float, out_range: tuple) -> str | None:
    """Return why the network's values are not a measurement, or None.

    They are not when some are NaN, or when ≥ MAX_AT_BOUND of them sit at the clamp bounds max(lo, 2·Ts)
    or hi Å of its output range.
    """
    from ..monores import MAX_AT_BOUND

    if values.size == 0 or not np.isfinite(values).all():
        return "the network returned no finite value at some voxels of the hard mask"
    lo, hi = max(out_range[0], 2.0 * voxel_size), out_range[1]
    for bound, frac in ((lo, np.mean(values <= lo + 1e-3)), (hi, np.mean(values >= hi - 1e-3))):
        if frac >= MAX_AT_BOUND:
            return (f"the network's estimate sits at its {bound:.2f} Å bound at {100 * frac:.0f} % of the voxels "
                    "(a bound, not a measurement)")
    return None


def _percentile_of(values: np.ndarray, R: float) -> float | None:
    """Percentage of ``values`` finer than ``R`` (None for no values: not a percentage of anything)."""
    if values.size == 0:
        return None
    return float(100.0 * np.count_nonzero(values < R) / values.size)


def _nyquist_check(R: float, voxel_size: float) -> None:
    """Raise :class:`NotMeasurable` when R is finer than the sampling's Nyquist limit 2·Ts.

    Checked before anything is allocated: such a map would be resampled to an absurd 1 Å working grid.
    """
    if R < 2.0 * voxel_size:
        raise NotMeasurable(f"the reported resolution {R:g} Å is finer than the Nyquist limit 2·Ts = "
                            f"{2.0 * voxel_size:.3g} Å of the map's sampling (Ts = {voxel_size:g} Å/voxel), which "
                            "is impossible: R must be at least 2·Ts (check the voxel size and the resolution)")


def _agreement(ni: np.ndarray, mi: np.ndarray) -> tuple[dict, str]:
    """Return the voxel-wise agreement of the network and monogenic estimates and its sentence.

    Only finite numbers count; the correlation is left out when it is undefined.
    """
    ok = np.isfinite(ni) & np.isfinite(mi)
    a, b = ni[ok], mi[ok]
    if a.size == 0:
        return {}, "No voxel holds both estimates: their agreement is undefined."
    agree = {"mean_abs_difference_A": float(np.mean(np.abs(a - b))), "median_difference_A": float(np.median(a - b))}
    if a.size < 3:
        corr_txt = "undefined (fewer than 3 voxels)"
    elif np.ptp(a) == 0 or np.ptp(b) == 0:
        corr_txt = "undefined (one estimate is constant)"
    else:
        agree["correlation"] = float(np.corrcoef(a, b)[0, 1])
        corr_txt = f"{agree['correlation']:.2f}"
    return agree, (f"Mean |network − monogenic| = {agree['mean_abs_difference_A']:.2f} Å, median difference "
                   f"{agree['median_difference_A']:+.2f} Å, voxel-wise correlation {corr_txt}.")


def applicability(ctx) -> SectionResult | None:
    """Return the "does not apply" result without a resolution or outside :func:`r_range`, else None.

    Nothing is allocated (the runner calls it before any memory estimate).

    Raises
    ------
    NotMeasurable
        When R is finer than the Nyquist limit 2·Ts (whose 1 Å working grid would be absurd).
    """
    if ctx.resolution is None:
        return not_applicable(SID, TITLE, "no resolution reported", EXPLANATION)
    R = ctx.resolution
    lo_R, hi_R = r_range()
    if not (lo_R <= R <= hi_R):
        return not_applicable(SID, TITLE, f"the resolution {R:g} Å is outside {lo_R:g}–{hi_R:g} Å", EXPLANATION)
    _nyquist_check(R, ctx.voxel_size)
    return None


def run(ctx) -> SectionResult:
    """Compute section 0.e (local resolution) of the report: the network estimate, cross-checked by the monogenic one.

    ``values`` holds the 2.5/25/50/75/97.5 % percentiles (Å) of the primary estimate inside the hard mask, the
    percentile P of R, the method used, the monogenic percentiles and the agreement of both.  Not applicable
    without a resolution or outside the range of :func:`r_range`.

    Raises
    ------
    NotMeasurable
        When R is finer than the Nyquist limit 2·Ts, the hard mask is empty, or neither the network nor the
        monogenic estimate gives a measurement.
    """
    skip = applicability(ctx)
    if skip is not None:
        return skip
    R = ctx.resolution
    ctx.require_mask()
    be = ctx.be
    if int(be.scalar(be.xp.count_nonzero(ctx.hard_mask))) == 0:
        raise NotMeasurable("the hard mask is empty")

    mono, mono_reason = None, None       # host values at the hard-mask voxels (row-major order)
    try:
        from ..monores import monogenic_local_resolution
        mono_map = monogenic_local_resolution(be, ctx.V, ctx.voxel_size, ctx.hard_mask, threshold=ctx.threshold)
        mono = mono_map[be.to_host(ctx.hard_mask).astype(bool)]
        if not np.isfinite(mono).any():
            mono, mono_reason = None, "it has no finite value in the hard mask"
    except NotMeasurable as exc:
        mono_map, mono_reason = None, str(exc)
    net_map, net_reason, out_range = _network_estimate(ctx)   # net_map on the map's device
    net = None
    if net_map is not None:
        net = be.to_host(net_map[ctx.hard_mask])                # the host sees the mask voxels only
        net_reason = _bound_reason(net, ctx.voxel_size, out_range)
        if net_reason:
            net, net_map = None, None
    if net is None and mono is None:
        raise NotMeasurable(f"{net_reason}, and the monogenic estimate could not be measured: {mono_reason}")

    res = SectionResult(SID, TITLE, explanation=EXPLANATION, criteria=CRITERIA, differences=list(DIFFERENCES))
    primary = net if net is not None else mono
    method = "network" if net is not None else "monogenic"
    inside = primary[np.isfinite(primary)]
    p, table = percentile_block(inside, "local resolution (Å)")
    P = _percentile_of(inside, R)
    res.values = {"percentiles_A": p, "resolution_percentile": P, "method": method, "mask_voxels": int(inside.size)}
    if net is not None:
        res.values["network"] = {"model": out_range[2], "output_range_A": [out_range[0], out_range[1]]}
    if net is None:
        res.blocks.append(f"**{net_reason[0].upper() + net_reason[1:]}: the local resolution below is the "
                          "monogenic estimate** (no network estimate).")
    res.blocks.append(f"Local resolution ({method}) over {inside.size} voxels of the hard mask; the reported "
                      f"resolution R = {R:g} Å falls at the {P:.1f} % percentile.\n\n" + table)

    if mono is not None:
        mf = mono[np.isfinite(mono)]
        pm = [float(v) for v in np.percentile(mf, [2.5, 25, 50, 75, 97.5])]
        res.values["monogenic_percentiles_A"] = pm
        res.values["monogenic_resolution_percentile"] = _percentile_of(mf, R)
        rows = [["monogenic"] + [f"{v:.2f}" for v in pm]]
        if net is not None:
            agree, sentence = _agreement(net, mono)
            if agree:
                res.values["agreement"] = agree
            rows.insert(0, ["network"] + [f"{v:.2f}" for v in p])
            res.blocks.append(
                "Cross-check with the monogenic estimate (Å):\n\n" +
                md_table(["estimate", "2.5 %", "25 %", "50 %", "75 %", "97.5 %"], rows) + "\n\n" + sentence)
    elif mono_reason:
        res.values["monogenic_reason"] = mono_reason
        res.blocks.append(f"The monogenic cross-check could not be measured: {mono_reason}.")

    if abs(p[4] - p[0]) < EPS_HOMOGENEOUS:
        res.warnings.append(f"the local resolutions are too homogeneous (97.5 % − 2.5 % percentile < "
                            f"{EPS_HOMOGENEOUS:g} Å)")
    if P < MIN_PERCENTILE:
        res.warnings.append(f"the reported resolution {R:g} Å is better than almost all local resolutions "
                            f"(percentile {P:.2f} % < {MIN_PERCENTILE:g} %)")
    _publish(ctx, res, net_map if net is not None else mono_map, p)
    res.key = f"median {p[2]:.2f} Å"
    res.summary = (f"The local resolution ({method}) has median {p[2]:.2f} Å (2.5–97.5 %: {p[0]:.2f}–{p[4]:.2f} Å); "
                   f"R = {R:g} Å is at its {P:.1f} % percentile" +
                   ("." if not res.warnings else f"; {res.warnings[0]}."))
    return res


def _publish(ctx, res: SectionResult, values, p: list[float]) -> None:
    """Keep the local map for the report; MRC on request, histogram and colour views (never raises).

    ``values`` is the map on the input grid (NaN outside the hard mask), on the map's device: it is copied
    to the host only when figures or maps are written (``local_maps`` then holds the host copy; else it holds
    no values: nothing reads them, and the device array would stay through every later section, Level 1's
    included).
    """
    wanted = ctx.options.map_dir is not None or ctx.options.figure_dir is not None
    values = ctx.be.to_host(values) if wanted else None
    ctx.local_maps[SID] = {"values": values, "lo": p[0], "hi": p[4], "label": "local resolution (Å)"}
    if not wanted:
        return
    from ..figures.local import write_local_map_outputs

    label = "local resolution (Å)"
    write_local_map_outputs(
        res, SID, ctx.options, ctx.figure_errors, stem="locres", inside=values[np.isfinite(values)],
        unit_label=label, title="Local resolution", percentiles=p,
        views=(ctx, np.nan_to_num(values, nan=p[2]).astype(np.float32), p[0], p[4], label),
        mrc=("local_resolution", np.nan_to_num(values, nan=0.0), ctx.voxel_size,
             "The local-resolution map (0 outside the hard mask) was written to `maps/local_resolution.mrc`."))
