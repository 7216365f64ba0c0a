"""Inference with the shipped networks over a whole map (tiles of the valid-convolution network).

Needs torch (call only after :func:`gpuvalid.models.torch_available`).  ``device`` is a torch device
string ('cpu' or 'cuda:N').  Inputs and outputs are host NumPy arrays ``[z, y, x]``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.ndimage
import torch

from . import preprocess as P
from . import weights_path
from .nets import build

HELIX_PROB = 0.7   # DeepHand's default: voxels above this helix probability vote on the hand
TILE = 48          # output voxels per tile edge


@lru_cache(maxsize=8)
def load(kind: str, path: str | None = None, device: str = "cpu"):
    """The network stored for ``kind`` ('locres', 'helix', 'hand'), in eval mode on ``device``."""
    p = Path(path) if path else weights_path(kind)
    if not p.is_file():
        raise FileNotFoundError(f"model weights not found: {p}")
    blob = torch.load(p, map_location="cpu", weights_only=False)
    net = build(blob["kind"], tuple(blob["channels"]))
    net.load_state_dict(blob["state_dict"])
    net.eval()
    net.meta = blob.get("meta", {})
    return net.to(device)


@torch.no_grad()
def apply_fcn(net, x: np.ndarray, where: np.ndarray | None = None, device: str = "cpu",
              tile: int = TILE) -> np.ndarray:
    """Network output for every voxel of ``x`` (same shape; the input is padded by reflection by half the
    receptive field).  Tiles without any ``where`` voxel are skipped (left NaN)."""
    r = net.receptive_field // 2
    xp = np.pad(x.astype(np.float32), r, mode="reflect")
    out = np.full(x.shape, np.nan, dtype=np.float32)
    nz, ny, nx = x.shape
    for z0 in range(0, nz, tile):
        for y0 in range(0, ny, tile):
            for x0 in range(0, nx, tile):
                z1, y1, x1 = min(z0 + tile, nz), min(y0 + tile, ny), min(x0 + tile, nx)
                if where is not None and not where[z0:z1, y0:y1, x0:x1].any():
                    continue
                blk = xp[z0:z1 + 2 * r, y0:y1 + 2 * r, x0:x1 + 2 * r]
                t = torch.from_numpy(np.ascontiguousarray(blk))[None, None].to(device)
                out[z0:z1, y0:y1, x0:x1] = net(t)[0].float().cpu().numpy()
    return out


def locres_on_working_grid(V1: np.ndarray, mask1: np.ndarray, device: str = "cpu", path: str | None = None):
    """Local resolution (Å) on the 1 Å working grid at the voxels of ``mask1`` (NaN elsewhere)."""
    net = load("locres", path, device)
    return apply_fcn(net, P.locres_input(V1), mask1, device)


def predict_locres(V: np.ndarray, voxel_size: float, mask: np.ndarray, device: str = "cpu",
                   path: str | None = None) -> np.ndarray:
    """Local resolution (Å) at the ``mask`` voxels of the input grid (NaN elsewhere).

    The map is resampled to 1 Å/voxel, the network runs where the (resampled) mask is, and the result is
    interpolated back to the input voxels; values are clamped to [max(2, 2·Ts), 13] Å.
    """
    V1, ts1 = P.to_working_grid(V, voxel_size)
    idx = np.argwhere(mask)
    pts = idx * (voxel_size / ts1)
    m1 = np.zeros(V1.shape, bool)
    q = np.clip(np.rint(pts).astype(int), 0, np.array(V1.shape) - 1)
    m1[q[:, 0], q[:, 1], q[:, 2]] = True
    m1 = scipy.ndimage.binary_dilation(m1, iterations=2)
    lr1 = locres_on_working_grid(V1, m1, device, path)
    lr1 = np.where(np.isnan(lr1), np.nanmedian(lr1[m1]), lr1)
    out = np.full(V.shape, np.nan, dtype=np.float32)
    vals = P.sample_coords(lr1, pts)
    out[mask] = np.clip(vals, max(2.0, 2 * voxel_size), 13.0)
    return out


def hand_score(V: np.ndarray, voxel_size: float, threshold: float, device: str = "cpu",
               helix_path: str | None = None, hand_path: str | None = None,
               helix_prob: float = HELIX_PROB) -> dict:
    """Hand score in [0, 1] (0: correct hand, 1: mirrored) with its evidence.

    The map is resampled to 1 Å, the contour mask ``V ≥ t`` chooses the voxels, the helix network finds
    helical voxels (probability > ``helix_prob``; when none, the top 5 % of the mask), and the score is the
    mean mirrored-hand probability over them.
    """
    V1, ts1 = P.to_working_grid(V, voxel_size)
    mask = V1 >= threshold
    if not mask.any():
        raise ValueError("the contour mask is empty on the 1 Å grid")
    x = P.hand_input(V1, ts1, mask)
    helix = apply_fcn(load("helix", helix_path, device), x, mask, device)
    hp = np.where(mask, np.nan_to_num(helix, nan=0.0), 0.0)
    sel = hp > helix_prob
    used_fallback = False
    if sel.sum() < 20:
        used_fallback = True
        cut = np.quantile(hp[mask], 0.95)
        sel = mask & (hp >= cut)
    hand = apply_fcn(load("hand", hand_path, device), x, sel, device)
    probs = hand[sel]
    return {"score": float(np.mean(probs)), "n_voxels": int(sel.sum()), "n_mask": int(mask.sum()),
            "helix_fraction": float((hp[mask] > helix_prob).mean()), "fallback_top5pct": used_fallback,
            "vote_fraction_mirrored": float(np.mean(probs > 0.5))}
