"""Figures of the global B-factor section (0.d): the Guinier plot and the sharpened map's slices."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .plots import _save, max_variance_slices_png, plt

if TYPE_CHECKING:
    from ..backend import Backend


def guinier_png(path: Path, x: np.ndarray, lnF: np.ndarray, lnF_corrected: np.ndarray, slope: float,
                intercept: float, fit_mask: np.ndarray, resolution: float) -> str:
    """ln(mean |F|) against 1/d² (Å⁻²): experimental, fitted line over the fit range, corrected (sharpened)."""
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    ax.plot(x, lnF, "o-", ms=3, lw=1, color="#4477aa", label="experimental")
    xf = x[fit_mask]
    if xf.size:
        xl = np.array([0.0, float(x.max())])
        ax.plot(xl, slope * xl + intercept, "--", lw=1.2, color="#cc3311",
                label=f"fit: lnF = {slope:.1f}·x {'+' if intercept >= 0 else '−'} {abs(intercept):.2f}")
        ax.axvspan(float(xf.min()), float(xf.max()), color="#cc3311", alpha=0.08, label="fit range (15 Å to R)")
    ax.plot(x, lnF_corrected, "s-", ms=2.5, lw=1, color="#228833", label="corrected (sharpened)")
    ax.set_xlabel("1/d² (Å⁻²)")
    ax.set_ylabel("ln(mean |F|)")
    ax.set_title(f"Guinier plot (shells with d ≥ {resolution:g} Å)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def sharpened_slices_png(be: Backend, V, path: Path) -> str:
    """Max-variance slices of the sharpened map."""
    return max_variance_slices_png(be, V, path, "Sharpened map: max-variance slices")
