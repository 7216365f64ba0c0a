"""Archive dashboard (gpuvalid summary OUT --html): numbers taken from each entry's results.json (only from
measured sections), links to the entries' report.html, counts by status, failures with reasons, embedded
JSON safe inside <script>, no external resource."""

import base64
import json
import re

from typer.testing import CliRunner

from gpuvalid.archive.dashboard import COLS, render_dashboard, section_titles
from gpuvalid.archive.record import EntryRecord, write_record
from gpuvalid.cli import app
from tests.test_html_report import Page, external_refs

runner = CliRunner()
ORDER = ("0.a", "0.b", "0.c", "0.d", "0.e", "0.f", "0.g", "0.h")


def _results(statuses: dict, values: dict, warnings: dict, R=None) -> dict:
    secs = {}
    for sid in ORDER + tuple(s for s in statuses if s not in ORDER):
        st = statuses.get(sid, "ok")
        secs[sid] = {"title": f"Title {sid}", "status": st, "warnings": warnings.get(sid, []),
                     "values": values.get(sid, {})}
    return {"input": {"resolution_A": R}, "score": {"passed": 1, "evaluable": 2}, "sections": secs}


def make_batch(out):
    """Four entries: two finished (one with Level 1), one whose warning holds markup, one failed."""
    entries = {
        "EMD-0001": _results({"0.c": "warnings", "0.d": "warnings", "1.a": "ok"},
                             {"0.c": {"outlier_ratio": 50.0}, "0.d": {"bfactor_A2": -400.0},
                              "0.e": {"percentiles_A": [2.0, 3.0, 3.5, 4.0, 5.0]}, "0.h": {"score": 0.2},
                              "1.a": {"fsc_0143_A": 3.1, "dpr_45_A": 3.3}},
                             {"0.c": ["ratio 50 above 20"], "0.d": ["B below -300"]}, R=3.0),
        "EMD-0002": _results({"0.d": "not_measured", "0.e": "not_applicable", "0.h": "not_applicable"},
                             {"0.d": {"bfactor_A2": 5.0}, "0.c": {"outlier_ratio": 0.0}}, {}, R=6.5),
        "EMD-0003": _results({"0.a": "warnings"}, {}, {"0.a": ["odd </script><b>name & co</b>"]}, R=None),
    }
    for eid, res in entries.items():
        d = out / eid
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(res))
        (d / "report.html").write_text("<!DOCTYPE html><title>x</title>")
        write_record(d, EntryRecord(eid, "done", version="t", out_dir=str(d), score_passed=1, score_evaluable=2,
                                    started=1.0, finished=2.0, seconds={"total": 1.0}))
    write_record(out / "EMD-0004", EntryRecord("EMD-0004", "failed", reason="corrupt gzip (CRC mismatch at 12)",
                                               version="t", out_dir=str(out / "EMD-0004")))
    return out


def embedded(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def test_summary_html_dashboard(tmp_path):
    out = make_batch(tmp_path / "batch")
    res = runner.invoke(app, ["summary", str(out), "--rebuild-index", "--html"])
    assert res.exit_code == 0, res.output
    html = (out / "index.html").read_text(encoding="utf-8")
    page = Page(html)
    assert external_refs(page, html) == []
    assert html.count("</script>") == 2  # the data block and the code: a warning's "</script>" is escaped
    data = embedded(html)
    assert data["cols"] == list(COLS)
    rows = {r[0]: dict(zip(COLS, r)) for r in data["rows"]}
    assert set(rows) == {"EMD-0001", "EMD-0002", "EMD-0003", "EMD-0004"}
    a, b, c, f = rows["EMD-0001"], rows["EMD-0002"], rows["EMD-0003"], rows["EMD-0004"]
    assert (a["R"], a["B"], a["locres"], a["outlier"], a["hand"], a["fsc"]) == (3.0, -400.0, 3.5, 50.0, 0.2, 3.1)
    assert a["warnings"] == ["0.c: ratio 50 above 20", "0.d: B below -300"]
    # a value of a section that could not be measured is no result
    assert b["B"] is None and b["locres"] is None and b["outlier"] == 0.0 and b["hand"] is None
    assert c["warnings"] == ["0.a: odd </script><b>name & co</b>"]
    assert f["status"] == "failed" and f["reason"] == "corrupt gzip (CRC mismatch at 12)" and f["href"] is None
    for r in (a, b, c):
        assert r["href"] == f"{r['id']}/report.html" and (out / r["href"]).is_file()
    # section statuses: one code per section, in report order
    assert data["sections"] == list(ORDER) + ["1.a"]
    assert a["sections"] == "oowwooooo" and b["sections"] == "ooox-oo- "
    # counts by status per section (0.d: one OK, one with warnings, one not measured)
    row = re.search(r"<tr><td><b>0\.d</b> Title 0\.d</td>(.*?)</tr>", html).group(1)
    assert re.findall(r'<td class="n">(\d*)</td>', row) == ["1", "1", "1", "", ""]
    # failures with reasons; the escaped warning text in the static parts
    fails = "".join(page.text_by_id["failures"])
    assert "EMD-0004" in fails and "corrupt gzip (CRC mismatch at 12)" in fails
    assert "<b>name" not in html.split('id="data"')[0]
    # plots: B, local resolution, outlier ratio, hand, Level 1 (each embedded as PNG)
    imgs = page.find("img")
    assert len(imgs) == 5
    for img in imgs:
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_dashboard_without_entries_or_values():
    html = render_dashboard([], [])
    assert embedded(html)["rows"] == []
    assert "No finished entry" in html and "No failure." in html
    assert "<img" not in html


def test_malformed_results_are_tolerated(tmp_path):
    """A results.json that is not the expected mapping gives an entry without numbers, not a crash."""
    from gpuvalid.archive.dashboard import collect_entries

    rows = []
    for i, text in enumerate(['[1, 2]', '{"sections": {"0.d": "x", "0.c": {"status": "ok", "values": [1]}}}',
                              '{"sections": [], "input": 3, "score": "a"}', "not json"]):
        d = tmp_path / f"EMD-{i:04d}"
        d.mkdir()
        (d / "results.json").write_text(text)
        rows.append({"emdb_id": d.name, "status": "done", "out_dir": str(d)})
    entries, level1 = collect_entries(rows, tmp_path)
    for e in entries:
        r = dict(zip(COLS, e))
        assert (r["R"], r["B"], r["outlier"], r["warnings"], r["href"]) == (None, None, None, [], None)
    assert dict(zip(COLS, entries[1]))["sections"] == {"0.c": "ok"}
    assert level1 == [{}] * 4
    render_dashboard(entries, level1)


def test_section_titles_skip_foreign_results(tmp_path):
    """A hand-edited results.json whose sections are a list, or hold a string, does not stop the dashboard."""
    bad1, bad2, good = (tmp_path / n for n in ("a", "b", "c"))
    for d in (bad1, bad2, good):
        d.mkdir()
    (bad1 / "results.json").write_text(json.dumps({"sections": ["0.a"]}), encoding="utf-8")
    (bad2 / "results.json").write_text(json.dumps({"sections": {"0.a": "x", "0.b": {"title": "Mask"}}}),
                                       encoding="utf-8")
    (good / "results.json").write_text(json.dumps({"sections": {"0.a": {"title": "Mass"}}}), encoding="utf-8")
    assert section_titles([tmp_path / "missing", bad1, good]) == {"0.a": "Mass"}
    assert section_titles([bad2]) == {"0.a": "", "0.b": "Mask"}
