"""The result of one report section and the helpers every section uses."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from ..figures.figure import Figure  # noqa: F401 (the sections name their figures from here)

OK = "ok"
WARNINGS = "warnings"
NOT_MEASURED = "not_measured"
NOT_APPLICABLE = "not_applicable"
NOT_IMPLEMENTED = "not_implemented"

STATUS_TEXT = {
    OK: "OK",
    WARNINGS: "{n} warning(s)",
    NOT_MEASURED: "could not be measured",
    NOT_APPLICABLE: "does not apply",
    NOT_IMPLEMENTED: "not implemented",
}


@dataclass
class SectionResult:
    """Everything one section contributes to ``results.json`` and ``report.md``.

    ``values`` and ``vrs_compat`` must be JSON-serialisable (use :func:`jsonable`).  ``blocks`` are
    Markdown fragments (text, tables) shown under "Results"; ``criteria`` is the automatic-criteria
    text; ``differences`` explains where gpuvalid's number differs from the reference service;
    ``summary`` is one sentence for the overall-quality paragraph; ``key`` a short key number for the
    CLI table.
    """

    id: str
    title: str
    status: str = OK
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    values: dict = field(default_factory=dict)
    vrs_compat: dict = field(default_factory=dict)
    explanation: str = ""
    blocks: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    criteria: str = ""
    differences: list[str] = field(default_factory=list)
    summary: str = ""
    key: str = ""
    seconds: float = 0.0
    peak_device_bytes: int | None = None       # device high-water mark while it ran (gpuvalid.memory)
    estimated_device_bytes: int | None = None  # what gpuvalid.memory estimated before it ran
    memory_wait_s: float = 0.0  # seconds it waited for memory that other gpuvalid processes held (gpuvalid.ledger)
    promised: tuple[str, ...] = ()  # keys of ``values`` that must be finite numbers (besides PROMISED)

    def finish(self) -> "SectionResult":
        """Set ``status`` from the warnings (only for evaluable sections)."""
        if self.status in (OK, WARNINGS):
            self.status = WARNINGS if self.warnings else OK
        return self

    @property
    def evaluable(self) -> bool:
        """Whether the section was measured (status OK or warnings)."""
        return self.status in (OK, WARNINGS)

    @property
    def status_text(self) -> str:
        """Human-readable status, e.g. "OK" or "2 warning(s)"."""
        return STATUS_TEXT[self.status].format(n=len(self.warnings))

    def to_json(self) -> dict:
        """Return the section's entry in ``results.json`` (title, status, warnings, values, timing, reason).

        A section that ran on a GPU adds its measured device peak and the estimate made before it ran (bytes);
        one that waited a second or more for memory that other gpuvalid processes held adds the seconds.
        """
        d = {"title": self.title, "status": self.status, "warnings": list(self.warnings),
             "values": jsonable(self.values), "vrs_compat": jsonable(self.vrs_compat),
             "seconds": round(self.seconds, 3)}
        if self.reason:
            d["reason"] = self.reason
        if self.peak_device_bytes is not None:
            d["peak_device_bytes"] = int(self.peak_device_bytes)
            est = self.estimated_device_bytes
            d["estimated_device_bytes"] = None if est is None else int(est)
        if self.memory_wait_s >= 1.0:
            d["memory_wait_s"] = round(self.memory_wait_s, 1)
        return d


# The key results of each section: when a section is OK or has warnings, each of these values (a number
# or a list of numbers) must be present and finite, or the section is "could not be measured".
PROMISED: dict[str, tuple[str, ...]] = {
    "0.a": ("left_space_A", "right_space_A", "decentering_pct", "center_of_mass_vox"),
    "0.b": ("n_components", "raw_voxels", "hard_mask_voxels", "overlap"),
    "0.c": ("t_statistic", "p_value", "mean", "std", "fraction_beyond_5sigma", "outlier_ratio"),
    "0.d": ("bfactor_A2", "slope", "intercept"),
    "0.e": ("percentiles_A", "resolution_percentile"),
    "0.f": ("percentiles_A2",),
    "0.g": ("percentiles", "shell_q25"),
    "0.h": ("score",),
}

_NONFINITE_WORD = re.compile(r"(?<![\w.])[-+]?(?:nan|inf|infinity)(?![\w])", re.IGNORECASE)


def _bad_number(v) -> bool:
    """Return True for None, NaN, ±Inf, or a (nested) list/array holding one of them."""
    if v is None:
        return True
    if isinstance(v, (list, tuple, np.ndarray)):
        return any(_bad_number(x) for x in (v.tolist() if isinstance(v, np.ndarray) else v))
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, (int, float, np.integer, np.floating)):
        return not math.isfinite(float(v))
    return False


def meaningless(res: SectionResult) -> str | None:
    """Why an OK/warnings section holds no meaningful result, or ``None`` when it does.

    Meaningless: a promised value (:data:`PROMISED` for the section and ``res.promised``) missing,
    NaN or infinite; any top-level number of ``values`` NaN or infinite; a ``nan``/``inf`` printed in
    the report text (results blocks, warnings, key, summary).
    """
    if not res.evaluable:
        return None
    for k in PROMISED.get(res.id, ()) + tuple(res.promised):
        if k not in res.values:
            if k in res.promised:
                return f"its result {k} was not computed"
            continue  # a table key the section does not produce (any more): not a promise
        if _bad_number(res.values[k]):
            return f"its result {k} is not a finite number"
    for k, v in res.values.items():
        if isinstance(v, (float, np.floating)) and not math.isfinite(float(v)):
            return f"its result {k} is not a finite number"
    for text in [res.key, res.summary, *res.warnings, *res.blocks]:
        m = _NONFINITE_WORD.search(text or "")
        if m:
            start = max(0, m.start() - 40)
            return f"a result is not a finite number (“…{' '.join(text[start:m.end()].split())}”)"
    return None


def _sentence(text: str) -> str:
    """``text`` ending with a full stop (reasons are clauses without one)."""
    text = text.rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."


def not_applicable(id: str, title: str, reason: str, explanation: str = "") -> SectionResult:
    """Return a "does not apply" result for section ``id`` with ``reason`` (a clause) and its summary."""
    return SectionResult(id, title, status=NOT_APPLICABLE, reason=reason, explanation=explanation,
                         summary=_sentence(f"{title} does not apply: {reason}"), key="n/a")


def not_measured(id: str, title: str, reason: str, explanation: str = "") -> SectionResult:
    """Return a "could not be measured" result for section ``id`` with ``reason`` (a clause) and its summary."""
    return SectionResult(id, title, status=NOT_MEASURED, reason=reason, explanation=explanation,
                         summary=_sentence(f"{title} could not be measured: {reason}"), key="—")


def not_implemented(id: str, title: str) -> SectionResult:
    """Return a "not implemented" result for section ``id``."""
    return SectionResult(id, title, status=NOT_IMPLEMENTED,
                         reason="this analysis is not implemented in this version of gpuvalid",
                         summary=f"{title} is not implemented yet.", key="—")


def jsonable(obj):
    """Convert NumPy scalars/arrays (and NaN/Inf) to plain JSON values (NaN/Inf → null)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def md_table(header: list[str], rows: list[list]) -> str:
    """Return a Markdown table (cells converted with ``str``)."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def percentile_block(values: np.ndarray, unit: str, fmt: str = "{:.2f}") -> tuple[list[float], str]:
    """Return the 2.5/25/50/75/97.5 % percentiles of ``values`` and a Markdown table of them (NaN when empty)."""
    qs = [2.5, 25, 50, 75, 97.5]
    p = [float(x) for x in np.percentile(values, qs)] if values.size else [float("nan")] * 5
    table = md_table(["percentile"] + [f"{q} %" for q in qs], [[unit] + [fmt.format(v) for v in p]])
    return p, table
