"""bench/host_peaks.py: the host estimates of the CPU path bound the resident-memory growth measured in a fresh
process, and grow at least as fast with the map (EMD-5168 at its own 100³ and centred in 144³ noise; one
Level 1 section on simulated halves); the table's checks on made-up rows."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import bench_module

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RSS read from /proc (Linux)")


@pytest.fixture(scope="module")
def hp(data_dir, monkeypatch_module):
    monkeypatch_module.setenv("GPUVALID_DATA", str(data_dir))
    return bench_module("host_peaks")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as m:
        yield m


def test_level0_estimates_bound_the_measured_host_peaks(hp):
    rows = hp.measure("EMD-5168", 100, "0.d") + hp.measure("EMD-5168", 144, "0.d")
    assert all(r["status"] in ("ok", "warnings") for r in rows)
    assert rows[1]["added"] > rows[0]["added"] > 0               # the section's arrays are seen
    assert hp.failures(rows) == [], hp.table(rows)


def test_level1_estimate_bounds_the_measured_host_peak(hp, data_dir):
    if not (data_dir / "models" / "1oel.pdb").is_file():
        pytest.skip("model 1oel.pdb not found")
    rows = hp.measure("L1", 64, "1.a")
    assert rows[0]["status"] in ("ok", "warnings") and hp.failures(rows) == [], hp.table(rows)


def test_failures_flag_a_peak_or_a_growth_beyond_the_estimate(hp):
    def row(m, n, added, est):            # MiB
        return dict(map=f"{m} in {n}³", section="0.c", status="ok", seconds=1.0, voxels=n ** 3, work_voxels=0,
                    added=added * 2 ** 20, estimate=est * 2 ** 20)

    ok = [row("A", 10, 100, 200), row("A", 20, 300, 500)]
    assert hp.failures(ok) == []
    assert hp.failures([row("A", 10, 100, 200), row("A", 20, 300, 250)]) == ["A in 20³ 0.c"]    # grew 200 > 50
    assert hp.failures([row("A", 10, 300, 200)]) == ["A in 10³ 0.c"]
    assert hp.failures([row("A", 10, 100, 200), row("B", 20, 300, 350)]) == []                 # other map
    assert "| A in 20³ | 0.c | ok |" in hp.table(ok) and "200 / 300" in hp.table(ok)
