"""Helpers shared by the Level 1 sections: the 0.8 × estimate criterion, number formatting, figures."""

from __future__ import annotations

import traceback

from ..analyses.base import NOT_APPLICABLE, SectionResult

CRITERION = ("Warn when the reported resolution R is better (smaller) than 0.8 × {what}: the map would then "
             "claim more detail than the half maps support.")


def fmt_A(v, missing: str = "no crossing") -> str:
    """Format a resolution ``v`` in Å as ``"3.21 Å"``, or ``missing`` when it is None."""
    return missing if v is None else f"{v:.2f} Å"


def check_estimate(res: SectionResult, R: float | None, est_A: float | None, label: str) -> None:
    """Warn when ``R < 0.8 × est_A`` (both in Å)."""
    if R is None or est_A is None:
        return
    if R < 0.8 * est_A:
        res.warnings.append(f"the reported resolution {R:g} Å is better than 0.8 × the {label} "
                            f"(0.8 × {est_A:.2f} = {0.8 * est_A:.2f} Å): it may be overestimated")


def grade_without_R(res: SectionResult, key_text: str) -> SectionResult:
    """No reported resolution: nothing to check; the section does not apply (its values stay in results.json)."""
    res.status = NOT_APPLICABLE
    res.reason = (f"no reported resolution R to compare with ({key_text}; every value is in results.json)")
    res.summary = f"{res.title}: {key_text} (no reported resolution to compare with)."
    return res


def add_figure(ctx1, res: SectionResult, make, caption: str) -> None:
    """Run ``make()`` (returns the figure path) and attach it; a failing figure is logged, never fatal."""
    from ..analyses.base import Figure

    try:
        f = make()
        if f:
            res.figures.append(Figure(f, caption))
    except Exception:
        ctx1.ctx0.figure_errors.append(f"{res.id}:\n{traceback.format_exc()}")
