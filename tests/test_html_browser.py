"""report.html and the archive dashboard in a real browser (headless Chromium, Debian package `chromium`):
screenshots to PNG, print to PDF, and the dashboard's table drawn by its script.  Slow; skipped without
Chromium.  Screenshots go to $GPUVALID_SCREENSHOTS when set (else the test's tmp folder)."""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpuvalid.archive.manifest import scan_archive, write_manifest
from gpuvalid.archive.mirror import add_entry, shared_entries
from gpuvalid.cli import app

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed "
                                    "(apt-get install chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
runner = CliRunner()


def browse(url: str, *what: str, size=(1280, 2000)) -> str:
    """Run headless Chromium on ``url`` with a fresh profile; return what it printed (``--dump-dom``)."""
    prof = tempfile.mkdtemp(prefix="gpuvalid-chromium-")
    try:
        p = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={prof}", f"--window-size={size[0]},{size[1]}",
                            *what, url], capture_output=True, text=True, timeout=240)
        return p.stdout
    finally:
        shutil.rmtree(prof, ignore_errors=True)


def shots_dir(tmp_path) -> Path:
    d = Path(os.environ.get("GPUVALID_SCREENSHOTS") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


def colours(png: Path) -> set:
    from PIL import Image

    with Image.open(png) as src:
        im = src.convert("RGB")
    return {c for _, c in im.getcolors(maxcolors=1 << 24)}


@needs_chromium
def test_report_html_in_chromium(data_dir, tmp_path):
    out = tmp_path / "emd_5168"
    res = runner.invoke(app, ["run", str(data_dir / "emd_5168.map"), "--threshold", "10", "--resolution", "6.6",
                              "--device", "cpu", "--out", str(out)])
    assert res.exit_code == 0, res.output
    d = shots_dir(tmp_path)
    top, deep, pdf = d / "report_emd_5168.png", d / "report_emd_5168_sections.png", d / "report_emd_5168.pdf"
    for p in (top, deep, pdf):
        p.unlink(missing_ok=True)
    url = (out / "report.html").as_uri()
    browse(url, f"--screenshot={top}")
    # further down: a tall window, cropped (a scrolled headless screenshot comes out blank)
    tall = tmp_path / "tall.png"
    browse(url, f"--screenshot={tall}", size=(1280, 9000))
    browse(url, f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    assert top.is_file() and tall.is_file() and pdf.is_file()
    from PIL import Image

    with Image.open(top) as im:
        assert im.size == (1280, 2000)
    with Image.open(tall) as im:
        im.crop((0, 3000, 1280, 5000)).save(deep)
    c = colours(top)
    # the summary's status cells are coloured (OK and warning backgrounds of the stylesheet) and the input
    # figures were drawn (grey-scale slices: many distinct greys)
    assert (0xDA, 0xFB, 0xE1) in c and (0xFF, 0xF3, 0xC4) in c
    assert len({g for g in c if g[0] == g[1] == g[2]}) > 100
    assert len(colours(deep)) > 1000  # sections with their figures, not a blank page
    blob = pdf.read_bytes()
    assert blob[:5] == b"%PDF-" and len(re.findall(rb"/Type\s*/Page[^s]", blob)) >= 9  # a page per section


def build_shared_mirror(root: Path, data_dir: Path) -> Path:
    """Every shared map with an isotropic voxel size in archive layout, plus one truncated entry."""
    for e in shared_entries(data_dir):
        add_entry(root, e["emdb_id"], Path(e["file"]), voxel_size=e["voxel_size"], contour=e["contour"],
                  resolution=e["resolution"])
    m, _ = add_entry(root, "EMD-9001", data_dir / "emd_5170.map", voxel_size=2.38, contour=0.61, resolution=15.0)
    m.write_bytes(m.read_bytes()[: m.stat().st_size // 2])
    return root


@needs_chromium
def test_dashboard_in_chromium(data_dir, tmp_path):
    mirror = build_shared_mirror(tmp_path / "mirror", data_dir)
    manifest = write_manifest(scan_archive(mirror), tmp_path / "manifest.tsv")
    out = tmp_path / "batch"
    res = runner.invoke(app, ["batch", str(manifest), "--out", str(out), "--device", "cpu", "--no-figures",
                              "--prefetch", "1", "--quiet", "--spool", str(tmp_path / "spool")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["summary", str(out), "--html"])
    assert res.exit_code == 0, res.output
    n = len(list(out.glob("EMD-*/status.json")))
    assert n == len(shared_entries(data_dir)) + 1
    d = shots_dir(tmp_path)
    shot, table = d / "dashboard_shared.png", d / "dashboard_shared_table.png"
    url = (out / "index.html").as_uri()
    browse(url, f"--screenshot={shot}")
    tall = tmp_path / "tall.png"
    browse(url, f"--screenshot={tall}", size=(1280, 4200))
    assert shot.is_file() and tall.is_file()
    from PIL import Image

    with Image.open(tall) as im:
        im.crop((0, 2000, 1280, 4200)).save(table)
    assert len(colours(table)) > 200  # the entry table and the failures, not a blank page
    dom = browse(url, "--dump-dom")
    assert re.search(r'data-rendered-ms="\d+"', dom), "the page script did not finish"
    body = dom.split('id="tbody"')[1].split("</tbody>")[0]
    assert len(re.findall(r"<tr[ >]", body)) == n
    links = re.findall(r'<a href="([^"]+)">EMD-\d+</a>', body)
    assert len(links) == n - 1  # the truncated entry has no report
    for h in links:
        assert (out / h).is_file() and h.endswith("report.html")
    assert "EMD-9001" in body and 'class="failed"' in body
    # a text filter and a sort, through the page's own controls, in a real browser
    dom = browse(url + "#bench", "--dump-dom")
    assert re.search(r"data-bench=", dom)
