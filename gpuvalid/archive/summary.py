"""Key numbers across validated entries: a rich table on screen and a CSV/Parquet file.

One row per entry: status, failure reason, score, the time split (s) and, for finished entries,
every scalar value of every section of its ``results.json`` as ``<section>.<name>`` columns
(e.g. ``0.a.left_space_A`` is a vector and is left out; ``0.c.t_statistic`` is kept).
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import InputError
from .index import ResultsIndex
from .record import TIMINGS

BASE = ["emdb_id", "status", "reason", "score_passed", "score_evaluable", "version", "input_sha256",
        "device", "host"] + [f"t_{k}" for k in TIMINGS]


def collect(out_dir: str | Path, index_path: str | Path | None = None, rebuild: bool = False) -> list[dict]:
    """Return one row per entry of the batch output ``out_dir``, with the scalar results of finished ones.

    Rows come from the index (rebuilt from the report folders when it is empty or ``rebuild``); a finished
    entry adds ``<section>.status`` and ``<section>.<name>`` columns from its ``results.json``.

    Raises
    ------
    InputError
        When ``out_dir`` is not a folder, or the index is not usable (see :class:`.index.ResultsIndex`).
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise InputError(f"no batch output folder at {out}")
    from .batch import INDEX_NAME
    with ResultsIndex(index_path or out / INDEX_NAME, replace_corrupt=rebuild) as idx:
        if rebuild or not idx.rows():
            idx.rebuild(out)
        rows = idx.rows()
    for r in rows:
        res = Path(r.get("out_dir") or out / r["emdb_id"]) / "results.json"
        if r["status"] != "done" or not res.is_file():
            continue
        try:
            d = json.loads(res.read_text())
        except (OSError, ValueError):
            continue
        secs = d.get("sections") if isinstance(d, dict) else None
        for sid, sec in (secs.items() if isinstance(secs, dict) else ()):
            if not isinstance(sec, dict):
                continue
            r[f"{sid}.status"] = sec.get("status")
            vals = sec.get("values")
            for k, v in (vals.items() if isinstance(vals, dict) else ()):
                if isinstance(v, (int, float, str, bool)) or v is None:
                    r[f"{sid}.{k}"] = v
    return rows


def columns(rows: list[dict]) -> list[str]:
    """Return the table's columns: :data:`BASE`, ``input_bytes``, then the other keys of ``rows`` sorted.

    Paths, worker, start and finish times and the mtime are left out.
    """
    extra = sorted({k for r in rows for k in r} - set(BASE) - {"out_dir", "map_path", "worker", "started",
                                                                 "finished", "input_bytes", "input_mtime_ns"})
    return BASE + ["input_bytes"] + extra


def write_table(rows: list[dict], path: str | Path) -> Path:
    """Write ``rows`` to ``path`` as CSV, TSV (``.tsv``) or Parquet (``.parquet``); return the path."""
    path = Path(path)
    cols = columns(rows)
    if path.suffix == ".parquet":
        from .manifest import write_parquet
        write_parquet(rows, path, cols)
        return path
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, cols, extrasaction="ignore", delimiter="\t" if path.suffix == ".tsv" else ",")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r.get(k) for k in cols})
    return path


def throughput(rows: list[dict]) -> dict:
    """Entries, wall-clock span (first start → last finish, s), entries/min and mean time split."""
    t = [r for r in rows if r.get("started") and r.get("finished")]
    span = (max(r["finished"] for r in t) - min(r["started"] for r in t)) if t else 0.0
    mean = {k: statistics.fmean([r[f"t_{k}"] for r in rows if r.get(f"t_{k}") is not None] or [0.0])
            for k in TIMINGS}
    return {"entries": len(rows), "done": sum(r["status"] == "done" for r in rows),
            "failed": sum(r["status"] == "failed" for r in rows), "span_s": span,
            "per_minute": 60.0 * len(t) / span if span > 0 else 0.0, "mean_s": mean}


def print_summary(rows: list[dict], console: Console | None = None, limit: int = 50) -> None:
    """Print the first ``limit`` rows as a table, then the throughput (entries/min, mean seconds per step)."""
    console = console or Console()
    tab = Table(title="gpuvalid batch summary")
    for c in ("entry", "status", "score", "read s", "inflate s", "load s", "compute s", "write s", "total s",
              "reason"):
        tab.add_column(c, justify="right" if c.endswith(" s") else "left")

    def f(v):
        return "" if v is None else f"{v:.2f}"
    for r in rows[:limit]:
        score = f"{r['score_passed']}/{r['score_evaluable']}" if r.get("score_evaluable") is not None else ""
        tab.add_row(escape(str(r["emdb_id"])), "[green]done" if r["status"] == "done" else "[red]failed", score,
                    *(f(r.get(f"t_{k}")) for k in TIMINGS), escape((r.get("reason") or "")[:80]))
    console.print(tab)
    if len(rows) > limit:
        console.print(f"… {len(rows) - limit} more rows in the CSV")
    tp = throughput(rows)
    m = tp["mean_s"]
    console.print(f"{tp['entries']} entries: {tp['done']} done, {tp['failed']} failed; "
                  f"{tp['per_minute']:.1f} entries/min over {tp['span_s']:.0f} s; mean s per entry: "
                  + ", ".join(f"{k} {m[k]:.2f}" for k in TIMINGS), highlight=False)
