"""Helical-twist features of a density map: rotation-invariant, mirror-odd evidence of its hand.

Across an alpha helix at 2.5–5 Å the density is a tube with a helical groove. Moving along the tube axis
``d`` (Å), the density gradient ``g`` seen across the tube turns around ``d``: for a groove pattern
``ρ ∝ f(r)·cos(θ − k·z)`` it turns at ``k`` rad/Å, whose sign is the hand of the groove. The local twist

    τ = d · (g × H d)          (H: Hessian, so H d = ∂g/∂d)

equals ``|g⊥|²·∂φ/∂d`` (``φ``: azimuth of the transverse gradient). ``g`` and ``H`` are Gaussian
derivatives at a fine scale ``σ_f`` (the groove, ~1 Å); ``d`` is the tube axis, the eigenvector of the
largest eigenvalue of the Hessian at a coarse scale ``σ_L`` (~2.5 Å: across a tube the density curves
down in two directions, along it hardly at all). ``τ`` is even in ``d`` (the axis needs no sign), does not
change under rotations and changes sign under a mirror. The map-level feature

    T(σ_f, σ_L) = Σ τ·w / Σ |g|²·w,   w = max(0, −λ₂(σ_L))   (tube strength, λ₁ ≤ λ₂ ≤ λ₃)

over the contour mask is therefore exactly odd: ``T(mirror(V)) = −T(V)``. Proteins' right-handed helices
give ``T < 0`` (the convention of these formulas on ``[z, y, x]`` arrays). The hand model
(:mod:`gpuvalid.models.hand_model`) is a linear classifier without bias over ``T`` at several scale
pairs, so its score obeys ``score(mirror) = 1 − score``.

Works on any backend (NumPy/SciPy or CuPy/cupyx arrays through ``be``); returns host floats.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..masks import bounding_box

if TYPE_CHECKING:
    from ..backend import Backend

FINE_SIGMAS_A = (0.8, 1.0, 1.2)
AXIS_SIGMAS_A = (2.0, 2.5, 3.0)
SCALES = tuple((sf, sl) for sf in FINE_SIGMAS_A for sl in AXIS_SIGMAS_A)
MAX_VOXELS = 2_000_000   # mask voxels used at most (a fixed pseudo-random subset: the features are means)
DUPLEX_SCALES = ((2.5, 6.0),)  # coarse twist of 20 Å-wide double helices (nucleic acid); protein hardly shows it
BLOCK_A = 12.0           # Å: edge of the cubic blocks whose partial sums give the features' sampling error
_PAIRS = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def _hessian(be: Backend, V, sigma_vox: float, idx):
    """Hessian ``(n, 3, 3)`` of the Gaussian-smoothed ``V`` at flat indices ``idx`` (per voxel²)."""
    xp, ndi = be.xp, be.ndimage
    H = xp.empty((int(idx.size), 3, 3), dtype=xp.float32)
    for i, j in _PAIRS:
        order = [0, 0, 0]
        order[i] += 1
        order[j] += 1
        h = ndi.gaussian_filter(V, sigma_vox, order=order).reshape(-1)[idx]
        H[:, i, j] = h
        H[:, j, i] = h
    return H


def _gradient(be: Backend, V, sigma_vox: float, idx):
    """Gradient ``(3, n)`` of the Gaussian-smoothed ``V`` at flat indices ``idx`` (per voxel)."""
    g = []
    for a in range(3):
        order = [0, 0, 0]
        order[a] = 1
        g.append(be.ndimage.gaussian_filter(V, sigma_vox, order=order).reshape(-1)[idx])
    return be.xp.stack(g)


def _subset(xp, idx, n: int):
    """About ``n`` of the flat indices ``idx``, chosen by a multiplicative hash of the index.

    The same voxels on every backend and run, with no lattice stride that could alias with the density.
    """
    h = (idx.astype(xp.uint64) * xp.uint64(2654435761)) % xp.uint64(1 << 32)
    return idx[h < xp.uint64(int(n / int(idx.size) * (1 << 32)))]


def _block_ids(xp, idx, shape, block_vox: float):
    """Block of each flat index: cubes of ``block_vox`` voxels on a grid centred on the voxels' centroid.

    Centred so that a mirror along an array axis maps the partition onto itself (block k ↔ −1 − k).
    """
    zyx = xp.stack(xp.unravel_index(idx, shape)).astype(xp.float64)
    c = zyx.mean(1, keepdims=True)
    b = xp.floor((zyx - c) / block_vox).astype(xp.int64)
    b -= b.min(1, keepdims=True)
    key = (b[0] * (int(b[1].max()) + 1) + b[1]) * (int(b[2].max()) + 1) + b[2]
    return xp.unique(key, return_inverse=True)[1].reshape(-1)


def twist_features(be: Backend, V, mask, voxel_size: float, scales=SCALES, block_A: float | None = BLOCK_A) -> dict:
    """Compute the helical-twist features ``T(σ_f, σ_L)`` of the density ``V`` over ``mask``.

    One feature per scale pair, in the order of ``scales``, of ``V`` clipped at 0, with the fraction of the
    mask voxels in tube-like density.

    With ``block_A`` (Å), also the partial sums ``Σ τ·w`` (``block_num``) and ``Σ |g|²·w`` (``block_den``)
    over cubic blocks of that edge, arrays ``(n_blocks, n_scales)``: the features are their column sums'
    ratio, and resampling the blocks gives the features' sampling error (:mod:`gpuvalid.models.hand_model`).
    Blocks are ordered by position, so the arrays of a mirrored map are those of the map, re-ordered.

    ``V``, ``mask``: host or device arrays of ``be``; ``voxel_size`` in Å (the σ are in Å).

    Returns
    -------
    dict
        ``features`` (host floats), ``scales``, ``n_voxels`` (mask voxels used, at most ``MAX_VOXELS``),
        ``tube_fraction`` and, with ``block_A``, ``block_num`` and ``block_den``.

    Raises
    ------
    ValueError
        When ``mask`` is empty.
    """
    xp = be.xp
    V = be.asarray(V, dtype=xp.float32)
    mask = be.asarray(mask).astype(bool)
    if not bool(be.to_host(mask.any())):
        raise ValueError("the contour mask is empty")
    margin = int(np.ceil(4 * max(max(s) for s in scales) / voxel_size))
    box = bounding_box(be, mask, margin)     # filters near the mask see the same neighbourhood as on the full map
    V, mask = xp.maximum(V[box], 0), mask[box]
    idx = be.flatnonzero(mask)
    if int(idx.size) > MAX_VOXELS:     # bounds the memory of the per-voxel derivatives on large maps
        idx = _subset(xp, idx, MAX_VOXELS)
    fine = {sf: (_gradient(be, V, sf / voxel_size, idx), _hessian(be, V, sf / voxel_size, idx))
            for sf in sorted({s[0] for s in scales})}
    axis = {}
    for sl in sorted({s[1] for s in scales}):
        lam, E = xp.linalg.eigh(_hessian(be, V, sl / voxel_size, idx))                      # ascending eigenvalues
        axis[sl] = (E[:, :, 2].T, xp.maximum(-lam[:, 1], 0))   # axis (3, n), tube strength (n,)
    out, nums, dens = [], [], []
    blk = _block_ids(xp, idx, V.shape, block_A / voxel_size) if block_A else None
    nb = int(blk.max()) + 1 if blk is not None else 0
    for sf, sl in scales:
        g, H = fine[sf]
        d, w = axis[sl]
        Hd = xp.einsum("nij,jn->in", H, d)
        tau = (d[0] * (g[1] * Hd[2] - g[2] * Hd[1]) + d[1] * (g[2] * Hd[0] - g[0] * Hd[2])
               + d[2] * (g[0] * Hd[1] - g[1] * Hd[0]))
        gw = (g * g).sum(0) * w
        den = be.scalar(xp.sum(gw, dtype=xp.float64))
        out.append(be.scalar(xp.sum(tau * w, dtype=xp.float64)) / den if den > 0 else 0.0)
        if blk is not None:
            nums.append(be.to_host(xp.bincount(blk, weights=(tau * w).astype(xp.float64), minlength=nb)))
            dens.append(be.to_host(xp.bincount(blk, weights=gw.astype(xp.float64), minlength=nb)))
    tube = axis[scales[0][1]][1]
    res = {"features": [float(v) for v in out], "scales": [list(s) for s in scales], "n_voxels": int(idx.size),
           "tube_fraction": be.scalar(xp.mean((tube > 0).astype(xp.float32)))}
    if blk is not None:
        res["block_num"] = np.stack(nums, 1)
        res["block_den"] = np.stack(dens, 1)
    return res
