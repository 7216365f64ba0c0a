"""0.g LocOccupancy: the fraction of frequency shells in which a voxel's local amplitude is strong.

On the map resampled to ``Ts' = R/2`` the spiral engine gives the local amplitude ``A`` in Gaussian shells of
width ``w = 4.6/(N·Ts')`` at ``max(1, int((fmax − fmin)/w))`` frequencies from 1/20 Å⁻¹ to 1/R.  In each shell
``q`` is the 0.25 quantile of ``A`` inside the hard mask; a voxel's occupancy is the fraction of shells
with ``A ≥ q`` (a number in [0, 1]).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import NotMeasurable
from ..spiral import OccupancyCounter, SpiralEngine, quantile_at
from .base import SectionResult, not_applicable, percentile_block
from .locbfactor import be_mask_host, publish_local_map

if TYPE_CHECKING:
    from ..backend import Backend

SID, TITLE = "0.g", "Local occupancy (LocOccupancy)"
LOW_FREQ_A = 20.0
WIDTH_FACTOR = 4.6
MASK_QUANTILE = 0.25
EPS_HOMOGENEOUS = 0.1
MIN_MEDIAN = 0.5

EXPLANATION = (
    "Parts of a complex may be present in only some of the particles (partial occupancy) or be very "
    "flexible; their density is then weak at every frequency. For thin Fourier shells between 20 Å and "
    "the resolution, the local amplitude of the map (monogenic signal of the shell-filtered map) is "
    "compared with the lower quartile of the amplitudes inside the molecular mask; the occupancy of a "
    "voxel is the fraction of shells in which it is above that quartile. Values near 1 mean strong, "
    "consistently present density; low values flag weak or partially occupied regions.")

CRITERIA = (f"Warn when the occupancies are too homogeneous (97.5 % and 2.5 % percentiles closer than "
            f"{EPS_HOMOGENEOUS:g}) or when their median is below {MIN_MEDIAN:g}.")


def shell_frequencies(resolution: float, width: float, low_A: float = LOW_FREQ_A) -> np.ndarray:
    """``max(1, int((fmax − fmin)/w))`` frequencies from 1/low_A to 1/R (Å⁻¹)."""
    fmin, fmax = 1.0 / low_A, 1.0 / resolution
    n = max(1, int((fmax - fmin) / width))
    return np.linspace(fmin, fmax, n)


def local_occupancy(be: Backend, V, voxel_size: float, hard_mask, resolution: float, compat: bool = False):
    """Compute the occupancy map (device float32 in [0, 1]) of ``V`` and the per-shell ``(f0, q)`` list.

    With ``compat`` also returns the map from the reference service's amplitude as a third value.

    Raises
    ------
    NotMeasurable
        When R is not finer than 20 Å (no frequency range), the hard mask is empty, or the local amplitude
        inside the mask is not finite in some shell.
    """
    if 1.0 / resolution <= 1.0 / LOW_FREQ_A + 1e-12:
        raise NotMeasurable(f"the resolution {resolution:g} Å is not finer than {LOW_FREQ_A:g} Å, so there is "
                            "no frequency range for the local occupancy")
    width = WIDTH_FACTOR / (min(V.shape) * voxel_size)
    freqs = shell_frequencies(resolution, width)
    eng = SpiralEngine(be, V, voxel_size)
    idx = be.xp.flatnonzero(hard_mask.ravel())
    if idx.size == 0:
        raise NotMeasurable("the hard mask of the resized map is empty")
    occ = OccupancyCounter(be, eng.shape)
    occ_ref = OccupancyCounter(be, eng.shape) if compat else None
    shells = []
    for f0, A in eng.amplitudes(freqs, width):
        q = quantile_at(be, A, idx, MASK_QUANTILE)
        if not np.isfinite(q):
            raise NotMeasurable(f"the local amplitude inside the mask is not finite in the shell at "
                                f"{1 / f0:.2f} Å")
        occ.add(A, q)
        shells.append((f0, q))
        if compat:
            Ar = eng.reference_amplitude(A, f0, width)
            occ_ref.add(Ar, quantile_at(be, Ar, idx, MASK_QUANTILE))
            del Ar
        del A
    O = occ.fraction().astype(be.xp.float32)
    if compat:
        return O, shells, occ_ref.fraction().astype(be.xp.float32)
    return O, shells


def applicability(ctx) -> SectionResult | None:
    """Return the "does not apply" result when no resolution is reported, else None."""
    if ctx.resolution is None:
        return not_applicable(SID, TITLE, "no resolution reported", EXPLANATION)
    return None


def run(ctx) -> SectionResult:
    """Compute section 0.g (local occupancy) of the report on the map resized to Ts' = R/2.

    ``values`` holds the 2.5/25/50/75/97.5 % percentiles of the occupancy (in [0, 1]) inside the hard mask,
    the voxel count, the resized grid, and the shell frequencies (Å⁻¹), 0.25 quantiles and width;
    ``vrs_compat`` the percentiles with the reference's Nyquist term.  Not applicable without a resolution;
    :func:`local_occupancy` raises :class:`NotMeasurable` when it cannot be computed.
    """
    skip = applicability(ctx)
    if skip is not None:
        return skip
    ctx.require_mask()
    be = ctx.be
    rz = ctx.resized
    O, shells, Oref = local_occupancy(be, rz.V, rz.voxel_size, rz.hard_mask, ctx.resolution, compat=True)
    Oh = be.to_host(O).astype(np.float32)
    inside = Oh[be_mask_host(ctx)]
    ref_inside = be.to_host(Oref)[be_mask_host(ctx)]
    del O, Oref

    res = SectionResult(SID, TITLE, explanation=EXPLANATION, criteria=CRITERIA,
                        differences=["Spiral filters and precision as in 0.f: the Riesz component is 0 on each "
                                     "axis's Nyquist plane and amplitudes are float32."])
    p, table = percentile_block(inside, "occupancy")
    p_ref = [float(v) for v in np.percentile(ref_inside, [2.5, 25, 50, 75, 97.5])]
    res.vrs_compat = {"percentiles": p_ref}
    res.differences.append("With the reference's Nyquist term the percentiles would be " +
                           ", ".join(f"{v:.2f}" for v in p_ref) + " (under `vrs_compat`).")
    res.values = {"percentiles": p, "mask_voxels": int(inside.size), "n_shells": len(shells),
                  "resized_voxel_size_A": rz.voxel_size, "resized_box_zyx": list(rz.shape),
                  "shell_frequencies_invA": [f for f, _ in shells], "shell_q25": [q for _, q in shells],
                  "shell_width_invA": WIDTH_FACTOR / (min(rz.shape) * rz.voxel_size)}
    res.blocks.append(
        f"Computed on the map resampled to Ts' = {rz.voxel_size:.3f} Å (box {' × '.join(map(str, rz.shape))}), "
        f"{len(shells)} shell(s) from 1/{LOW_FREQ_A:g} to 1/{ctx.resolution:g} Å⁻¹, over {inside.size} "
        f"voxels of its hard mask.\n\n" + table)
    if abs(p[4] - p[0]) < EPS_HOMOGENEOUS:
        res.warnings.append(f"the local occupancies are too homogeneous (97.5 % − 2.5 % percentile "
                            f"< {EPS_HOMOGENEOUS:g})")
    med = p[2]
    if med < MIN_MEDIAN:
        res.warnings.append(f"the median local occupancy {med:.2f} is below {MIN_MEDIAN:g}")
    publish_local_map(ctx, res, SID, Oh, p[0], p[4], "occupancy", "occupancy", "Local occupancy",
                      "occupancy", p)
    res.key = f"median {med:.2f}"
    res.summary = (f"Local occupancy inside the mask has median {med:.2f} (2.5–97.5 %: {p[0]:.2f} to {p[4]:.2f})"
                   + ("." if not res.warnings else f"; {res.warnings[0]}."))
    return res
