"""Writing a validation: ``report.md`` (for people) and ``results.json`` (for programs)."""

from pathlib import Path

from .files import atomic_write_text
from .markdown import render_markdown
from .results_json import results_dict, write_json_atomic


def write_report(report, out_dir) -> tuple[Path, Path]:
    """Write ``report.md`` and ``results.json`` (atomically) into ``out_dir``; return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = atomic_write_text(out_dir / "report.md", render_markdown(report))
    js = write_json_atomic(out_dir / "results.json", results_dict(report))
    return md, js


__all__ = ["write_report", "render_markdown", "results_dict", "write_json_atomic", "atomic_write_text"]
