"""bench/batch_memory.py: its reading of a batch's output folder (entries done and failed with the reason,
sections not measured, sections that waited for memory) and its table, on a made-up folder; the cgroup is
not created here (that needs root)."""

from __future__ import annotations

import json

from tests.helpers import bench_module


def test_summary_and_table_of_a_batch_folder(tmp_path):
    bm = bench_module("batch_memory")
    (tmp_path / "EMD-1").mkdir()
    (tmp_path / "EMD-1" / "results.json").write_text(json.dumps({"sections": {
        "0.d": {"status": "ok"},
        "0.e": {"status": "ok", "memory_wait_s": 48.2},
        "0.h": {"status": "not_measured", "reason": "needs 9 GiB"}}}))
    (tmp_path / "EMD-2").mkdir()
    (tmp_path / "EMD-2" / "status.json").write_text(json.dumps({"reason": "compute worker process died"}))
    s = bm.summarise(tmp_path, ["EMD-1", "EMD-2", "EMD-3"])
    assert (s["done"], s["failed"]) == (1, 2)
    assert s["failures"] == ["EMD-2: compute worker process died", "EMD-3: no status.json"]
    assert s["not_measured"] == ["EMD-1 0.h: needs 9 GiB"] and s["waited"] == ["EMD-1 0.e 48 s"]
    s.update(ledger="on", limit=9e9, peak=5.9e9, oom_kills=0, wall_s=120.14)
    assert bm.table([s], 384).splitlines()[-1] == "| 2 × 384³ | 9.0 | on | 1 | 2 | 1 | EMD-1 0.e 48 s | 5.90 | 0 | 120.1 |"
