"""``report.md``: input data, one part per section (explanation, results, criteria, status), summary."""

from __future__ import annotations

import datetime as _dt

import numpy as np

from ..analyses.base import md_table

STATUS_ICON = {"ok": "✅", "warnings": "⚠️", "not_measured": "❌", "not_applicable": "➖", "not_implemented": "·"}


def _fmt(v, unit: str = "", missing: str = "not reported") -> str:
    if v is None:
        return missing
    return f"{v:g}{unit}"


def _figures(figs) -> list[str]:
    out = []
    for f in figs:
        out.append(f"![{f.caption}]({f.file})\n\n*{f.caption}*\n")
    return out


def level1_absent(report) -> tuple[list[str], str] | None:
    """Return the Level 1 section ids and their common reason when none of them applies, else None.

    That is when every Level 1 section does not apply for one and the same reason (no half maps): the
    summary then says it once instead of eight times.
    """
    l1 = [(sid, s) for sid, s in report.sections.items() if sid.startswith("1.")]
    if not l1 or any(s.status != "not_applicable" for _, s in l1) or len({s.reason for _, s in l1}) != 1:
        return None
    return [sid for sid, _ in l1], l1[0][1].reason or ""


def render_summary(report) -> list[str]:
    """Return the lines of the "Summary" part of ``report.md``.

    The overall score, the status table, the warnings, the sections not evaluated and the overall-quality
    paragraph.
    """
    lines = ["## Summary", ""]
    lines.append(f"**Overall score: {report.passed} out of {report.evaluable} evaluable items passed.** "
                 "Evaluable items are the sections that were measured (OK or with warnings); sections that "
                 "do not apply, could not be measured or are not implemented are not counted.")
    lines.append("")
    rows = [[f"{STATUS_ICON.get(s.status, '')} {sid}", s.title, s.status_text, s.key or ""]
            for sid, s in report.sections.items()]
    lines.append(md_table(["section", "analysis", "status", "key result"], rows))
    lines.append("")
    warned = [(sid, w) for sid, s in report.sections.items() for w in s.warnings]
    if warned:
        lines += ["### Warnings", ""] + [f"- **{sid}**: {w}" for sid, w in warned] + [""]
    absent = level1_absent(report)
    grouped = set(absent[0]) if absent else set()
    unmeasured = [(sid, s) for sid, s in report.sections.items()
                  if s.status in ("not_measured", "not_applicable") and sid not in grouped]
    items = [f"- **{sid}** {s.title} — {s.status_text}: {s.reason}" for sid, s in unmeasured]
    if absent:
        items.append(f"- **{absent[0][0]}–{absent[0][-1]}** Level 1 (half maps) — does not apply: {absent[1]}")
    if items:
        lines += ["### Not evaluated", ""] + items + [""]
    para = " ".join(s.summary for sid, s in report.sections.items()
                    if s.summary and s.status != "not_implemented" and sid not in grouped)
    if absent:
        para += f" Level 1 ({absent[0][0]}–{absent[0][-1]}) does not apply: {absent[1]}."
    lines += ["### Summarized overall quality", "", para, ""]
    return lines


def render_input(report) -> list[str]:
    """Return the lines of the "Input data" part of ``report.md``.

    File, SHA-256, box, voxel size (Å), threshold, resolution (Å), origin (Å), density statistics, input
    notes and input figures.
    """
    inp = report.input
    data = inp.data
    src = inp.sources
    nz, ny, nx = data.shape
    rows = [
        ["file", f"`{inp.path.name}`"],
        ["SHA-256", f"`{inp.sha256}`"],
        ["box (x × y × z voxels)", f"{nx} × {ny} × {nz}"],
        ["voxel size Ts", f"{inp.voxel_size:.4g} Å ({src.get('voxel_size', 'MRC header')})"],
        ["box size", f"{nx * inp.voxel_size:.1f} × {ny * inp.voxel_size:.1f} × {nz * inp.voxel_size:.1f} Å"],
        ["contour threshold t", _fmt(inp.threshold, missing="not given") +
         (f" ({src['threshold']})" if "threshold" in src else "")],
        ["reported resolution R", _fmt(inp.resolution, " Å") + (f" ({src['resolution']})" if "resolution" in src else "")],
        ["origin (x, y, z)", "not reported (not finite in the MRC header)" if inp.origin_A is None
         else ", ".join(f"{o:.2f}" for o in inp.origin_A) + " Å"],
        ["density min / max / mean / σ", f"{float(data.min()):.4g} / {float(data.max()):.4g} / "
                                         f"{float(data.mean(dtype=np.float64)):.4g} / {float(np.std(data, dtype=np.float64)):.4g}"],
    ]
    lines = ["## Input data", "", md_table(["", ""], rows), ""]
    if inp.notes:
        lines += ["Input handling:", ""] + [f"- {n}" for n in inp.notes] + [""]
    if report.input_figures:
        lines += ["### Input figures", ""] + _figures(report.input_figures)
    return lines


def render_section(s) -> list[str]:
    """Return the lines of one section's part: explanation, results and figures, criteria, status, differences.

    Sections that were not measured, do not apply or are not implemented show only their explanation and
    the reason.
    """
    lines = [f"## {s.id} {s.title}", ""]
    if s.explanation:
        lines += [f"**What it measures.** {s.explanation}", ""]
    if s.status in ("not_measured", "not_applicable", "not_implemented"):
        reason = (s.reason or "").strip()
        lines += [f"**Status: {s.status_text}.** {reason[:1].upper() + reason[1:]}", ""]
        return lines
    lines += ["### Results", ""]
    for b in s.blocks:
        lines += [b, ""]
    lines += _figures(s.figures)
    if s.criteria:
        lines += [f"**Automatic criteria.** {s.criteria}", ""]
    if s.warnings:
        lines += [f"**Status: {len(s.warnings)} warning(s).**", ""] + [f"- ⚠️ {w}" for w in s.warnings] + [""]
    else:
        lines += [f"**Status: {s.status_text}.**", ""]
    if s.differences:
        lines += ["**Where gpuvalid differs from the reference service.**", ""] + [f"- {d}" for d in s.differences] + [""]
    return lines


def render_markdown(report) -> str:
    """Return the whole ``report.md`` text: title line, summary, input data and every section."""
    inp = report.input
    be = report.backend
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# Validation report: {inp.path.name}", "",
             f"{'Level 0 and Level 1 (half maps)' if getattr(report, 'half_maps', None) else 'Level 0 (map-only)'} "
             f"validation by gpuvalid {report.version} on {be.get('device', '?')} "
             f"({be.get('device_name', '')}), {when}, {report.seconds:.1f} s. The analyses follow the I2PC "
             "Validation Report Service; every place where gpuvalid's number differs from that service is "
             "stated in the section, and `results.json` gives the service-compatible value under `vrs_compat`.",
             ""]
    lines += render_summary(report)
    lines += render_input(report)
    for s in report.sections.values():
        lines += render_section(s)
    return "\n".join(lines).rstrip() + "\n"
