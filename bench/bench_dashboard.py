"""Archive dashboard at EMDB scale: 60,000 synthetic entries → file size, build time, and the time to open
it in headless Chromium (page script done: JSON parsed, first table page drawn), plus a text filter, a
sort and a section filter timed inside the page.

    python bench/bench_dashboard.py [--entries 60000] [--out /tmp/dash60k] [--repeat 3] [--screenshot PNG]

The entries are generated (not validated maps): reported resolutions, B-factors, local resolutions,
outlier ratios, hand scores, Level 1 estimates for 40 % of them, 0–7 warnings of the kinds the sections
write (with numbers), 3 % failures with reasons.  Chromium: the Debian package ``chromium``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpuvalid.archive.dashboard import entry_record, render_dashboard  # noqa: E402

TITLES = {"0.a": "Mass analysis", "0.b": "Mask analysis", "0.c": "Background analysis",
          "0.d": "Global B-factor (Guinier)", "0.e": "Local resolution", "0.f": "Local B-factor (LocBfactor)",
          "0.g": "Local occupancy (LocOccupancy)", "0.h": "Hand", "1": "Half maps", "1.a": "Global resolution",
          "1.b": "FSC permutation (FDR-FSC)", "1.g": "Fourier Shell Occupancy", "1.h": "3-D FSC (conical FSC)"}
WARN = {
    "0.a": lambda r: f"only {r.uniform(0, 19):.1f} Å of empty space on the {r.choice(['left', 'right'])} along "
                     f"{r.choice('XYZ')} (< 20 Å)",
    "0.b": lambda r: f"the {r.randint(2, 400)} small component(s) outside the main ones have a mean volume of "
                     f"{r.uniform(5, 900):.1f} Å³ (> 5 Å³)",
    "0.c": lambda r: f"{r.uniform(0.01, 2):.3f} % of the background lies beyond 5σ, {r.uniform(21, 9000):.0f} times "
                     "the Gaussian expectation (> 20)",
    "0.d": lambda r: f"the B-factor {r.uniform(-1200, -301):.1f} Å² is below -300 Å²: the map's amplitudes decay "
                     "strongly",
    "0.e": lambda r: f"the reported resolution {r.uniform(2, 4):.1f} Å is better than almost all local "
                     f"resolutions (percentile {r.uniform(0, 0.1):.2f} % < 0.1 %)",
    "0.f": lambda r: f"the median local B-factor {r.uniform(-900, -301):.1f} Å² is outside [-300, 0] Å²",
    "0.g": lambda r: f"the median occupancy {r.uniform(0.1, 0.5):.2f} is below 0.5",
    "0.h": lambda r: f"the hand score {r.uniform(0.5, 1):.3f} is above 0.5: the map is probably mirrored",
}
FAILS = ["corrupt gzip: CRC-32 mismatch (stored file damaged)", "map file missing (structures/EMD-{n}/map)",
         "EMDB header missing: no contour level, resolution or voxel size",
         "anisotropic voxels {a:.4f}×{b:.4f}×{a:.4f} Å (x,y,z); the analyses need isotropic sampling",
         "out of memory", "the MRC header declares {n} voxels but the file holds fewer (truncated)",
         "internal error (ValueError: operands could not be broadcast together)"]


def synthetic(n: int, seed: int = 7) -> tuple[list, list]:
    r = random.Random(seed)
    entries, level1 = [], []
    for i in range(n):
        eid = f"EMD-{1000 + i * 7 % 90000 + i // 90000:05d}" if n > 90000 else f"EMD-{10000 + i}"
        row = {"emdb_id": eid, "status": "done", "t_total": r.uniform(2, 60),
               "out_dir": f"/archive/reports/{eid}"}
        if r.random() < 0.03:
            row.update(status="failed", reason=r.choice(FAILS).format(n=r.randint(10 ** 6, 10 ** 9),
                                                                     a=r.uniform(0.4, 2), b=r.uniform(0.4, 2)))
            entries.append(entry_record(row, None, f"{eid}/report.html"))
            level1.append({})
            continue
        R = round(math.exp(r.uniform(math.log(1.8), math.log(25))), 2)
        secs, warns = {}, {}
        for sid in ("0.a", "0.b", "0.c", "0.d", "0.e", "0.f", "0.g", "0.h"):
            u = r.random()
            st = "ok" if u < 0.55 else "warnings" if u < 0.9 else "not_measured" if u < 0.96 else "not_applicable"
            if sid == "0.h" and R > 5:
                st = "not_applicable"
            secs[sid] = {"status": st, "title": TITLES[sid], "values": {}, "warnings": []}
            if st == "warnings":
                secs[sid]["warnings"] = [WARN[sid](r) for _ in range(1 + (r.random() < 0.25))]
        v = lambda sid: secs[sid]["values"]  # noqa: E731
        v("0.c")["outlier_ratio"] = 0.0 if r.random() < 0.05 else math.exp(r.gauss(4, 2.5))
        v("0.d")["bfactor_A2"] = r.gauss(-60 * R, 40 * R)
        med = R * r.uniform(0.9, 1.5)
        v("0.e")["percentiles_A"] = [med * 0.8, med * 0.9, med, med * 1.1, med * 1.3]
        if R <= 5:
            v("0.h")["score"] = r.betavariate(1.2, 12) if r.random() < 0.97 else r.betavariate(8, 2)
        l1 = {}
        if r.random() < 0.4:
            secs["1"] = {"status": "ok", "title": TITLES["1"], "values": {}, "warnings": []}
            for sid in ("1.a", "1.b", "1.g", "1.h"):
                secs[sid] = {"status": "ok", "title": TITLES[sid], "values": {}, "warnings": []}
            l1 = {"fsc_0143_A": R * r.uniform(0.85, 1.3), "fsc_0143_masked_A": R * r.uniform(0.8, 1.15),
                  "dpr_45_A": R * r.uniform(0.9, 1.4), "ssnr_1_A": R * r.uniform(0.9, 1.5)}
            v("1.a").update(l1)
        res = {"input": {"resolution_A": R}, "score": {"passed": 0, "evaluable": 0}, "sections": secs}
        ev = [s for s in secs.values() if s["status"] in ("ok", "warnings")]
        res["score"] = {"passed": sum(s["status"] == "ok" for s in ev), "evaluable": len(ev)}
        entries.append(entry_record(row, res, f"{eid}/report.html"))
        level1.append({k: round(x, 3) for k, x in l1.items()})
    return entries, level1


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def open_page(url: str, mode: str) -> tuple[float, str]:
    """(wall s, dumped DOM or '') of one headless Chromium run on ``url`` with a fresh profile; ``mode``
    'screenshot' (load, lay out, paint, capture: what opening the page costs) or 'dom' (the DOM after the
    page's script ran, for the timings the page measured itself)."""
    prof = tempfile.mkdtemp(prefix="chromium-bench-")
    shot = Path(prof) / "shot.png"
    what = [f"--screenshot={shot}"] if mode == "screenshot" else ["--dump-dom"]
    try:
        t0 = time.perf_counter()
        p = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={prof}", "--window-size=1280,2000", *what, url],
                           capture_output=True, text=True, timeout=300)
        return time.perf_counter() - t0, p.stdout if mode == "dom" else ""
    finally:
        shutil.rmtree(prof, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=60000)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "gpuvalid-dash-bench")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--screenshot", type=Path, default=None)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    entries, level1 = synthetic(a.entries)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    html = render_dashboard(entries, level1, source="(synthetic)", titles=TITLES)
    t_build = time.perf_counter() - t0
    path = a.out / "index.html"
    path.write_text(html, encoding="utf-8")
    raw = path.stat().st_size
    data = re.search(r'id="data">(.*?)</script>', html, re.S).group(1)
    gz = len(gzip.compress(html.encode("utf-8"), 6))
    print(f"{a.entries} entries: generated in {t_gen:.1f} s, page built in {t_build:.1f} s; "
          f"{raw / 1e6:.2f} MB ({len(data.encode()) / 1e6:.2f} MB embedded JSON, {len(data.encode()) / a.entries:.0f} "
          f"B/entry), {gz / 1e6:.2f} MB gzipped")
    if chromium() is None:
        print("chromium not found: no open timings (apt-get install chromium)")
        return
    blank = a.out / "blank.html"
    blank.write_text("<!DOCTYPE html><title>blank</title><p>blank")
    walls, walls0, rendered, bench = [], [], [], []
    for _ in range(a.repeat):
        w0, _ = open_page(blank.as_uri(), "screenshot")
        w, _ = open_page(path.as_uri(), "screenshot")
        _, dom = open_page(path.as_uri() + "#bench", "dom")
        walls0.append(w0)
        walls.append(w)
        m = re.search(r'data-rendered-ms="(\d+)"', dom)
        b = re.search(r"data-bench=\"([^\"]+)\"", dom)
        rows = len(re.findall(r"<tr[ >]", dom.split('id="tbody"')[1].split("</tbody>")[0])) if 'id="tbody"' in dom else 0
        rendered.append(int(m.group(1)) if m else float("nan"))
        if b:
            bench.append(json.loads(b.group(1).replace("&quot;", '"')))
        print(f"  open+screenshot: {w:.2f} s (blank page {w0:.2f} s); page script done at {rendered[-1]} ms; "
              f"{rows} table rows in the DOM; in-page " + (", ".join(f"{k} {v:.0f}" for k, v in bench[-1].items())
                                                          if bench else "n/a"))
    med = statistics.median
    print(f"median over {a.repeat}: open+screenshot {med(walls):.2f} s − blank page {med(walls0):.2f} s = "
          f"{med(walls) - med(walls0):.2f} s; page script done (JSON parsed, first page drawn) at "
          f"{med(rendered):.0f} ms after navigation start"
          + (f"; text filter {med(x['filter_ms'] for x in bench):.0f} ms, sort of all entries "
             f"{med(x['sort_ms'] for x in bench):.0f} ms, section filter "
             f"{med(x['section_filter_ms'] for x in bench):.0f} ms" if bench else ""))
    if a.screenshot is not None:
        prof = tempfile.mkdtemp(prefix="chromium-bench-")
        subprocess.run([chromium(), *FLAGS, f"--user-data-dir={prof}", "--window-size=1280,2000",
                        "--hide-scrollbars", f"--screenshot={a.screenshot}", path.as_uri()],
                       capture_output=True, timeout=300)
        shutil.rmtree(prof, ignore_errors=True)
        print(f"screenshot: {a.screenshot}")


if __name__ == "__main__":
    main()
