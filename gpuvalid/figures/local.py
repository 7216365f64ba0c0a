"""Figures of the local sections (0.f LocBfactor, 0.g LocOccupancy): histograms and colour views."""

from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np

from .figure import Figure
from .plots import histogram_png


def local_histogram(fig_dir: Path, stem: str, values: np.ndarray, xlabel: str, title: str,
                    percentiles: list[float] | None = None) -> Figure:
    """Histogram of the local values inside the hard mask (the median marked)."""
    med = percentiles[2] if percentiles else None
    file = histogram_png(Path(fig_dir) / f"{stem}_histogram.png", values, xlabel, title,
                         marker=med, marker_label=None if med is None else f"median {med:.2f}")
    return Figure(file, f"{title}: histogram over the hard mask.")


def try_colour_views(ctx_resized, values: np.ndarray, lo: float, hi: float, label: str, fig_dir: Path,
                     stem: str, errors: list[str] | None = None) -> list[Figure]:
    """Colour views from ``gpuvalid.figures.views`` when that renderer exists; never raises."""
    try:
        from .views import colour_views
    except Exception:
        return []
    try:
        return list(colour_views(ctx_resized, values, lo, hi, label, fig_dir, stem=stem))
    except Exception:
        if errors is not None:
            errors.append(traceback.format_exc())
        return []
