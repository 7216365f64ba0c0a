"""Validate one map: input figures, every section in report order, grading, report files."""

from __future__ import annotations

import importlib
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import __version__
from .analyses import SECTIONS
from .analyses.base import Figure, SectionResult, not_implemented, not_measured
from .context import MapContext, MapInput, RunOptions
from .errors import NotMeasurable


@dataclass
class Report:
    """The outcome of one validation, as written to ``results.json`` and ``report.md``."""

    input: MapInput
    sections: dict[str, SectionResult]
    backend: dict
    input_figures: list[Figure] = field(default_factory=list)
    seconds: float = 0.0
    version: str = __version__

    @property
    def passed(self) -> int:
        return sum(1 for s in self.sections.values() if s.status == "ok")

    @property
    def evaluable(self) -> int:
        return sum(1 for s in self.sections.values() if s.evaluable)


def run_section(module_name: str | None, sid: str, title: str, ctx: MapContext,
                error_log: list[str] | None = None) -> SectionResult:
    """Run one section; failures become "could not be measured" with a one-line reason."""
    t0 = time.perf_counter()
    if module_name is None:
        res = not_implemented(sid, title)
    else:
        try:
            from .memory import run_within_budget  # issue 14: device memory budget, CPU fallback
            res = run_within_budget(importlib.import_module(module_name).run, sid, ctx)
        except NotMeasurable as exc:
            res = not_measured(sid, title, str(exc))
        except MemoryError:
            res = not_measured(sid, title, "out of memory while computing this section")
        except Exception as exc:  # a bug or an unforeseen map: never lose the other sections
            if error_log is not None:
                error_log.append(f"section {sid}:\n{traceback.format_exc()}")
            res = not_measured(sid, title, f"internal error ({type(exc).__name__}: {exc})")
    res.id, res.title = sid, title
    res.seconds = time.perf_counter() - t0
    return res.finish()


def validate(inp: MapInput, be, out_dir: Path | None = None, *, figures: bool = True,
             save_maps: bool = False, progress: Callable[[str], None] | None = None,
             only: set[str] | None = None) -> Report:
    """Validate ``inp`` on backend ``be``; write figures (and derived maps) under ``out_dir``.

    ``progress(label)`` is called before each step; ``only`` restricts the sections that run.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir) if out_dir is not None else None
    fig_dir = map_dir = None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if figures:
            fig_dir = out_dir / "figures"
            fig_dir.mkdir(exist_ok=True)
        if save_maps:
            map_dir = out_dir / "maps"
            map_dir.mkdir(exist_ok=True)
    opts = RunOptions(figure_dir=fig_dir, map_dir=map_dir)
    ctx = MapContext(be, inp.data, inp.voxel_size, inp.threshold, inp.resolution, opts, name=inp.path.name)
    errors: list[str] = []

    input_figs: list[Figure] = []
    if fig_dir is not None:
        if progress:
            progress("input figures")
        input_figs = _input_figures(ctx, fig_dir, errors)

    sections: dict[str, SectionResult] = {}
    for sid, title, module in SECTIONS:
        if only is not None and sid not in only:
            continue
        if progress:
            progress(f"{sid} {title}")
        sections[sid] = run_section(module, sid, title, ctx, errors)

    if out_dir is not None and errors:
        (out_dir / "errors.log").write_text("\n".join(errors))
    report = Report(inp, sections, be.info(), input_figs, time.perf_counter() - t0)
    ctx.release()
    return report


def _input_figures(ctx: MapContext, fig_dir: Path, errors: list[str]) -> list[Figure]:
    """Slices, projections, mask slices and (when the renderer exists) isosurface views."""
    from .figures import inputs as input_figs

    figs: list[Figure] = []
    try:
        figs += input_figs.map_figures(ctx, fig_dir)
    except Exception:
        errors.append("input figures:\n" + traceback.format_exc())
    try:
        from .figures import views  # added by the rendering issue
    except ImportError:
        views = None
    if views is not None and ctx.options.views and ctx.threshold is not None and not ctx.threshold_too_high:
        try:
            figs += views.isosurface_views(ctx, fig_dir)
        except Exception:
            errors.append("isosurface views:\n" + traceback.format_exc())
    return figs
