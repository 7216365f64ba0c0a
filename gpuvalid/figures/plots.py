"""Small matplotlib helpers (headless Agg) shared by the report figures.

Every function writes one PNG and returns its path relative to the report folder
(``figures/<name>.png``), which is what :class:`~gpuvalid.analyses.base.Figure` stores.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if TYPE_CHECKING:
    from ..backend import Backend

DPI = 110
AXIS_NAMES = ("Z", "Y", "X")  # array axes of a [z, y, x] map
# for a slice perpendicular to array axis a: (vertical axis, horizontal axis) names
SLICE_AXES = {0: ("Y", "X"), 1: ("Z", "X"), 2: ("Z", "Y")}


def rel(path: Path) -> str:
    """``figures/name.png`` for a file inside the report's figure folder."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}"


def _save(fig, path: Path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return rel(path)


def slices_png(path: Path, images: list[np.ndarray], titles: list[str], suptitle: str,
               axes_labels: list[tuple[str, str]] | None = None, cmap: str = "gray",
               symmetric: bool = False, vrange: tuple[float, float] | None = None) -> str:
    """Plot a row of 2-D images (first index vertical, drawn bottom-up) with a shared colour scale."""
    if vrange is None:
        lo = min(float(np.min(im)) for im in images)
        hi = max(float(np.max(im)) for im in images)
        if symmetric:
            m = max(abs(lo), abs(hi)) or 1.0
            lo, hi = -m, m
    else:
        lo, hi = vrange
    if hi <= lo:
        hi = lo + 1.0
    fig, axes = plt.subplots(1, len(images), figsize=(3.4 * len(images), 3.6))
    axes = np.atleast_1d(axes)
    im = None
    for k, (ax, img, title) in enumerate(zip(axes, images, titles, strict=True)):
        im = ax.imshow(img, cmap=cmap, origin="lower", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        if axes_labels:
            ax.set_ylabel(axes_labels[k][0], fontsize=8)
            ax.set_xlabel(axes_labels[k][1], fontsize=8)
        ax.tick_params(labelsize=7)
    fig.colorbar(im, ax=list(axes), shrink=0.8)
    fig.suptitle(suptitle, fontsize=10)
    return _save(fig, path)


def max_variance_index(be: Backend, V, axis: int) -> int:
    """Index of the slice perpendicular to ``axis`` whose voxel values have the largest variance."""
    other = tuple(a for a in range(3) if a != axis)
    return int(np.argmax(be.to_host(V.astype(be.xp.float32).var(axis=other))))


def take_slice(be: Backend, V, axis: int, index: int) -> np.ndarray:
    """Return slice ``index`` perpendicular to ``axis`` of ``V`` as a host float32 array."""
    return be.to_host(be.xp.take(V, index, axis=axis)).astype(np.float32)


def max_variance_slices_png(be: Backend, V, path: Path, suptitle: str, cmap: str = "gray", symmetric: bool = False) -> str:
    """Plot the max-variance slice along each axis of ``V`` (device array)."""
    imgs, titles = [], []
    for axis in range(3):
        k = max_variance_index(be, V, axis)
        imgs.append(take_slice(be, V, axis, k))
        titles.append(f"{AXIS_NAMES[axis]} = {k}")
    return slices_png(path, imgs, titles, suptitle, [SLICE_AXES[a] for a in range(3)], cmap, symmetric)


def mass_plot(path: Path, thresholds, voxels, contour: float | None) -> str:
    """Voxels above the threshold against the threshold, log y."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    v = np.asarray(voxels, dtype=float)
    ax.semilogy(thresholds, np.where(v > 0, v, np.nan), "o-", ms=3)
    if contour is not None:
        ax.axvline(contour, ls="--", color="gray", lw=1, label=f"contour {contour:g}")
        ax.legend(fontsize=8)
    ax.set_xlabel("threshold g")
    ax.set_ylabel("voxels with V > g")
    ax.grid(alpha=0.3, which="both")
    ax.set_title("Mass vs threshold", fontsize=10)
    return _save(fig, path)


def histogram_png(path: Path, values: np.ndarray, xlabel: str, title: str, marker: float | None = None,
                  marker_label: str | None = None, bins: int = 50) -> str:
    """Histogram of a local map over the mask, with an optional vertical marker (e.g. the resolution)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.hist(np.asarray(values).ravel(), bins=bins, color="#4477aa")
    if marker is not None:
        ax.axvline(marker, color="#cc3311", ls="--", lw=1.2, label=marker_label)
        if marker_label:
            ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("voxels")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)
