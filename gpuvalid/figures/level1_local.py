"""Figures of the Level 1 local-resolution sections (1.c–1.f).

The overlay of the local-resolution histograms, the radial profile of the directional resolution and the
best-direction counts per direction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .plots import _save, plt

COLOURS = ["#666666", "#4477aa", "#cc3311", "#228833", "#ee7733", "#aa3377"]


def overlay_histograms_png(path: Path, series: list, R: float | None = None) -> str:
    """Plot step histograms (normalised to unit area, common bins) of each ``(label, values Å)`` in ``series``.

    Each median is drawn as a dotted line and the reported resolution ``R`` as a dashed line.
    """
    allv = np.concatenate([np.asarray(v, dtype=float) for _, v in series])
    lo, hi = np.percentile(allv, [0.5, 99.5])
    if R is not None:
        lo, hi = min(lo, R), max(hi, R)
    if hi <= lo:
        hi = lo + 1.0
    bins = np.linspace(lo, hi, 60)
    fig, ax = plt.subplots(figsize=(6.4, 3.9))
    for k, (label, v) in enumerate(series):
        c = COLOURS[k % len(COLOURS)]
        v = np.clip(np.asarray(v, dtype=float), lo, hi)
        med = float(np.median(v))
        ax.hist(v, bins=bins, density=True, histtype="step", lw=1.4, color=c, label=f"{label} (median {med:.2f} Å)")
        ax.axvline(med, color=c, ls=":", lw=1.0)
    if R is not None:
        ax.axvline(R, color="k", ls="--", lw=1.1, label=f"reported R = {R:g} Å")
    ax.set_xlabel("local resolution (Å)")
    ax.set_ylabel("density")
    ax.set_title("Local resolution: the estimators compared", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def radial_profile_png(path: Path, radius_A: np.ndarray, profiles: dict, title: str) -> str:
    """Profiles (Å) against the distance to the box centre (Å): ``profiles`` = {label: values}."""
    fig, ax = plt.subplots(figsize=(6.0, 3.7))
    for k, (label, y) in enumerate(profiles.items()):
        ax.plot(radius_A, y, "-", lw=1.3, color=COLOURS[(k + 1) % len(COLOURS)], label=label)
    ax.set_xlabel("distance from the box centre (Å)")
    ax.set_ylabel("local resolution (Å)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def direction_counts_png(path: Path, counts: np.ndarray, title: str) -> str:
    """Bar chart of the best-direction counts per direction index, with the uniform expectation."""
    counts = np.asarray(counts, dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.bar(np.arange(counts.size), counts, color="#4477aa")
    if counts.size:
        ax.axhline(counts.sum() / counts.size, color="#cc3311", ls="--", lw=1.1, label="uniform expectation")
        ax.legend(fontsize=7)
    ax.set_xlabel("direction index")
    ax.set_ylabel("voxels (lattice subsample)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)
