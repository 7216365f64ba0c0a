"""Figures of the Level 1 sections.

Resolution curves against spatial frequency, the directional-resolution map on the hemisphere, half-map
slices.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .plots import _save, max_variance_slices_png, plt

if TYPE_CHECKING:
    from ..backend import Backend

COLOURS = ["#4477aa", "#cc3311", "#228833", "#ee7733", "#aa3377", "#666666"]


def _resolution_axis(ax) -> None:
    """Add a top axis labelled in Å (d = 1/f) over a frequency (Å⁻¹) x axis (ticks at round resolutions)."""
    lo, hi = ax.get_xlim()
    cands = [50, 30, 20, 15, 10, 8, 6, 5, 4, 3.5, 3, 2.5, 2.2, 2, 1.8, 1.6, 1.5, 1.4, 1.2, 1.1, 1.0, 0.9, 0.8]
    ticks = [d for d in cands if lo < 1.0 / d <= hi]
    if len(ticks) > 8:
        ticks = ticks[:: int(np.ceil(len(ticks) / 8))]
    top = ax.twiny()
    top.set_xlim(lo, hi)
    top.set_xticks([1.0 / d for d in ticks])
    top.set_xticklabels([f"{d:g}" for d in ticks], fontsize=7)
    top.set_xlabel("resolution (Å)", fontsize=8)


def curves_png(path: Path, freq: np.ndarray, curves: list, title: str, ylabel: str,
               hlines: list | None = None, vlines: list | None = None, logy: bool = False,
               ylim: tuple | None = None, span: tuple | None = None) -> str:
    """Plot curves against spatial frequency (Å⁻¹) with a resolution (Å) top axis; return the PNG's path.

    ``curves`` = [(y, label)], ``hlines`` = [(y, label)] thresholds, ``vlines`` = [(f, label)] marked
    frequencies, ``span`` = (f0, f1, label) a shaded band.
    """
    fig, ax = plt.subplots(figsize=(6.2, 3.9))
    for k, (y, label) in enumerate(curves):
        y = np.asarray(y, dtype=float)
        if logy:
            y = np.where(y > 0, y, np.nan)
        ax.plot(freq, y, "-", lw=1.3, color=COLOURS[k % len(COLOURS)], label=label)
    for k, (y0, label) in enumerate(hlines or []):
        ax.axhline(y0, ls="--", lw=0.9, color=["#999999", "#bbbbbb", "#777777"][k % 3], label=label)
    for k, (f0, label) in enumerate(vlines or []):
        if f0 is not None:
            ax.axvline(f0, ls=":", lw=1.1, color=COLOURS[k % len(COLOURS)], label=label)
    if span is not None and span[0] is not None and span[1] is not None:
        ax.axvspan(min(span[0], span[1]), max(span[0], span[1]), color="#228833", alpha=0.12, label=span[2])
    if logy:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlim(0, float(np.nanmax(freq)) if len(freq) else 1)
    ax.set_xlabel("spatial frequency (Å⁻¹)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10, pad=24)
    _resolution_axis(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def hemisphere_png(path: Path, directions: np.ndarray, values: np.ndarray, title: str, label: str,
                   never: np.ndarray | None = None) -> str:
    """Plot directional values (e.g. resolution in Å) on the hemisphere ``z ≥ 0`` (map axes x, y, z).

    Drawn in a Lambert azimuthal equal-area projection centred on +Z: the rim is the X–Y plane, azimuth
    measured from +X.  ``never`` marks directions whose curve never crossed (drawn as open circles).
    """
    d = np.asarray(directions, dtype=float)
    v = np.asarray(values, dtype=float)
    tilt = np.arccos(np.clip(d[:, 2], -1, 1))
    rho = 2.0 * np.sin(tilt / 2.0)  # equal-area radius (rim at √2)
    phi = np.arctan2(d[:, 1], d[:, 0])
    x, y = rho * np.cos(phi), rho * np.sin(phi)
    # mirror the rim directions (the axis −u is the same) so the contours close around the rim
    rim = tilt > np.radians(70)
    xx = np.concatenate([x, -x[rim]])
    yy = np.concatenate([y, -y[rim]])
    vv = np.concatenate([v, v[rim]])
    ok = np.isfinite(vv)
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    if ok.sum() >= 4 and np.nanmax(vv) > np.nanmin(vv):
        cs = ax.tricontourf(xx[ok], yy[ok], vv[ok], levels=14, cmap="viridis_r")
        fig.colorbar(cs, ax=ax, shrink=0.85, label=label)
    sc = ax.scatter(x[np.isfinite(v)], y[np.isfinite(v)], c="k", s=2, alpha=0.4)
    del sc
    if never is not None and np.any(never):
        ax.scatter(x[never], y[never], facecolors="none", edgecolors="#cc3311", s=14, lw=0.8,
                   label="no crossing")
        ax.legend(fontsize=7, loc="lower right")
    t = np.linspace(0, 2 * np.pi, 200)
    R = np.sqrt(2.0)
    ax.plot(R * np.cos(t), R * np.sin(t), "k-", lw=0.8)
    for deg in (30, 60):
        r = 2 * np.sin(np.radians(deg) / 2)
        ax.plot(r * np.cos(t), r * np.sin(t), ":", color="#888888", lw=0.7)
    ax.annotate("+X", (R * 1.02, 0), fontsize=8, va="center")
    ax.annotate("+Y", (0, R * 1.02), fontsize=8, ha="center")
    ax.annotate("Z (centre)", (0.03, 0.03), fontsize=7)
    ax.set_aspect("equal")
    ax.set_xlim(-1.6, 1.6)
    ax.set_ylim(-1.6, 1.6)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def half_slices_png(be: Backend, V, path: Path, title: str, symmetric: bool = False) -> str:
    """Write the max-variance slices of a half map (or, ``symmetric``, of a difference map in RdBu)."""
    return max_variance_slices_png(be, V, path, title, symmetric=symmetric,
                                   cmap="RdBu_r" if symmetric else "gray")
