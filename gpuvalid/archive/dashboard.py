"""``gpuvalid summary OUT --html``: an archive dashboard in one self-contained HTML file.

What it shows: counts by status for each section; plots across entries (global B-factor and 0.e median
local resolution against the reported resolution R, the 0.c outlier ratio, the hand score, Level 1
resolution estimates against R when half maps were validated); the most frequent kinds of warning; a
sortable, filterable, paged table of every entry with its flagged warnings and a link to its
``report.html``; the failures with their reasons.

Scale: the entries are embedded once as compact JSON (one array per entry) and the table renders one
page at a time in plain JavaScript, so 60,000 entries cost one parse and a page of DOM rows (see
``bench/bench_dashboard.py``).  Everything but the table reads without JavaScript; a
Content-Security-Policy forbids any network fetch.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html as _html
import io
import json
import math
import os
import re
from collections import Counter
from pathlib import Path
from urllib.parse import quote

STATUSES = ("ok", "warnings", "not_measured", "not_applicable", "not_implemented")
STATUS_LABEL = {"ok": "OK", "warnings": "warnings", "not_measured": "could not be measured",
                "not_applicable": "does not apply", "not_implemented": "not implemented"}
STATUS_CODE = {"ok": "o", "warnings": "w", "not_measured": "x", "not_applicable": "-", "not_implemented": "."}
LEVEL1_KEYS = (("fsc_0143_A", "FSC 0.143"), ("fsc_0143_masked_A", "FSC 0.143 (masked)"),
               ("dpr_45_A", "DPR 45°"), ("ssnr_1_A", "SSNR 1"))
# Columns of one embedded entry (the order of each JSON array).
COLS = ("id", "status", "reason", "passed", "evaluable", "R", "B", "locres", "outlier", "hand", "fsc",
        "sections", "warnings", "href", "seconds")
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
NUM = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", re.IGNORECASE)


def _sec_key(sid: str):
    """Return the sort key of section ``sid`` in report order: 0.a … 0.h, then 1 (half maps), 1.a and on."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in sid.split("."))


def _num(v, sig: int = 4):
    """Return a finite float rounded to ``sig`` significant digits (compact JSON), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    if not math.isfinite(v):
        return None
    return float(f"{v:.{sig}g}")


def _median_of(percentiles):
    """Return the median of a five-number percentile list (2.5, 25, 50, 75, 97.5 %), else None."""
    if isinstance(percentiles, (list, tuple)) and len(percentiles) >= 3:
        return _num(percentiles[2])
    return None


def entry_record(row: dict, results: dict | None, href: str | None) -> list:
    """One entry as the compact array of :data:`COLS`, from its index row and its ``results.json``."""
    def mapping(v) -> dict:
        return v if isinstance(v, dict) else {}
    res = mapping(results)  # a hand-edited or foreign results.json: whatever is a mapping is used
    secs = {sid: mapping(s) for sid, s in mapping(res.get("sections")).items()}
    inp = mapping(res.get("input"))

    def val(sid, key):
        s = secs.get(sid) or {}
        if s.get("status") not in ("ok", "warnings"):
            return None  # a number from a section that was not measured is not a result
        return mapping(s.get("values")).get(key)
    fsc = None
    for key, _ in LEVEL1_KEYS[:1]:
        fsc = _num(val("1.a", key))
    sections = {sid: s.get("status") for sid, s in secs.items() if isinstance(s.get("status"), str)}
    warnings = [f"{sid}: {w}" for sid, s in sorted(secs.items(), key=lambda kv: _sec_key(kv[0]))
                for w in (s.get("warnings") if isinstance(s.get("warnings"), list) else [])]
    score = mapping(res.get("score"))
    return [row.get("emdb_id"), row.get("status"), row.get("reason") or None,
            score.get("passed", row.get("score_passed")), score.get("evaluable", row.get("score_evaluable")),
            _num(inp.get("resolution_A")), _num(val("0.d", "bfactor_A2")),
            _median_of(val("0.e", "percentiles_A")), _num(val("0.c", "outlier_ratio")), _num(val("0.h", "score")),
            fsc, sections, warnings, href, _num(row.get("t_total"), 3)]


def _level1(results: dict | None) -> dict:
    secs = results.get("sections") if isinstance(results, dict) else None
    s = secs.get("1.a") if isinstance(secs, dict) else None
    if not isinstance(s, dict) or s.get("status") not in ("ok", "warnings"):
        return {}
    v = s.get("values") if isinstance(s.get("values"), dict) else {}
    return {k: _num(v.get(k)) for k, _ in LEVEL1_KEYS if _num(v.get(k)) is not None}


def _href(entry_dir: Path, dash_dir: Path) -> str | None:
    for name in ("report.html", "report.md"):
        p = entry_dir / name
        if p.is_file():
            rel = os.path.relpath(p, dash_dir).replace(os.sep, "/")
            return quote(rel)
    return None


def collect_entries(rows: list[dict], out_dir: str | Path, dash_dir: str | Path | None = None
                    ) -> tuple[list[list], list[dict]]:
    """Return (entries as :data:`COLS` arrays, Level 1 estimates per entry).

    They are read from index rows (as from :func:`gpuvalid.archive.summary.collect`) and each finished
    entry's ``results.json``.
    """
    out = Path(out_dir)
    dash = Path(dash_dir) if dash_dir is not None else out
    entries, level1 = [], []
    for r in rows:
        d = Path(r.get("out_dir") or out / str(r.get("emdb_id")))
        results = None
        if r.get("status") == "done":
            try:
                results = json.loads((d / "results.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                results = None
        entries.append(entry_record(r, results, _href(d, dash) if d.is_dir() else None))
        level1.append(_level1(results))
    return entries, level1


# ---- figures -------------------------------------------------------------------------------------
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _legend(ax):
    """Draw a legend whose markers stay visible however small and transparent the points are."""
    leg = ax.legend(fontsize=8, loc="best")
    for h in getattr(leg, "legend_handles", None) or getattr(leg, "legendHandles", []):
        if hasattr(h, "set_sizes"):
            h.set_sizes([24])
        h.set_alpha(1)
    return leg


def _status_colors():
    return {"ok": "#1a7f37", "warnings": "#d4a72c", "not_measured": "#b42318"}


def _scatter(ax, pts, colors, n):
    size = 14 if n < 500 else (5 if n < 5000 else 1.5)
    alpha = 0.85 if n < 500 else (0.5 if n < 5000 else 0.25)
    import numpy as np

    for st, col in colors.items():
        p = np.asarray([(x, y) for x, y, s in pts if s == st], dtype=np.float64).reshape(-1, 2)
        if len(p):
            ax.scatter(p[:, 0], p[:, 1], s=size, c=col, alpha=alpha, lw=0,
                       label=f"{STATUS_LABEL.get(st, st)} ({len(p)})", rasterized=True)


def _plots(entries: list[list], level1: list[dict]) -> list[tuple[str, str | None, str]]:
    """(title, PNG data URI or None, caption) for each across-entry plot."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    try:
        from ..analyses.background import MAX_RATIO
        from ..analyses.bfactor import B_MAX, B_MIN
        from ..analyses.hand import FLIPPED, UNCERTAIN
    except ImportError:  # pragma: no cover
        MAX_RATIO, B_MIN, B_MAX, FLIPPED, UNCERTAIN = 20.0, -300.0, 0.0, 0.5, 0.4
    ix = {c: i for i, c in enumerate(COLS)}
    colors = _status_colors()
    out = []

    def xy(col, sid):
        return [(e[ix["R"]], e[ix[col]], (e[ix["sections"]] or {}).get(sid)) for e in entries
                if e[ix["R"]] is not None and e[ix[col]] is not None]
    n_done = sum(e[ix["status"]] == "done" for e in entries)

    # global B-factor against R
    pts = xy("B", "0.d")
    title = "Global B-factor (0.d) against the reported resolution"
    if pts:
        fig, ax = plt.subplots(figsize=(5.6, 3.8), layout="constrained")
        _scatter(ax, pts, colors, len(pts))
        ax.axhspan(B_MIN, B_MAX, color="#1a7f37", alpha=0.07, lw=0)
        ax.set_xlabel("reported resolution R (Å)")
        ax.set_ylabel("B-factor (Å²)")
        _legend(ax)
        ax.grid(alpha=0.3)
        out.append((title, _png(fig), f"{len(pts)} of {n_done} finished entries have a measured B-factor and "
                    f"a reported R; colour: 0.d status; shaded: the accepted range [{B_MIN:g}, {B_MAX:g}] Å²."))
    else:
        out.append((title, None, "No finished entry has both a measured B-factor and a reported resolution."))

    # local-resolution median against R
    pts = xy("locres", "0.e")
    title = "Median local resolution (0.e) against the reported resolution"
    if pts:
        fig, ax = plt.subplots(figsize=(5.6, 3.8), layout="constrained")
        _scatter(ax, pts, colors, len(pts))
        lo = min(min(p[0] for p in pts), min(p[1] for p in pts))
        hi = max(max(p[0] for p in pts), max(p[1] for p in pts))
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, ls="--", label="median = R")
        ax.set_xlabel("reported resolution R (Å)")
        ax.set_ylabel("median local resolution (Å)")
        _legend(ax)
        ax.grid(alpha=0.3)
        out.append((title, _png(fig), f"{len(pts)} of {n_done} finished entries; colour: 0.e status; dashed: "
                    "median equal to R."))
    else:
        out.append((title, None, "No finished entry has both a measured local resolution and a reported R."))

    # 0.c outlier ratio
    vals = [e[ix["outlier"]] for e in entries if e[ix["outlier"]] is not None]
    title = "Background outlier ratio (0.c)"
    if vals:
        zero = sum(v <= 0 for v in vals)
        pos = [math.log10(v) for v in vals if v > 0]
        fig, ax = plt.subplots(figsize=(5.6, 3.8), layout="constrained")
        if pos:
            ax.hist(pos, bins=min(60, max(8, int(math.sqrt(len(pos))))), color="#0969da", alpha=0.8)
        ax.axvline(math.log10(MAX_RATIO), color="#b42318", ls="--", lw=1, label=f"warning above {MAX_RATIO:g}")
        ax.set_xlabel("log10(fraction beyond 5σ / Gaussian expectation)")
        ax.set_ylabel("entries")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        out.append((title, _png(fig), f"{len(vals)} entries with a measured ratio"
                    + (f"; {zero} with no background voxel beyond 5σ (ratio 0, not drawn)" if zero else "")
                    + f"; {sum(v > MAX_RATIO for v in vals)} above {MAX_RATIO:g}."))
    else:
        out.append((title, None, "No finished entry has a measured background outlier ratio."))

    # hand score
    vals = [e[ix["hand"]] for e in entries if e[ix["hand"]] is not None]
    title = "Hand score (0.h)"
    if vals:
        fig, ax = plt.subplots(figsize=(5.6, 3.8), layout="constrained")
        ax.hist(vals, bins=[i / 40 for i in range(41)], color="#8250df", alpha=0.8)
        ax.axvline(UNCERTAIN, color="#d4a72c", ls="--", lw=1, label=f"uncertain above {UNCERTAIN:g}")
        ax.axvline(FLIPPED, color="#b42318", ls="--", lw=1, label=f"mirrored above {FLIPPED:g}")
        ax.set_xlim(0, 1)
        ax.set_xlabel("hand score (0 correct, 1 mirrored)")
        ax.set_ylabel("entries")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        out.append((title, _png(fig), f"{len(vals)} entries with a hand score; "
                    f"{sum(v > FLIPPED for v in vals)} above {FLIPPED:g}."))
    else:
        out.append((title, None, "No entry has a hand score (it needs R ≤ 5 Å and a measurable map)."))

    # Level 1 estimates against R
    title = "Level 1 resolution estimates (1.a) against the reported resolution"
    have = [(e[ix["R"]], l1) for e, l1 in zip(entries, level1, strict=True) if l1 and e[ix["R"]] is not None]
    if have:
        fig, ax = plt.subplots(figsize=(5.6, 3.8), layout="constrained")
        marks = {"fsc_0143_A": ("o", "#0969da"), "fsc_0143_masked_A": ("s", "#1a7f37"),
                 "dpr_45_A": ("^", "#d4a72c"), "ssnr_1_A": ("v", "#8250df")}
        size = 14 if len(have) < 500 else (5 if len(have) < 5000 else 1.5)
        for key, label in LEVEL1_KEYS:
            p = np.asarray([(R, l1[key]) for R, l1 in have if key in l1], dtype=np.float64).reshape(-1, 2)
            if len(p):
                m, c = marks[key]
                ax.scatter(p[:, 0], p[:, 1], s=size, marker=m, c=c, alpha=0.6, lw=0,
                           label=f"{label} ({len(p)})", rasterized=True)
        lo = min(R for R, _ in have)
        hi = max(R for R, _ in have)
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, ls="--", label="estimate = R")
        ax.set_xlabel("reported resolution R (Å)")
        ax.set_ylabel("estimate (Å)")
        _legend(ax)
        ax.grid(alpha=0.3)
        out.append((title, _png(fig), f"{len(have)} entries validated with half maps."))
    else:
        out.append((title, None, "No entry in this batch has Level 1 results (half maps)."))
    return out


# ---- page ----------------------------------------------------------------------------------------
def _norm_reason(text: str) -> str:
    """Replace the numbers of a reason or warning by '#', to group them by kind.

    A leading section id such as ``0.c:`` is kept.
    """
    text = (text or "").strip()
    m = re.match(r"^(\d+(?:\.[a-z]+)?: )", text)
    head = m.group(1) if m else ""
    return head + NUM.sub("#", text[len(head):]).strip()


def _esc(s) -> str:
    return _html.escape("" if s is None else str(s))


def _counts_table(entries, titles: dict) -> str:
    ix = {c: i for i, c in enumerate(COLS)}
    counts: dict[str, Counter] = {}
    for e in entries:
        for sid, st in (e[ix["sections"]] or {}).items():
            counts.setdefault(sid, Counter())[st] += 1
    if not counts:
        return "<p>No finished entry: no section results to count.</p>"
    head = "".join(f'<th class="st-{s}">{_esc(STATUS_LABEL[s])}</th>' for s in STATUSES)
    rows = []
    for sid in sorted(counts, key=_sec_key):
        c = counts[sid]
        total = sum(c.values()) or 1
        cells = "".join(f'<td class="n">{c.get(s, 0) or ""}</td>' for s in STATUSES)
        bar = "".join(f'<span class="b-{s}" style="width:{100.0 * c.get(s, 0) / total:.2f}%" '
                      f'title="{_esc(STATUS_LABEL[s])}: {c.get(s, 0)}"></span>' for s in STATUSES if c.get(s))
        rows.append(f'<tr><td><b>{_esc(sid)}</b> {_esc(titles.get(sid, ""))}</td>{cells}'
                    f'<td class="barcell"><div class="bar">{bar}</div></td></tr>')
    return (f'<table class="counts"><thead><tr><th>section</th>{head}<th>share</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _warning_kinds(entries, limit: int = 20) -> str:
    ix = COLS.index("warnings")
    c = Counter()
    for e in entries:
        for w in set(_norm_reason(w) for w in e[ix] or []):
            c[w] += 1
    if not c:
        return "<p>No warning in any entry.</p>"
    items = "".join(f"<tr><td class='n'>{n}</td><td>{_esc(w)}</td></tr>" for w, n in c.most_common(limit))
    more = f"<p class='muted'>{len(c) - limit} more kinds.</p>" if len(c) > limit else ""
    return (f"<table class='kinds'><thead><tr><th>entries</th><th>warning (numbers shown as #)</th></tr></thead>"
            f"<tbody>{items}</tbody></table>{more}")


def _failures(entries, limit: int = 2000) -> str:
    ix = {c: i for i, c in enumerate(COLS)}
    failed = [e for e in entries if e[ix["status"]] != "done"]
    if not failed:
        return "<p>No failure.</p>"
    kinds = Counter(_norm_reason(e[ix["reason"]] or "no reason recorded") for e in failed)
    parts = [f"<p><b>{len(failed)}</b> entr{'y' if len(failed) == 1 else 'ies'} failed.</p>"]
    if len(kinds) < len(failed):
        parts.append("<table class='kinds'><thead><tr><th>entries</th><th>reason (numbers shown as #)</th>"
                     "</tr></thead><tbody>" + "".join(f"<tr><td class='n'>{n}</td><td>{_esc(k)}</td></tr>"
                                                      for k, n in kinds.most_common(30)) + "</tbody></table>")
    rows = []
    for e in sorted(failed, key=lambda e: str(e[ix["id"]]))[:limit]:
        link = f'<a href="{_esc(e[ix["href"]])}">{_esc(e[ix["id"]])}</a>' if e[ix["href"]] else _esc(e[ix["id"]])
        rows.append(f"<tr><td>{link}</td><td>{_esc(e[ix['reason']] or 'no reason recorded')}</td></tr>")
    parts.append("<table class='fails'><thead><tr><th>entry</th><th>reason</th></tr></thead><tbody>"
                 + "".join(rows) + "</tbody></table>")
    if len(failed) > limit:
        parts.append(f"<p class='muted'>{len(failed) - limit} more: filter the table by status “failed”.</p>")
    return "".join(parts)


def _json_for_script(obj) -> str:
    """JSON safe inside a ``<script>`` element ('<' escaped, so no ``</script>`` or ``<!--``)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def render_dashboard(entries: list[list], level1: list[dict] | None = None, *, title: str = "gpuvalid archive "
                     "dashboard", source: str = "", titles: dict | None = None, figures: bool = True) -> str:
    """Return the dashboard page of ``entries`` (arrays of :data:`COLS`) as one HTML document."""
    from .. import __version__

    level1 = level1 if level1 is not None else [{} for _ in entries]
    ix = {c: i for i, c in enumerate(COLS)}
    titles = dict(titles or {})
    sids = sorted({sid for e in entries for sid in (e[ix["sections"]] or {})}, key=_sec_key)
    rows = []
    for e in entries:  # the sections become one code character each, in the order of `sids`
        e = list(e)
        st = e[ix["sections"]] or {}
        e[ix["sections"]] = "".join(STATUS_CODE.get(st.get(s), " ") for s in sids)
        rows.append(e)
    data = {"cols": list(COLS), "sections": sids, "titles": {s: titles.get(s, "") for s in sids},
            "codes": {v: k for k, v in STATUS_CODE.items()}, "labels": STATUS_LABEL, "rows": rows}
    n, done = len(entries), sum(e[ix["status"]] == "done" for e in entries)
    failed = n - done
    warned = sum(bool(e[ix["warnings"]]) for e in entries)
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    plots = _plots(entries, level1) if figures else []
    figs = "".join(
        (f'<figure><img src="{uri}" alt="{_esc(t)}"><figcaption><b>{_esc(t)}.</b> {_esc(c)}</figcaption></figure>'
         if uri else f'<figure class="empty"><div>{_esc(c)}</div><figcaption><b>{_esc(t)}.</b></figcaption></figure>')
        for t, uri, c in plots)
    stats = (f'<div class="stats"><div><b>{n}</b>entries</div><div class="st-ok"><b>{done}</b>finished</div>'
             f'<div class="st-not_measured"><b>{failed}</b>failed</div>'
             f'<div class="st-warnings"><b>{warned}</b>with warnings</div></div>')
    page = PAGE.format(
        title=_esc(title), csp=CSP, css=CSS, js=JS, version=_esc(__version__), when=when,
        source=_esc(source), stats=stats, counts=_counts_table(entries, titles),
        figures=figs or "<p class='muted'>Plots were not drawn (--no-figures).</p>",
        kinds=_warning_kinds(entries), failures=_failures(entries), data=_json_for_script(data))
    return page


def section_titles(entries_dirs) -> dict:
    """Return the section titles from the first readable ``results.json`` among ``entries_dirs``.

    A hand-edited or foreign file whose ``sections`` is not a mapping of mappings is skipped.
    """
    for d in entries_dirs:
        try:
            secs = json.loads((Path(d) / "results.json").read_text(encoding="utf-8")).get("sections")
        except (OSError, ValueError, AttributeError):
            continue
        if not isinstance(secs, dict) or not secs:
            continue
        return {sid: s.get("title", "") if isinstance(s, dict) else "" for sid, s in secs.items()}
    return {}


def write_dashboard(rows: list[dict], out_dir: str | Path, path: str | Path | None = None,
                    figures: bool = True) -> Path:
    """Write the dashboard of a batch folder (``path``, default ``OUT/index.html``) atomically."""
    from ..report.files import atomic_write_text

    out = Path(out_dir)
    path = Path(path) if path is not None else out / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    entries, level1 = collect_entries(rows, out, path.parent)
    dirs = [Path(r.get("out_dir") or out / str(r.get("emdb_id"))) for r in rows if r.get("status") == "done"]
    html = render_dashboard(entries, level1, source=str(out), titles=section_titles(dirs[:20]), figures=figures)
    return atomic_write_text(path, html)


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="gpuvalid {version}">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header><h1>{title}</h1>
<p class="muted">Batch folder <code>{source}</code>; generated by gpuvalid {version}, {when}.
<a href="#entries">Entries</a> · <a href="#failures">Failures</a></p>
{stats}</header>
<section id="counts"><h2>Status by section</h2>{counts}</section>
<section id="plots"><h2>Across entries</h2><div class="figs">{figures}</div></section>
<section id="warning-kinds"><h2>Most frequent warnings</h2>{kinds}</section>
<section id="entries"><h2>Entries</h2>
<noscript><p class="muted">The entry table needs JavaScript; everything else on this page does not.</p></noscript>
<div class="controls">
<input id="q" type="search" placeholder="filter: id, reason or warning text" size="34">
<select id="fstatus"><option value="">all statuses</option><option value="done">finished</option>
<option value="failed">failed</option></select>
<select id="fsec"><option value="">any section</option></select>
<select id="fsecst"><option value="">any status</option></select>
<label><input id="fwarn" type="checkbox"> with warnings only</label>
<select id="psize"><option>50</option><option selected>100</option><option>500</option></select>
<span id="info" class="muted"></span>
<button id="prev" type="button">◀ prev</button><button id="next" type="button">next ▶</button>
</div>
<div class="tablewrap"><table id="tab"><thead><tr id="thead"></tr></thead><tbody id="tbody"></tbody></table></div>
</section>
<section id="failures"><h2>Failures</h2>{failures}</section>
<script type="application/json" id="data">{data}</script>
<script>{js}</script>
</body>
</html>
"""

CSS = """
:root { --ok:#1a7f37; --warn:#9a6700; --bad:#b42318; --na:#57606a; --line:#d0d7de; --muted:#57606a; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1400px; padding: 1rem 1.5rem 3rem; color: #1f2328;
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Roboto, sans-serif; }
h1 { font-size: 1.6rem; margin: .3rem 0; } h2 { font-size: 1.25rem; border-bottom: 1px solid var(--line);
     padding-bottom: .25rem; margin: 1.6rem 0 .7rem; }
.muted { color: var(--muted); } a { color: #0969da; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .9em; background: #f6f8fa;
       padding: 0 .3em; border-radius: 3px; }
.stats { display: flex; gap: .8rem; flex-wrap: wrap; margin: .6rem 0; }
.stats div { border: 1px solid var(--line); border-radius: 6px; padding: .4rem .9rem; min-width: 8rem; }
.stats b { display: block; font-size: 1.5rem; }
.stats .st-ok b { color: var(--ok); } .stats .st-not_measured b { color: var(--bad); }
.stats .st-warnings b { color: var(--warn); }
table { border-collapse: collapse; font-size: .9rem; }
th, td { border: 1px solid var(--line); padding: .25rem .5rem; text-align: left; vertical-align: top; }
thead th { background: #f6f8fa; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
table.counts th.st-ok { color: var(--ok); } table.counts th.st-warnings { color: var(--warn); }
table.counts th.st-not_measured { color: var(--bad); }
table.counts th.st-not_applicable, table.counts th.st-not_implemented { color: var(--na); }
.barcell { width: 260px; vertical-align: middle; }
.bar { display: flex; height: .9rem; width: 250px; border-radius: 3px; overflow: hidden; background: #eef1f4; }
.bar span { display: block; height: 100%; }
.b-ok, .d-o { background: #2da44e; } .b-warnings, .d-w { background: #d4a72c; }
.b-not_measured, .d-x { background: #cf222e; } .b-not_applicable, .d-- { background: #afb8c1; }
.b-not_implemented, .d-\\. { background: #d8dee4; }
.figs { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 1rem; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: .5rem; break-inside: avoid; }
figure img { width: 100%; height: auto; display: block; }
figure.empty div { min-height: 6rem; display: flex; align-items: center; justify-content: center;
                   color: var(--muted); background: #f6f8fa; border-radius: 4px; padding: 1rem; }
figcaption { font-size: .85rem; color: var(--muted); margin-top: .3rem; }
.controls { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; margin-bottom: .6rem; }
.controls input, .controls select, .controls button { font: inherit; padding: .2rem .4rem; }
.controls select { max-width: 16rem; }
.tablewrap { overflow-x: auto; }
#tab th { cursor: pointer; user-select: none; vertical-align: bottom; }
#tab th.asc::after { content: " ▲"; } #tab th.desc::after { content: " ▼"; }
#tab td { white-space: nowrap; } #tab td.w { white-space: normal; min-width: 22rem; }
#tab td.num { text-align: right; font-variant-numeric: tabular-nums; }
#tab tr.failed td { background: #fff5f5; }
.dots { white-space: nowrap; font-size: 0; }
.dot { display: inline-block; width: .8rem; height: .8rem; margin-right: 2px; border-radius: 50%;
       font-size: 14px; }
.sd { font-weight: 600; } .sd.done { color: var(--ok); } .sd.failed { color: var(--bad); }
details summary { cursor: pointer; } details ul { margin: .2rem 0 .2rem 1.1rem; padding: 0; }
@media print { .controls, noscript { display: none; } body { max-width: none; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; } }
"""

JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("data").textContent);
  var C = {}; D.cols.forEach(function (c, i) { C[c] = i; });
  var rows = D.rows, view = rows.slice(), page = 0, sortKey = null, sortDir = 1, search = null;
  var cols = [
    ["id", "entry"], ["status", "status"], ["score", "score"], ["R", "R (Å)"], ["B", "B (Å²)"],
    ["locres", "0.e median (Å)"], ["outlier", "0.c outlier ratio"], ["hand", "hand score"],
    ["fsc", "1.a FSC 0.143 (Å)"], ["sections", "sections"], ["warnings", "warnings / reason"]];
  function esc(s) { return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
    return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]; }); }
  function fmt(v) { if (v == null) return ""; var a = Math.abs(v);
    return (a !== 0 && (a >= 1e5 || a < 1e-2)) ? v.toExponential(2) : String(+v.toPrecision(4)); }
  function key(r, k) {
    if (k === "score") return r[C.evaluable] ? r[C.passed] / r[C.evaluable] : null;
    if (k === "warnings") return r[C.warnings] ? r[C.warnings].length : 0;
    return r[C[k]];
  }
  var head = document.getElementById("thead");
  cols.forEach(function (c) {
    var th = document.createElement("th"); th.textContent = c[1]; th.dataset.k = c[0];
    if (c[0] === "sections") th.title = D.sections.join(" ");
    th.addEventListener("click", function () {
      if (sortKey === c[0]) sortDir = -sortDir; else { sortKey = c[0]; sortDir = 1; }
      Array.prototype.forEach.call(head.children, function (h) { h.className = ""; });
      th.className = sortDir > 0 ? "asc" : "desc"; sortView(); page = 0; draw(); });
    head.appendChild(th);
  });
  var fsec = document.getElementById("fsec"), fsecst = document.getElementById("fsecst");
  D.sections.forEach(function (s) { var o = document.createElement("option"); o.value = s;
    o.textContent = s + " " + (D.titles[s] || ""); fsec.appendChild(o); });
  Object.keys(D.codes).forEach(function (c) { var o = document.createElement("option"); o.value = c;
    o.textContent = D.labels[D.codes[c]] || D.codes[c]; fsecst.appendChild(o); });
  function sortView() {
    if (!sortKey) return;
    view.sort(function (a, b) {
      var x = key(a, sortKey), y = key(b, sortKey);
      if (x == null && y == null) return 0; if (x == null) return 1; if (y == null) return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * sortDir; });
  }
  function text(r) { return (String(r[C.id]) + " " + (r[C.reason] || "") + " " +
                             (r[C.warnings] || []).join(" ")).toLowerCase(); }
  function filter() {
    var q = document.getElementById("q").value.trim().toLowerCase();
    var st = document.getElementById("fstatus").value, w = document.getElementById("fwarn").checked;
    var si = D.sections.indexOf(fsec.value), sc = fsecst.value;
    if (q && !search) search = rows.map(text);
    view = [];
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      if (st && r[C.status] !== st) continue;
      if (w && !(r[C.warnings] && r[C.warnings].length)) continue;
      if (si >= 0 && sc ? r[C.sections].charAt(si) !== sc : si >= 0 ? r[C.sections].charAt(si) === " " : sc
          ? r[C.sections].indexOf(sc) < 0 : false) continue;
      if (q && search[i].indexOf(q) < 0) continue;
      view.push(r);
    }
    sortView(); page = 0; draw();
  }
  function dots(s) {
    var h = "";
    for (var i = 0; i < s.length; i++) { var c = s.charAt(i); if (c === " ") continue;
      h += '<span class="dot d-' + c + '" title="' + esc(D.sections[i] + " " + (D.titles[D.sections[i]] || "") +
           ": " + (D.labels[D.codes[c]] || "")) + '"></span>'; }
    return '<span class="dots">' + h + "</span>";
  }
  function cell(r) {
    var ws = r[C.warnings] || [];
    if (r[C.status] !== "done") return esc(r[C.reason] || "no reason recorded");
    if (!ws.length) return "";
    if (ws.length === 1) return esc(ws[0]);
    return "<details><summary>" + ws.length + " warnings: " + esc(ws[0]) + "</summary><ul>" +
      ws.slice(1).map(function (w) { return "<li>" + esc(w) + "</li>"; }).join("") + "</ul></details>";
  }
  function draw() {
    var n = +document.getElementById("psize").value, pages = Math.max(1, Math.ceil(view.length / n));
    if (page >= pages) page = pages - 1; if (page < 0) page = 0;
    var a = page * n, b = Math.min(view.length, a + n), h = [];
    for (var i = a; i < b; i++) {
      var r = view[i], id = esc(r[C.id]);
      h.push("<tr" + (r[C.status] !== "done" ? ' class="failed"' : "") + "><td>" +
        (r[C.href] ? '<a href="' + esc(r[C.href]) + '">' + id + "</a>" : id) + "</td>" +
        '<td class="sd ' + esc(r[C.status]) + '">' + (r[C.status] === "done" ? "finished" : esc(r[C.status])) +
        "</td><td class=num>" + (r[C.evaluable] != null ? r[C.passed] + "/" + r[C.evaluable] : "") + "</td>" +
        ["R", "B", "locres", "outlier", "hand", "fsc"].map(function (k) {
          var v = r[C[k]];  // the hand score is a probability: three decimals
          return "<td class=num>" + (k === "hand" && v != null ? v.toFixed(3) : fmt(v)) + "</td>"; }).join("") +
        "<td>" + dots(r[C.sections] || "") + '</td><td class="w">' + cell(r) + "</td></tr>");
    }
    document.getElementById("tbody").innerHTML = h.join("");
    document.getElementById("info").textContent = view.length ? (a + 1) + "–" + b + " of " + view.length +
      (view.length !== rows.length ? " (filtered from " + rows.length + ")" : "") + ", page " + (page + 1) +
      "/" + pages : "no entry matches";
  }
  var timer = null;
  document.getElementById("q").addEventListener("input", function () {
    clearTimeout(timer); timer = setTimeout(filter, 200); });
  ["fstatus", "fsec", "fsecst", "fwarn"].forEach(function (id) {
    document.getElementById(id).addEventListener("change", filter); });
  document.getElementById("psize").addEventListener("change", function () { page = 0; draw(); });
  document.getElementById("prev").addEventListener("click", function () { page--; draw(); });
  document.getElementById("next").addEventListener("click", function () { page++; draw(); });
  draw();
  document.body.setAttribute("data-rendered-ms", Math.round(performance.now()));
  if (location.hash === "#bench") {  // bench/bench_dashboard.py: a text filter, a sort of all entries, a
    var t = [performance.now()], qi = document.getElementById("q");  // section filter, timed in the page
    qi.value = "emd-1"; filter(); t.push(performance.now());
    qi.value = ""; filter(); t.push(performance.now());
    head.children[4].click(); t.push(performance.now());
    fsec.value = D.sections[3] || ""; fsecst.value = "w"; filter(); t.push(performance.now());
    document.body.setAttribute("data-bench", JSON.stringify({filter_ms: t[1] - t[0], sort_ms: t[3] - t[2],
      section_filter_ms: t[4] - t[3], shown: view.length, rows: rows.length}));
    document.getElementById("data").remove();  // keep the dumped DOM small
  }
})();
"""
