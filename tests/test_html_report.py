"""report.html: one self-contained page rendered from report.md (figures embedded, no external resource,
every section anchored and linked from the summary, statuses coloured, no JavaScript); --format."""

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from gpuvalid.cli import app
from gpuvalid.report.html import render_html

runner = CliRunner()


class Page(HTMLParser):
    """Every start tag with its attributes, the text inside each element id, and the raw text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.stack: list[tuple[str, dict]] = []
        self.text_by_id: dict[str, list[str]] = {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag not in ("img", "meta", "br", "hr", "input", "link"):
            self.stack.append((tag, a))

    def handle_endtag(self, tag):
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break

    def handle_data(self, data):
        for _, a in self.stack:
            if "id" in a:
                self.text_by_id.setdefault(a["id"], []).append(data)

    def find(self, tag=None, **attrs):
        return [a for t, a in self.tags if (tag is None or t == tag)
                and all(a.get(k) == v for k, v in attrs.items())]


def external_refs(page: Page, html: str) -> list[str]:
    """Anything a browser would fetch: src/href/srcset/poster/data attributes that are not data: URIs or
    in-page anchors, <link>, <script src>, CSS url(...) and @import."""
    bad = []
    for tag, a in page.tags:
        for k in ("src", "srcset", "poster", "data", "action", "formaction", "background"):
            if k in a and not str(a[k]).startswith("data:"):
                bad.append(f"{tag} {k}={a[k]}")
        if tag == "link":
            bad.append(f"link {a}")
    bad += re.findall(r"url\(\s*['\"]?(?!data:)[^)]*\)", html)
    bad += re.findall(r"@import", html)
    return bad


@pytest.fixture(scope="module")
def crop_report(tmp_path_factory, data_dir):
    """The report of the 3.2 Å mitoribosome crop (all eight sections, figures on)."""
    out = tmp_path_factory.mktemp("html") / "crop"
    res = runner.invoke(app, ["run", str(data_dir / "emd_2566_crop_3j6b_chain9.mrc"), "-t", "0.2", "-r", "3.2",
                              "--device", "cpu", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_report_html_is_self_contained(crop_report):
    html = (crop_report / "report.html").read_text(encoding="utf-8")
    md = (crop_report / "report.md").read_text(encoding="utf-8")
    page = Page(html)
    assert html.startswith("<!DOCTYPE html>")
    assert not page.find("script"), "report.html must not need JavaScript"
    assert external_refs(page, html) == []
    csp = page.find("meta", **{"http-equiv": "Content-Security-Policy"})
    assert csp and "default-src 'none'" in csp[0]["content"]
    # every figure of report.md is embedded, byte for byte, with its caption
    figs = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", md)
    assert len(figs) >= 10
    imgs = page.find("img")
    assert len(imgs) == len(figs)
    for (caption, rel), img in zip(figs, imgs):
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1]) == (crop_report / rel).read_bytes()
        assert img["alt"] == caption
    assert html.count("<figure>") == len(figs) and html.count("<figcaption>") == len(figs)
    assert "Figure not available" not in html


def test_report_html_sections_statuses_and_links(crop_report):
    html = (crop_report / "report.html").read_text(encoding="utf-8")
    res = json.loads((crop_report / "results.json").read_text())
    page = Page(html)
    assert page.find("section", id="summary") and page.find("section", id="input")
    assert len(res["sections"]) == 16  # 0.a–0.h, and 1.a–1.h ("does not apply" without half maps)
    for sid, sec in res["sections"].items():
        anchor = "sec-" + sid.replace(".", "-")
        found = page.find("section", id=anchor)
        assert found, sid
        assert f"s-{sec['status']}" in found[0]["class"].split()
        heading = "".join(page.text_by_id[anchor])
        assert f"{sid} {sec['title']}" in heading
        assert page.find("a", href=f"#{anchor}"), f"summary does not link {sid}"
        # the status cell of the summary row and the section's own status line are coloured
        assert f'<td class="st st-{sec["status"]}">' in html
    statuses = {s["status"] for s in res["sections"].values()}
    assert statuses & {"ok", "warnings"}
    assert html.count('class="st st-') >= 2 * sum(s["status"] in ("ok", "warnings") for s in res["sections"].values())
    assert "@media print" in html and "@page" in html


def _fake_report(tmp_path, png: bytes | None):
    sec = SimpleNamespace(status="warnings", status_text="1 warning(s)")
    na = SimpleNamespace(status="not_applicable", status_text="does not apply")
    md = ("# Validation report: <script>alert(1)</script>.map\n\n## Summary\n\n"
          "| section | analysis | status | key result |\n|---|---|---|---|\n"
          "| ⚠️ 9.z | Test | 1 warning(s) | x |\n| ➖ 9.y | Other | does not apply | n/a |\n\n"
          "## 9.z Test\n\n![A plot](figures/a.png)\n\n*A plot of something (Å).*\n\n"
          "![Missing one](figures/missing.png)\n\n*Missing one.*\n\n"
          "![Outside](../secret.png)\n\n**Status: 1 warning(s).**\n\n"
          "## 9.y Other\n\n**Status: does not apply.** No.\n")
    (tmp_path / "figures").mkdir(exist_ok=True)
    if png is not None:
        (tmp_path / "figures" / "a.png").write_bytes(png)
    (tmp_path.parent / "secret.png").write_bytes(b"\x89PNG secret")
    return SimpleNamespace(sections={"9.z": sec, "9.y": na}, version="test"), md


def test_render_html_unit(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    (tmp_path / "r").mkdir()
    rep, md = _fake_report(tmp_path / "r", png)
    html = render_html(rep, md, tmp_path / "r")
    page = Page(html)
    assert "<script>" not in html and "&lt;script&gt;" in html  # raw HTML in the text is escaped
    imgs = page.find("img")
    assert len(imgs) == 1 and base64.b64decode(imgs[0]["src"].split(",", 1)[1]) == png
    assert "<figcaption>A plot of something (Å).</figcaption>" in html
    # a missing figure and one outside the report folder are not fetched but named, with the caption
    assert html.count('<figure class="missing">') == 2
    assert "secret" not in "".join(a.get("src", "") for a in imgs)
    assert page.find("section", id="sec-9-z", **{"class": "sec s-warnings"})
    assert page.find("section", id="sec-9-y", **{"class": "sec s-not_applicable"})
    assert page.find("a", href="#sec-9-z") and page.find("a", href="#sec-9-y")
    assert '<strong class="st st-warnings">Status: 1 warning(s).</strong>' in html
    assert '<strong class="st st-not_applicable">Status: does not apply.</strong>' in html
    assert '<td class="st st-not_applicable">does not apply</td>' in html
    assert "⚠️" not in html.split("<tbody>")[1].split("</tbody>")[0]  # icons become coloured dots
    assert external_refs(page, html) == []


def test_format_option(data_dir, tmp_path):
    m = str(data_dir / "emd_3197.map")
    for fmt, want in (("html", {"report.html"}), ("md,json", {"report.md", "results.json"})):
        out = tmp_path / fmt.replace(",", "_")
        res = runner.invoke(app, ["run", m, "--device", "cpu", "--no-figures", "--out", str(out), "--format", fmt])
        assert res.exit_code == 0, res.output
        assert {p.name for p in out.iterdir()} == want
    res = runner.invoke(app, ["run", m, "--device", "cpu", "--out", str(tmp_path / "bad"), "--format", "md,pdf"])
    assert res.exit_code == 2
    assert res.output.strip().startswith("gpuvalid: error: --format") and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
