"""Archive mode: EMDB ids, local-mirror resolution, downloads from a 127.0.0.1 HTTP server, `run EMD-…`."""

import hashlib
import http.server
import json
import threading
import time
from functools import partial
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpuvalid.archive import download as dl
from gpuvalid.archive.ids import layout
from gpuvalid.archive.mirror import add_entry
from gpuvalid.archive.resolve import resolve_entry
from gpuvalid.errors import InputError
from gpuvalid.io.emdb import parse_header


def sha(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("mirror")
    add_entry(root, "EMD-5170", data_dir / "emd_5170.map", box_zyx=(100, 100, 100), voxel_size=2.38,
              contour=0.61, resolution=15.0, method="singleParticle", half_maps=True)
    add_entry(root, "EMD-3197", data_dir / "emd_3197.map", header=False)
    return root


class _Handler(http.server.SimpleHTTPRequestHandler):
    fail_first: dict = {}   # path → number of 503 answers still to give
    truncate: set = set()   # paths served with a short body
    log: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).log.append((self.path, time.monotonic()))
        if self.fail_first.get(self.path, 0) > 0:
            self.fail_first[self.path] -= 1
            self.send_error(503, "busy")
            return
        if self.path in self.truncate:
            body = Path(self.translate_path(self.path)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            return
        super().do_GET()


@pytest.fixture
def server(mirror):
    _Handler.fail_first, _Handler.truncate, _Handler.log = {}, set(), []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(mirror)))
    th = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    th.join(timeout=5)


@pytest.fixture(autouse=True)
def fast_downloads(monkeypatch):
    monkeypatch.setattr(dl._LIMITER, "interval", 0.0)
    monkeypatch.delenv("GPUVALID_ARCHIVE", raising=False)
    monkeypatch.delenv("GPUVALID_EMDB_URL", raising=False)


def test_ids_and_layout():
    for text in ("EMD-1234", "emd_1234", "1234", " emd-1234 "):
        assert layout(text).emdb_id == "EMD-1234"
    assert layout("0042").emdb_id == "EMD-0042"
    assert layout("12345").map == "structures/EMD-12345/map/emd_12345.map.gz"
    lay = layout("1234")
    assert lay.header == "structures/EMD-1234/header/emd-1234-v30.xml"
    assert lay.half_map(2) == "structures/EMD-1234/other/emd_1234_half_map_2.map.gz"
    for bad in ("123", "EMD-12a4", "pdb1234", ""):
        with pytest.raises(InputError):
            layout(bad)
    assert dl.base_url(None) == "https://ftp.ebi.ac.uk/pub/databases/emdb/"


def test_resolve_local_mirror(mirror, monkeypatch):
    m, h = resolve_entry("emd_5170", archive=mirror)
    assert m == mirror / "structures/EMD-5170/map/emd_5170.map.gz" and m.is_file()
    hdr = parse_header(h)  # the header's numbers are the ones written into it
    assert (hdr.contour, hdr.resolution, hdr.voxel_size, hdr.method) == (0.61, 15.0, (2.38,) * 3, "singleParticle")
    m2, h2 = resolve_entry("3197", archive=mirror)  # a map without a header
    assert m2.is_file() and h2 is None
    monkeypatch.setenv("GPUVALID_ARCHIVE", str(mirror))
    assert resolve_entry("EMD-5170")[0] == m
    with pytest.raises(InputError, match="not in the archive mirror"):
        resolve_entry("EMD-9999", archive=mirror)
    monkeypatch.delenv("GPUVALID_ARCHIVE")
    with pytest.raises(InputError, match="no archive mirror"):
        resolve_entry("EMD-5170")


def test_download_from_local_server(mirror, server, tmp_path):
    cache = tmp_path / "cache"
    m, h = resolve_entry("EMD-5170", download=True, base_url=server, cache_dir=cache)
    assert m == cache / "structures/EMD-5170/map/emd_5170.map.gz"
    assert sha(m) == sha(mirror / "structures/EMD-5170/map/emd_5170.map.gz")
    assert h.read_bytes() == (mirror / "structures/EMD-5170/header/emd-5170-v30.xml").read_bytes()
    # its half maps come along (Level 1 finds them beside the map in the archive layout)
    from gpuvalid.level1 import halves_beside
    halves = halves_beside(m)
    assert halves and [sha(p) for p in halves] == [sha(mirror / f"structures/EMD-5170/other/emd_5170_half_map_{i}"
                                                           ".map.gz") for i in (1, 2)]
    n = len(_Handler.log)
    assert resolve_entry("EMD-5170", download=True, base_url=server, cache_dir=cache) == (m, h)
    assert len(_Handler.log) == n  # served from the cache: no new request
    with pytest.raises(InputError, match="no map at"):
        resolve_entry("EMD-9999", download=True, base_url=server, cache_dir=cache)
    assert not list(cache.rglob("*.part"))


def test_download_retries_and_checks(mirror, server, tmp_path):
    rel = "structures/EMD-5170/map/emd_5170.map.gz"
    _Handler.fail_first = {"/" + rel: 2}
    d = dl.Downloader(server, retries=3, backoff_s=0.01, limiter=dl.RateLimiter(0))
    out = d.fetch(rel, tmp_path / "a" / "x.map.gz")
    assert sha(out) == sha(mirror / rel)
    assert [p for p, _ in _Handler.log].count("/" + rel) == 3
    _Handler.truncate = {"/" + rel}  # short body: Content-Length and gzip checks fail every time
    with pytest.raises(InputError, match="failed after 2 attempt"):
        dl.Downloader(server, retries=1, backoff_s=0.01, limiter=dl.RateLimiter(0)).fetch(rel, tmp_path / "b.map.gz")
    assert not (tmp_path / "b.map.gz").exists() and not (tmp_path / "b.map.gz.part").exists()
    _Handler.truncate = set()
    with pytest.raises(InputError, match="expected 1"):
        dl.Downloader(server, retries=0, limiter=dl.RateLimiter(0)).fetch(rel, tmp_path / "c.map.gz",
                                                                          expected_size=1)
    with pytest.raises(InputError, match="SHA-256"):
        dl.Downloader(server, retries=0, limiter=dl.RateLimiter(0)).fetch(rel, tmp_path / "d.map.gz",
                                                                          expected_sha256="0" * 64)


def test_rate_limit_spaces_requests():
    lim = dl.RateLimiter(0.15)
    t0 = time.monotonic()
    for _ in range(4):
        lim.wait()
    assert time.monotonic() - t0 >= 0.44


def test_cli_run_downloads_entry(mirror, server, tmp_path):
    from gpuvalid.cli import app

    out = tmp_path / "rep"
    r = CliRunner().invoke(app, ["run", "EMD-5170", "--download", "--base-url", server, "--cache-dir",
                                 str(tmp_path / "cache"), "--device", "cpu", "--out", str(out), "--no-figures"])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert res["input"]["threshold"] == 0.61 and res["input"]["resolution_A"] == 15.0
    assert res["input"]["sha256"] == sha(mirror / "structures/EMD-5170/map/emd_5170.map.gz")
    r = CliRunner().invoke(app, ["run", "EMD-9999", "--archive", str(mirror), "--device", "cpu",
                                 "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "not in the archive mirror" in r.output
