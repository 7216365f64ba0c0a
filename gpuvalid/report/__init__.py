"""Writing a validation: ``report.md`` (for people) and ``results.json`` (for programs)."""

from pathlib import Path

from .files import atomic_write_text
from .markdown import render_markdown
from .results_json import results_dict, write_json_atomic

FORMATS = ("md", "html", "json")


def write_report(report, out_dir, formats=FORMATS) -> tuple[Path | None, Path | None]:
    """Write ``report.md``, ``report.html`` and ``results.json`` into ``out_dir`` (atomically).

    Only the formats named in ``formats`` are written; returns the paths of ``report.md`` and
    ``results.json`` (None when not written).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = render_markdown(report) if {"md", "html"} & set(formats) else None
    md = atomic_write_text(out_dir / "report.md", text) if "md" in formats else None
    if "html" in formats:  # the same Markdown text, rendered self-contained (gpuvalid.report.html)
        from .html import write_html
        write_html(report, out_dir, text)
    js = write_json_atomic(out_dir / "results.json", results_dict(report)) if "json" in formats else None
    return md, js


__all__ = ["write_report", "FORMATS", "render_markdown", "results_dict", "write_json_atomic", "atomic_write_text"]
