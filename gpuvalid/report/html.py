"""``report.html``: the Markdown report rendered as one self-contained page.

The page is rendered from the very text of ``report.md`` by markdown-it-py (CommonMark + tables, raw HTML
in the text escaped), then the token stream is adjusted: each part (summary, input data, one per section)
becomes a ``<section>`` with an anchor, the summary table's rows link to their sections, statuses are
coloured, and every figure is embedded as a base64 ``data:`` URI inside ``<figure>`` with its caption.
No JavaScript, no external resource (a Content-Security-Policy forbids any fetch), and a print
stylesheet so that "print to PDF" gives a report that can be filed.
"""

from __future__ import annotations

import base64
import html as _html
import re
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
        ".gif": "image/gif", ".webp": "image/webp"}

STATUS_CLASSES = ("ok", "warnings", "not_measured", "not_applicable", "not_implemented")

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
:root { --ok:#1a7f37; --ok-bg:#dafbe1; --warn:#9a6700; --warn-bg:#fff3c4; --bad:#b42318; --bad-bg:#ffe4e1;
        --na:#57606a; --na-bg:#eef1f4; --line:#d0d7de; --text:#1f2328; --muted:#57606a; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0 auto; max-width: 1100px; padding: 1.5rem 2rem 4rem; color: var(--text);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Roboto, sans-serif; }
h1 { font-size: 1.7rem; margin: .2rem 0 .6rem; }
h2 { font-size: 1.35rem; margin: 0 0 .6rem; padding-bottom: .3rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.08rem; margin: 1.2rem 0 .4rem; }
section { margin: 1.6rem 0; padding: .9rem 1.1rem; border: 1px solid var(--line); border-left-width: 6px;
          border-radius: 6px; }
section.s-ok { border-left-color: var(--ok); }
section.s-warnings { border-left-color: #d4a72c; }
section.s-not_measured { border-left-color: var(--bad); }
section.s-not_applicable, section.s-not_implemented { border-left-color: #afb8c1; }
section.part { border-left-color: #0969da; }
a { color: #0969da; }
a.top { float: right; font-size: .8rem; font-weight: normal; text-decoration: none; color: var(--muted); }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .88em; background: #f6f8fa;
       padding: .05em .3em; border-radius: 4px; word-break: break-all; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .92rem; max-width: 100%; display: block;
        overflow-x: auto; }
th, td { border: 1px solid var(--line); padding: .3rem .55rem; vertical-align: top; }
thead th { background: #f6f8fa; text-align: left; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
table.summary td:first-child { white-space: nowrap; }
table.summary td:first-child a { font-weight: 600; text-decoration: none; }
.dot { display: inline-block; width: .7em; height: .7em; border-radius: 50%; margin-right: .45em;
       vertical-align: baseline; border: 2px solid currentColor; }
.dot.st-ok { background: var(--ok) !important; }
.dot.st-warnings { background: #d4a72c !important; color: #d4a72c; }
.dot.st-not_measured { background: var(--bad) !important; }
.dot.st-not_applicable, .dot.st-not_implemented { background: #afb8c1 !important; color: #afb8c1; }
td.st { vertical-align: middle; }
.st { font-weight: 600; border-radius: 4px; padding: .05em .4em; white-space: nowrap; }
td.st { white-space: normal; }
.st-ok { color: var(--ok); background: var(--ok-bg) !important; }
.st-warnings { color: var(--warn); background: var(--warn-bg) !important; }
.st-not_measured { color: var(--bad); background: var(--bad-bg) !important; }
.st-not_applicable, .st-not_implemented { color: var(--na); background: var(--na-bg) !important; }
ul li { margin: .15rem 0; }
section.s-warnings li { }
figure { margin: 1rem 0; text-align: center; break-inside: avoid; page-break-inside: avoid; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { font-size: .88rem; color: var(--muted); margin-top: .3rem; text-align: left; }
figure.missing { padding: 1rem; background: var(--bad-bg); color: var(--bad); }
p.meta { color: var(--muted); }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  section { border: none; border-top: 1px solid var(--line); border-radius: 0; padding: .4rem 0; margin: .8rem 0; }
  section.sec { break-before: page; page-break-before: always; }
  a { color: inherit; text-decoration: none; }
  a.top { display: none; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
  table, tr, li { break-inside: avoid; page-break-inside: avoid; }
  table { display: table; overflow: visible; }
  figure img { max-height: 230mm; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def _slug(sid: str) -> str:
    return "sec-" + re.sub(r"[^A-Za-z0-9]+", "-", sid).strip("-")


def _inline_text(tok: Token) -> str:
    return "".join(c.content for c in (tok.children or []) if c.type in ("text", "code_inline")).strip()


def _section_of(heading: str, sections: dict) -> str | None:
    """Return the section id a ``## <id> <title>`` heading names (longest id first), or None."""
    for sid in sorted(sections, key=len, reverse=True):
        if heading == sid or heading.startswith(sid + " "):
            return sid
    return None


def _data_uri(out_dir: Path | None, src: str) -> str | None:
    """``src`` (relative to the report folder, inside it) as a base64 data URI, or None when unreadable."""
    if out_dir is None or re.match(r"^[a-z][a-z0-9+.-]*:", src, re.I) or src.startswith("/"):
        return None
    root = Path(out_dir).resolve()
    path = (root / src).resolve()
    if root not in path.parents or path.suffix.lower() not in MIME:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return f"data:{MIME[path.suffix.lower()]};base64,{base64.b64encode(data).decode('ascii')}"


def _html_block(content: str) -> Token:
    t = Token("html_block", "", 0)
    t.content = content
    return t


def _figure(md: MarkdownIt, img: Token, caption_tok: Token | None, out_dir) -> Token:
    src = img.attrGet("src") or ""
    alt = img.content or "".join(c.content for c in (img.children or []))
    caption = md.renderer.renderInline(caption_tok.children[1:-1], md.options, {}) if caption_tok is not None \
        else _html.escape(alt)  # the caption paragraph "*…*" without its emphasis
    uri = _data_uri(out_dir, src)
    if uri is None:
        return _html_block(f'<figure class="missing"><p>Figure not available: <code>{_html.escape(src)}</code>'
                           f'</p><figcaption>{caption}</figcaption></figure>\n')
    return _html_block(f'<figure><img src="{uri}" alt="{_html.escape(alt)}">'
                       f'<figcaption>{caption}</figcaption></figure>\n')


def _is_lone_image(tokens, i) -> bool:
    return (i + 2 < len(tokens) and tokens[i].type == "paragraph_open" and tokens[i + 1].type == "inline"
            and tokens[i + 2].type == "paragraph_close"
            and [c.type for c in tokens[i + 1].children or [] if not (c.type == "text" and not c.content.strip())]
            == ["image"])


def _is_caption(tokens, i) -> bool:
    if not (i + 2 < len(tokens) and tokens[i].type == "paragraph_open" and tokens[i + 1].type == "inline"
            and tokens[i + 2].type == "paragraph_close"):
        return False
    ch = tokens[i + 1].children or []
    return len(ch) >= 3 and ch[0].type == "em_open" and ch[-1].type == "em_close"


def _status_dot(inline: Token, sid: str, status: str) -> None:
    """Replace the Markdown's status emoji before the section id by a coloured dot.

    Emoji fonts are often missing in print and on servers; the cell becomes ``● <sid>``.
    """
    dot = Token("html_inline", "", 0)
    dot.content = f'<span class="dot st-{status}" title="{status.replace("_", " ")}"></span>'
    text = Token("text", "", 0)
    text.content = sid
    inline.children = [dot, text]


def _drop_empty_theads(tokens: list[Token]) -> list[Token]:
    """Tables whose header cells are all empty (key/value tables) lose their header row."""
    out, i = [], 0
    while i < len(tokens):
        if tokens[i].type == "thead_open":
            j = i
            while tokens[j].type != "thead_close":
                j += 1
            if all(not _inline_text(t) for t in tokens[i:j] if t.type == "inline"):
                i = j + 1
                continue
        out.append(tokens[i])
        i += 1
    return out


def _link_row_cell(inline: Token, href: str) -> None:
    a_open = Token("link_open", "a", 1)
    a_open.attrSet("href", href)
    inline.children = [a_open] + list(inline.children or []) + [Token("link_close", "a", -1)]


def render_html(report, markdown_text: str, out_dir=None) -> str:
    """Render the HTML page of ``markdown_text`` (the ``report.md`` of ``report``); figures read from ``out_dir``."""
    sections = dict(getattr(report, "sections", {}) or {})
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")
    tokens = _drop_empty_theads(md.parse(markdown_text))
    out: list[Token] = []
    open_section = False
    current: str | None = None  # section id of the part being rendered
    part = None
    title = "Validation report"
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.type == "heading_open" and t.tag == "h1":
            title = _inline_text(tokens[i + 1]) or title
        if t.type == "heading_open" and t.tag == "h2":
            text = _inline_text(tokens[i + 1])
            current = _section_of(text, sections)
            part = "summary" if text.lower().startswith("summary") else ("input" if current is None and
                                                                          text.lower().startswith("input") else None)
            anchor = _slug(current) if current else (part or "part-" + re.sub(r"[^a-z0-9]+", "-", text.lower()))
            cls = f"sec s-{sections[current].status}" if current else "part"
            if open_section:
                out.append(_html_block("</section>\n"))
            out.append(_html_block(f'<section id="{anchor}" class="{cls}">\n'))
            open_section = True
            out.append(t)
            out.append(tokens[i + 1])
            if part != "summary":
                top = Token("html_inline", "", 0)
                top.content = '<a class="top" href="#summary">↑ summary</a>'
                tokens[i + 1].children = list(tokens[i + 1].children or []) + [top]
            i += 2
            continue
        if t.type == "table_open" and part == "summary":
            # the summary table: rows link to their sections, the status cell is coloured
            t.attrSet("class", "summary")
            j = i
            while j < len(tokens) and tokens[j].type != "table_close":
                if tokens[j].type == "tr_open":
                    k = j + 1
                    cells = []
                    while tokens[k].type != "tr_close":
                        if tokens[k].type in ("td_open", "th_open"):
                            cells.append((tokens[k], tokens[k + 1]))
                        k += 1
                    sid = None
                    if cells and cells[0][0].type == "td_open":
                        first = _inline_text(cells[0][1])
                        sid = next((s for s in sorted(sections, key=len, reverse=True)
                                    if first == s or first.endswith(" " + s) or first.startswith(s + " ")), None)
                    if sid is not None:
                        st = sections[sid].status
                        tokens[j].attrSet("class", f"r-{st}")
                        _status_dot(cells[0][1], sid, st)
                        _link_row_cell(cells[0][1], f"#{_slug(sid)}")
                        for td, inl in cells[1:]:
                            if _inline_text(inl) == sections[sid].status_text:
                                td.attrSet("class", f"st st-{st}")
                    j = k
                j += 1
            out.append(t)
            i += 1
            continue
        if _is_lone_image(tokens, i):
            img = next(c for c in tokens[i + 1].children if c.type == "image")
            cap = None
            alt = img.content or ""
            if _is_caption(tokens, i + 3) and (not alt or _inline_text(tokens[i + 4]) == alt.strip()
                                               or not _is_lone_image(tokens, i + 3)):
                cap = tokens[i + 4]
                out.append(_figure(md, img, cap, out_dir))
                i += 6
            else:
                out.append(_figure(md, img, None, out_dir))
                i += 3
            continue
        if t.type == "inline" and current is not None:
            ch = t.children or []
            for a, b in zip(ch, ch[1:], strict=False):  # "**Status: …**" coloured by the section's status
                if a.type == "strong_open" and b.type == "text" and b.content.startswith("Status"):
                    a.attrSet("class", f"st st-{sections[current].status}")
        if t.type == "inline":  # any other image (inline in a paragraph): embedded too, or dropped
            for c in t.children or []:
                if c.type == "image":
                    uri = _data_uri(out_dir, c.attrGet("src") or "")
                    c.attrSet("src", uri or "data:,")
        out.append(t)
        i += 1
    if open_section:
        out.append(_html_block("</section>\n"))
    body = md.renderer.render(out, md.options, {})
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta name="generator" content="gpuvalid {_html.escape(str(getattr(report, "version", "")))}">\n'
            f"<title>{_html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}</body>\n</html>\n")


def write_html(report, out_dir, markdown_text: str | None = None) -> Path:
    """Write ``out_dir/report.html`` atomically (from ``markdown_text``, else a fresh ``render_markdown``)."""
    from .files import atomic_write_text
    from .markdown import render_markdown

    out_dir = Path(out_dir)
    text = render_markdown(report) if markdown_text is None else markdown_text
    return atomic_write_text(out_dir / "report.html", render_html(report, text, out_dir))
