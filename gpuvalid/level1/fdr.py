"""1.b FSC permutation test (FDR-FSC, Beckers & Sachse 2020).

Per shell, H₀ "the shell correlation is that of noise" is tested by permutation: a random sub-sample of 70 %
of the shell's half-spectrum coefficients (at most 200,000) is drawn, and the correlation of half 1 with a
randomly permuted half 2 over that sample is recomputed ``P`` times; ``p`` = the fraction of permuted
correlations above the shell's FSC.  Permutations run in batches of 200 (batched on the GPU) and stop
when ``p`` changes by less than 0.001 between batches, at 1,000, or as soon as 10 permuted correlations
exceed the FSC (then ``p ≥ 0.01`` even after 1,000 draws, and a BY-adjusted ``q ≥ p·Σ1/i > 0.01``: the
shell cannot be significant), or after the first batch when none exceeded an FSC that lies 6 standard
deviations (``1/√(2m)``) above the permutation distribution (``p < 10⁻⁹``: more draws cannot change it).
The p-values of all shells are adjusted by Benjamini–Yekutieli (FDR 1 %); the resolution is the last
significant shell before the first non-significant one (not interpolated: a shell frequency).  Seeded: the
same input gives the same result on the same device.  Computed on the soft-masked halves.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .. import memory  # GPU: permuted coefficients per launch (rows × samples): memory.l1_perm_chunk
from ..analyses.base import SectionResult, md_table
from ..errors import NotMeasurable
from .common import CRITERION, add_figure, check_estimate, fmt_A, grade_without_R

if TYPE_CHECKING:
    from ..backend import Backend

SID, TITLE = "1.b", "FSC permutation (FDR-FSC)"
FRACTION = 0.7
MAX_SAMPLES = 200_000
BATCH = 200
MAX_PERMUTATIONS = 1000
FDR = 0.01
DECIDED_Z = 6.0     # FSC / σ of permuted correlations (1/√(2m)) beyond which no draw can exceed it
DECIDED_ABOVE = 10   # exceedances after which a shell is decided non-significant (p ≥ 10/1000 > FDR/c(n))

EXPLANATION = (
    "Instead of a fixed FSC threshold, each Fourier shell is tested for a correlation that noise alone "
    "would not produce: the coefficients of one half map are shuffled many times and the shuffled "
    "correlations give the noise distribution of that shell. The p-values of all shells are corrected for "
    "multiple testing (Benjamini–Yekutieli false discovery rate, 1 %), and the resolution is the last shell "
    "where the correlation is still significant. It says where any signal is detectable, so it is usually "
    "finer than the FSC 0.143 resolution.")


def by_adjust(p: np.ndarray) -> np.ndarray:
    """Return the Benjamini–Yekutieli adjusted p-values (q-values) of ``p`` (any dependence; ``c(n) = Σ 1/i``)."""
    p = np.asarray(p, dtype=float)
    n = p.size
    if n == 0:
        return p
    c = float(np.sum(1.0 / np.arange(1, n + 1)))
    order = np.argsort(p, kind="stable")
    ranked = p[order] * n * c / np.arange(1, n + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out


def permutation_pvalues(be: Backend, geo, G1, G2, fsc: np.ndarray, seed: int = 3, max_perm: int = MAX_PERMUTATIONS,
                        batch: int = BATCH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Permutation p-value of every shell 1 … N/2 (shell 0: p = 0) of the half spectra ``G1``, ``G2``.

    Returns ``(p, permutations, samples)`` per shell: :func:`shell_pvalues` on the spectra sorted by shell.
    """
    order, starts = geo.shell_order()
    return shell_pvalues(be, geo, by_shell(order, G1), by_shell(order, G2), starts, fsc, seed, max_perm, batch)


def by_shell(order, G):
    """Return the half spectrum ``G``'s coefficients sorted by shell (``order`` of :meth:`HalfSpectrum.shell_order`)."""
    return G.ravel()[order]


def shell_pvalues(be: Backend, geo, a, b, starts: np.ndarray, fsc: np.ndarray, seed: int = 3,
                  max_perm: int = MAX_PERMUTATIONS, batch: int = BATCH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Permutation p-value of every shell 1 … N/2 (shell 0: p = 0) of two spectra sorted by shell.

    ``a``, ``b``: the coefficients in shell order (:func:`by_shell`); ``starts``: where each shell starts.
    Returns ``(p, permutations, samples)`` per shell.  The sample of each shell comes from a NumPy generator
    seeded with ``(seed, shell)``; permutations use the backend's generator (NumPy: one in-place ``shuffle`` per
    draw; CuPy: a ``[batch, m]`` matrix of random keys sorted per row).
    """
    xp = be.xp
    per_launch = memory.l1_perm_chunk(math.prod(geo.shape))
    nsh = geo.nshell
    p = np.zeros(nsh)
    nperm = np.zeros(nsh, dtype=int)
    samples = np.zeros(nsh, dtype=int)
    for r in range(1, nsh):
        lo, hi = int(starts[r]), int(starts[r + 1])
        n = hi - lo
        m = int(min(FRACTION * n, MAX_SAMPLES))
        samples[r] = m
        if m < 10:   # too few coefficients to permute: the reference's fallback
            p[r] = 0.0 if (np.isfinite(fsc[r]) and fsc[r] >= 0.75) else 1.0
            continue
        host_rng = np.random.default_rng([seed, r])
        sel = xp.asarray(np.sort(host_rng.choice(n, m, replace=False)).astype(np.int64)) + lo
        s1 = a[sel]
        s2 = b[sel]
        norm = math.sqrt(float(xp.vdot(s1, s1).real) * float(xp.vdot(s2, s2).real))
        if norm <= 0:
            p[r] = 1.0
            continue
        thr = float(fsc[r]) * norm
        if be.is_gpu:
            rs = xp.random.RandomState(seed * 100003 + r)
        else:
            rs = np.random.default_rng([seed, r, 1])
        above = 0
        done = 0
        prev = None
        while done < max_perm:
            nb = min(batch, max_perm - done)
            if be.is_gpu:
                cnt = 0          # on the device: one read per batch
                chunk = max(1, min(nb, per_launch // max(m, 1)))
                for c0 in range(0, nb, chunk):
                    c = min(chunk, nb - c0)
                    perm = xp.argsort(rs.random_sample((c, m), dtype=xp.float32), axis=1)
                    corr = (xp.conj(s1)[None, :] * s2[perm]).real.sum(axis=1, dtype=xp.float64)
                    del perm
                    cnt = cnt + xp.count_nonzero(corr > thr)
                above += int(cnt)
            else:
                s1c = np.conj(s1)
                work = s2.copy()
                for _ in range(nb):   # successive in-place shuffles: each a uniform random permutation
                    rs.shuffle(work)
                    if float(np.dot(s1c, work).real) > thr:
                        above += 1
            done += nb
            pv = above / done
            if above >= DECIDED_ABOVE:   # p ≥ 0.01 whatever the remaining draws: never significant
                break
            if above == 0 and float(fsc[r]) * math.sqrt(2 * m) >= DECIDED_Z:
                break                    # FSC ≥ 6 σ of the permutation distribution: p = 0 is decided
            if prev is not None and abs(pv - prev) < 1e-3:
                break
            prev = pv
        p[r] = above / done
        nperm[r] = done
    return p, nperm, samples


def run(ctx1) -> SectionResult:
    """Compute section 1.b, the FSC permutation test (FDR-FSC) of the soft-masked halves.

    Results: the FDR-FSC resolution in Å (``fdr_fsc_A``, also recorded in ``ctx1.estimates``), the last
    significant shell, and per shell the FSC, p, BY-adjusted q, permutation and sample counts; ``vrs_compat``
    holds the value with the reference's sphere mask (GPU only when a soft mask is used).

    Raises
    ------
    NotMeasurable
        When no shell beyond the origin is significant at 1 % FDR (the halves share no detectable signal).
    """
    be = ctx1.be
    geo = ctx1.geo
    R = ctx1.resolution
    f = geo.freq
    mask, mask_text, soft = ctx1.mask_info
    terms = ctx1.fsc_masked
    fsc = terms.fsc
    order, starts = geo.shell_order()      # both tests' (int32: 2 bytes per voxel)
    a, b = by_shell(order, ctx1.M1), by_shell(order, ctx1.M2)
    p, nperm, samples = shell_pvalues(be, geo, a, b, starts, fsc, seed=ctx1.seed)
    del a, b
    q = np.zeros_like(p)
    q[1:] = by_adjust(p[1:])
    sig = q <= FDR
    sig[0] = True
    nonsig = np.flatnonzero(~sig[1:])
    res = SectionResult(SID, TITLE, explanation=EXPLANATION)
    if nonsig.size == 0:
        last = geo.nshell - 1
        note = "every shell up to Nyquist is significant (the resolution is limited by the sampling)"
    else:
        last = int(nonsig[0])     # index in sig[1:] of the first non-significant shell = shell − 1
        note = None
    if last < 1:
        raise NotMeasurable("no shell beyond the origin has a significant correlation at 1 % FDR "
                            "(the halves share no detectable signal)")
    fdr_A = 1.0 / f[last]
    ctx1.estimates["1.b FDR-FSC"] = fdr_A
    res.values = {"fdr_fsc_A": fdr_A, "last_significant_shell": last, "fdr": FDR, "mask": mask_text,
                  "curves": {"frequency_invA": f, "fsc": fsc, "p": p, "q": q, "permutations": nperm,
                             "samples": samples}, "seed": ctx1.seed}
    if note:
        res.values["note"] = note
    # the reference's own sphere mask instead of the soft mask
    res.vrs_compat = {"mask": "sphere of radius N/2 − 4 voxels, Gaussian edge σ = 2 voxels (soft mask ignored)"}
    if soft and be.is_gpu:   # a second full test: cheap on the GPU only
        sph = ctx1.sphere_mask()
        S1 = be.rfftn(ctx1.h1 * sph).astype(be.xp.complex64, copy=False)
        t = ctx1.h2 * sph
        del sph               # not held while S2 is made
        S2 = be.rfftn(t).astype(be.xp.complex64, copy=False)
        del t
        from . import shells
        fsc_s = shells.fsc_terms(geo, S1, S2).fsc
        a = by_shell(order, S1)   # the test reads the sorted copies only: each spectrum goes once sorted,
        del S1                    # so that three of the four are alive at a time (4 B per voxel less)
        b = by_shell(order, S2)
        del S2
        ps, _, _ = shell_pvalues(be, geo, a, b, starts, fsc_s, seed=ctx1.seed)
        del a, b
        qs = by_adjust(ps[1:])
        ns = np.flatnonzero(qs > FDR)
        ls = geo.nshell - 1 if ns.size == 0 else int(ns[0])
        res.vrs_compat["fdr_fsc_A"] = (1.0 / f[ls]) if ls >= 1 else 0.0
    elif not soft:
        res.vrs_compat["fdr_fsc_A"] = fdr_A
    else:
        res.vrs_compat["fdr_fsc_A"] = None
        res.vrs_compat["reason"] = "not recomputed on the CPU (a second permutation test doubles the cost)"
    del order

    used = nperm[nperm > 0]
    res.blocks.append(
        f"Resolution at 1 % FDR: **{fdr_A:.2f} Å** (shell {last} of {geo.nshell - 1}, a shell frequency, not "
        f"interpolated){'; ' + note if note else ''}. Computed on the halves multiplied by {mask_text}; "
        f"{int(used.min()) if used.size else 0}–{int(used.max()) if used.size else 0} permutations per shell "
        f"(seed {ctx1.seed}).")
    show = [k for k in range(1, geo.nshell) if k in (last - 1, last, last + 1) or k % max(1, geo.nshell // 8) == 0]
    res.blocks.append(md_table(["shell", "d (Å)", "FSC", "permutations", "p", "q (BY)", "significant"],
                               [[k, f"{1 / f[k]:.2f}", f"{fsc[k]:.3f}", nperm[k], f"{p[k]:.3g}", f"{q[k]:.3g}",
                                 "yes" if sig[k] else "no"] for k in show if k < geo.nshell]))
    fig_dir = ctx1.options.figure_dir
    if fig_dir is not None:
        from ..figures import level1 as figs
        add_figure(ctx1, res, lambda: figs.curves_png(
            fig_dir / "l1_fdr_fsc.png", f, [(fsc, "FSC (masked halves)"), (q, "BY-adjusted p (q)")],
            "FSC permutation test", "FSC / q", hlines=[(FDR, "1 % FDR")], ylim=(-0.1, 1.02),
            vlines=[(f[last], f"last significant shell ({fdr_A:.2f} Å)")]),
            "FSC of the masked halves, the Benjamini–Yekutieli q-value of each shell and the last significant shell.")
    res.criteria = CRITERION.format(what="the FDR-FSC resolution")
    check_estimate(res, R, fdr_A, "FDR-FSC resolution")
    res.differences = [
        "The reference (SPOC) ignores the mask it is given and multiplies the halves by its own sphere of "
        "radius N/2 − 4 voxels; gpuvalid uses the soft mask. " + (
            f"The value with the reference's sphere is `vrs_compat.fdr_fsc_A` = {fmt_A(res.vrs_compat['fdr_fsc_A'])}."
            if res.vrs_compat.get("fdr_fsc_A") is not None else
            "The value with the reference's sphere is not recomputed on the CPU (a second permutation test "
            "would double the cost); the GPU path gives it as `vrs_compat.fdr_fsc_A`."),
        "Permutations come from seeded generators of gpuvalid (not NumPy's legacy stream re-seeded with 3 in "
        "every shell), so the result can differ from the reference's by a shell. The reference stops a shell "
        "when p has not grown by 0.001 over a batch (a signed difference); gpuvalid stops when |Δp| < 0.001, "
        "or earlier when the shell's decision is settled (10 exceedances, or none against an FSC 6σ above the "
        "permutation distribution).",
        "A degenerate result (no significant shell) is 'could not be measured', never 0 Å.",
    ]
    res.key = f"{fdr_A:.2f} Å at 1 % FDR"
    if R is None:
        return grade_without_R(res, res.key)
    res.summary = f"The FSC is significant (1 % FDR) up to {fdr_A:.2f} Å."
    return res
