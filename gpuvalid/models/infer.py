"""Inference with the shipped networks over a whole map (tiles of the valid-convolution network).

Needs torch (call only after :func:`gpuvalid.models.torch_available`).  ``device`` is a torch device
string ('cpu' or 'cuda:N').  Inputs and outputs are host NumPy arrays ``[z, y, x]``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.ndimage
import torch

from . import preprocess as P
from . import weights_path
from .nets import build

TILE = 48          # output voxels per tile edge


@lru_cache(maxsize=8)
def load(kind: str, path: str | None = None, device: str = "cpu"):
    """The network stored for ``kind`` ('locres'), in eval mode on ``device``."""
    p = Path(path) if path else weights_path(kind)
    if not p.is_file():
        raise FileNotFoundError(f"model weights not found: {p}")
    blob = torch.load(p, map_location="cpu", weights_only=False)
    net = build(blob["kind"], tuple(blob["channels"]), blob.get("out_range"))
    net.load_state_dict(blob["state_dict"])
    net.eval()
    net.meta = blob.get("meta", {})
    return net.to(device)


def _tiles(shape: tuple, tile: int, where: np.ndarray | None) -> list[tuple[slice, slice, slice]]:
    """Output tiles of edge ``tile`` covering ``shape`` (those holding a ``where`` voxel)."""
    out = []
    for z0 in range(0, shape[0], tile):
        for y0 in range(0, shape[1], tile):
            for x0 in range(0, shape[2], tile):
                sl = (slice(z0, min(z0 + tile, shape[0])), slice(y0, min(y0 + tile, shape[1])),
                      slice(x0, min(x0 + tile, shape[2])))
                if where is None or where[sl].any():
                    out.append(sl)
    return out


def apply_fcn(net, x: np.ndarray, where: np.ndarray | None = None, device: str = "cpu",
              tile: int = TILE) -> np.ndarray:
    """Network output for every voxel of ``x`` (same shape; the input is padded by reflection by half the
    receptive field).  Tiles without any ``where`` voxel are skipped (left NaN).

    On the CPU every tile runs single-threaded and the tiles run in parallel (as many as torch has
    threads): the numbers then do not depend on the thread count (a multi-threaded convolution splits
    its sums differently with 1, 2 or 16 threads), so archive runs on one machine agree bit for bit
    whatever their worker layout (shards, Dask workers, thread limits)."""
    r = net.receptive_field // 2
    xp = np.pad(x.astype(np.float32), r, mode="reflect")
    out = np.full(x.shape, np.nan, dtype=np.float32)

    def run(sl):
        blk = xp[sl[0].start:sl[0].stop + 2 * r, sl[1].start:sl[1].stop + 2 * r, sl[2].start:sl[2].stop + 2 * r]
        with torch.no_grad():   # grad mode is per thread
            t = torch.from_numpy(np.ascontiguousarray(blk))[None, None].to(device)
            out[sl] = net(t)[0].float().cpu().numpy()

    tiles = _tiles(x.shape, tile, where)
    if not str(device).startswith("cpu"):
        for sl in tiles:
            run(sl)
        return out
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=max(1, n)) as ex:
            list(ex.map(run, tiles))
    finally:
        torch.set_num_threads(n)
    return out


FINE_KIND = "locres_fine"
FINE_GRID_A = 0.5
FINE_BELOW_A = 2.0      # R (Å) below which the fine model (0.5 Å grid, 1.5–6 Å) is used when shipped


def fine_weights_path() -> Path:
    return weights_path("locres").with_name(f"{FINE_KIND}.pt")


def locres_kind(resolution: float | None) -> str:
    """'locres_fine' for R < FINE_BELOW_A when its weights are shipped, else 'locres'."""
    if resolution is not None and resolution < FINE_BELOW_A and fine_weights_path().is_file():
        return FINE_KIND
    return "locres"


def locres_on_working_grid(V1: np.ndarray, mask1: np.ndarray, device: str = "cpu", path: str | None = None,
                           kind: str = "locres"):
    """Local resolution (Å) on the working grid at the voxels of ``mask1`` (NaN elsewhere)."""
    if path is None and kind == FINE_KIND:
        path = str(fine_weights_path())
    net = load("locres", path, device)
    return apply_fcn(net, P.locres_input(V1), mask1, device)


def predict_locres(V: np.ndarray, voxel_size: float, mask: np.ndarray, device: str = "cpu",
                   path: str | None = None, kind: str = "locres") -> np.ndarray:
    """Local resolution (Å) at the ``mask`` voxels of the input grid (NaN elsewhere).

    The map is resampled to the working grid of ``kind`` (1 Å/voxel; 0.5 Å for 'locres_fine'), the
    network runs where the (resampled) mask is, and the result is interpolated back to the input voxels;
    values are clamped to [max(lo, 2·Ts), hi] Å with [lo, hi] the network's output range.
    """
    grid = FINE_GRID_A if kind == FINE_KIND else P.WORK_VOXEL_A
    if path is None and kind == FINE_KIND:
        path = str(fine_weights_path())
    net = load("locres", path, device)
    V1, ts1 = P.to_working_grid(V, voxel_size, grid)
    idx = np.argwhere(mask)
    pts = idx * (voxel_size / ts1)
    m1 = np.zeros(V1.shape, bool)
    q = np.clip(np.rint(pts).astype(int), 0, np.array(V1.shape) - 1)
    m1[q[:, 0], q[:, 1], q[:, 2]] = True
    m1 = scipy.ndimage.binary_dilation(m1, iterations=max(2, int(round(2.0 / grid))))
    lr1 = apply_fcn(net, P.locres_input(V1), m1, device)
    lr1 = np.where(np.isnan(lr1), np.nanmedian(lr1[m1]), lr1)
    out = np.full(V.shape, np.nan, dtype=np.float32)
    vals = P.sample_coords(lr1, pts)
    out[mask] = np.clip(vals, max(net.LO, 2 * voxel_size), net.HI)
    return out
