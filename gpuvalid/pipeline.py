"""Validate one map: input figures, every section in report order, grading, report files."""

from __future__ import annotations

import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from . import __version__
from .analyses import SECTIONS
from .analyses.base import Figure, SectionResult, not_applicable, not_measured
from .context import MapContext, MapInput, RunOptions
from .runner import run_section

if TYPE_CHECKING:
    from .backend import Backend

MIN_SUPPORT_VOXELS = 64  # voxels that must differ from the map's background value for any measurement


@dataclass
class Report:
    """The outcome of one validation, as written to ``results.json`` and ``report.md``."""

    input: MapInput
    sections: dict[str, SectionResult]
    backend: dict
    input_figures: list[Figure] = field(default_factory=list)
    seconds: float = 0.0
    version: str = __version__
    half_maps: dict | None = None   # Level 1: files and hashes of the half maps (None: no halves given)

    @property
    def passed(self) -> int:
        """Number of sections whose status is "ok" (the score's numerator)."""
        return sum(1 for s in self.sections.values() if s.status == "ok")

    @property
    def evaluable(self) -> int:
        """Number of sections that could be evaluated (the score's denominator)."""
        return sum(1 for s in self.sections.values() if s.evaluable)


def map_support(data: np.ndarray) -> tuple[int, float]:
    """Return the voxels that differ from the map's background value, and that value.

    The background is the median of a ≤ 10⁶-voxel strided sample; a map with a handful of such voxels carries
    no evidence for any measurement.
    """
    flat = data.reshape(-1)
    step = max(1, flat.size // 1_000_000)
    bg = float(np.median(flat[::step]))
    return int(np.count_nonzero(data != np.float32(bg))), bg


def validate(inp: MapInput, be: Backend, out_dir: Path | None = None, *, figures: bool = True,
             save_maps: bool = False, progress: Callable[[str], None] | None = None,
             only: set[str] | None = None, halves: list | None = None,
             local_fsc_step: int | None = None) -> Report:
    """Validate ``inp`` on backend ``be``; write figures (and derived maps) under ``out_dir``.

    ``progress(label)`` is called before each step; ``only`` restricts the sections that run; ``halves``
    (two half-map paths) adds Level 1 after Level 0; ``local_fsc_step`` k: 1.c's FSC every k-th voxel,
    interpolated (None: automatic).
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
    opts = RunOptions(figure_dir=fig_dir, map_dir=map_dir, local_fsc_step=local_fsc_step)
    ctx = MapContext(be, inp.data, inp.voxel_size, inp.threshold, inp.resolution, opts, name=inp.path.name)
    errors: list[str] = []

    input_figs: list[Figure] = []
    if fig_dir is not None:
        if progress:
            progress("input figures")
        input_figs = _input_figures(ctx, fig_dir, errors)

    support, bg = map_support(inp.data)
    no_evidence = None
    if support < MIN_SUPPORT_VOXELS:
        no_evidence = (f"only {support} voxel(s) of the map differ from its background value {bg:g}; "
                       f"at least {MIN_SUPPORT_VOXELS} are needed for any measurement")
    sections: dict[str, SectionResult] = {}
    for sid, title, module in SECTIONS:
        if only is not None and sid not in only:
            continue
        if progress:
            progress(f"{sid} {title}")
        if no_evidence is not None and module is not None:
            sections[sid] = not_measured(sid, title, no_evidence)
            continue
        sections[sid] = run_section(module, sid, title, ctx, errors)

    half_maps = None
    if halves:  # Level 1 (gpuvalid/level1): bad halves give a "could not be measured" Half maps section
        from .level1 import run_level1
        level1, half_maps = run_level1(ctx, halves, progress, errors, level0=sections)
        sections.update(level1)
    elif only is None:  # the spec: without half maps every Level 1 section "does not apply"
        from .level1 import SECTIONS1
        for sid, title, _module in SECTIONS1:
            sections[sid] = not_applicable(sid, title, "no half maps were given (use --half1 and --half2)")

    errors += note_figure_failures(sections, ctx.figure_errors)
    if out_dir is not None and errors:
        from .report.files import atomic_write_text

        atomic_write_text(out_dir / "errors.log", "\n".join(errors) + "\n")
    report = Report(inp, sections, be.info(), input_figs, time.perf_counter() - t0, half_maps=half_maps)
    ctx.release()
    return report


def note_figure_failures(sections: dict[str, SectionResult], figure_errors: list[str]) -> list[str]:
    r"""Tell each section whose figure could not be drawn so in its results; return the ``errors.log`` entries.

    ``figure_errors`` holds ``"<sid>:\n<traceback>"`` entries (Level 0 and 1); the note in the section's
    results carries the exception's last line.
    """
    for entry in figure_errors:
        sid, _, tb = entry.partition(":\n")
        res = sections.get(sid)
        if res is None:
            continue
        last = tb.strip().splitlines()[-1][:200] if tb.strip() else "unknown error"
        note = f"A figure of this section could not be drawn ({last}); the traceback is in `errors.log`."
        if note not in res.blocks:
            res.blocks.append(note)
    return [f"figures of section {e}" for e in figure_errors]


def _input_figures(ctx: MapContext, fig_dir: Path, errors: list[str]) -> list[Figure]:
    """Slices, projections, mask slices and (when the renderer exists) isosurface views."""
    from .figures import inputs as input_figs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figs = _input_figures_(ctx, fig_dir, errors, input_figs)
    errors += sorted({f"input figures: {w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
                      for w in caught})
    return figs


def _input_figures_(ctx: MapContext, fig_dir: Path, errors: list[str], input_figs) -> list[Figure]:
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
