"""Run one section, with its exceptions, warnings and the checks every result must pass.

The section's ``run(ctx)`` runs within the device-memory budget; the checks apply to Level 0 and Level 1
alike.

A section's failure never stops the others: :class:`~gpuvalid.errors.NotMeasurable` becomes "could not be
measured" with its reason, a device or host out-of-memory error says so, and any other exception becomes
"could not be measured" with the error in one line and its traceback in ``errors.log``.
"""

from __future__ import annotations

import importlib
import time
import traceback
import warnings

from .analyses.base import SectionResult, meaningless, not_implemented, not_measured
from .errors import NotMeasurable


def run_section(module_name: str | None, sid: str, title: str, ctx,
                error_log: list[str] | None = None) -> SectionResult:
    """Run one section; failures become "could not be measured" with a one-line reason.

    Steps: :func:`_call_section` (the section's ``run(ctx)``, its exceptions and warnings), then the
    common checks of the result (:func:`~gpuvalid.analyses.base.meaningless`: no NaN/Inf/missing key
    result in an evaluable section).
    """
    t0 = time.perf_counter()
    if module_name is None:
        res = not_implemented(sid, title)
    else:
        res = _call_section(module_name, sid, title, ctx, error_log)
    res.id, res.title = sid, title
    res = _require_meaningful(res.finish())
    res.seconds = time.perf_counter() - t0
    return res


def _call_section(module_name: str, sid: str, title: str, ctx,
                  error_log: list[str] | None) -> SectionResult:
    """``module.run(ctx)``; NumPy/SciPy warnings raised inside go to ``errors.log``, not to the terminal.

    A module's ``applicability(ctx)`` (where it has one) comes first: a section that does not apply to the
    map, or whose parameters make it impossible (``NotMeasurable``), says so whatever its memory estimate.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            from .memory import run_within_budget  # issue 14: device memory budget, CPU fallback
            module = importlib.import_module(module_name)
            applies = getattr(module, "applicability", None)   # "does not apply" before any memory estimate
            res = applies(ctx) if applies is not None else None
            if res is None:
                res = run_within_budget(module.run, sid, ctx)
        except NotMeasurable as exc:
            res = not_measured(sid, title, str(exc))
        except MemoryError:
            res = not_measured(sid, title, "out of memory while computing this section")
        except Exception as exc:  # a bug or an unforeseen map: never lose the other sections
            if error_log is not None:
                error_log.append(f"section {sid}:\n{traceback.format_exc()}")
            res = not_measured(sid, title, f"internal error ({type(exc).__name__}: {exc})")
    if error_log is not None:
        seen = set()
        for w in caught:
            key = (w.category.__name__, str(w.message), w.filename, w.lineno)
            if key not in seen:
                seen.add(key)
                error_log.append(f"section {sid}: {w.category.__name__}: {w.message} "
                                 f"({w.filename}:{w.lineno})")
    return res


def _require_meaningful(res: SectionResult) -> SectionResult:
    why = meaningless(res)
    if why is None:
        return res
    return not_measured(res.id, res.title, why, res.explanation)
