"""``results.json``: every number of the report with stable names (see the spec)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..analyses.base import jsonable


def results_dict(report) -> dict:
    inp = report.input
    return jsonable({
        "gpuvalid_version": report.version,
        "input": {
            "file": inp.path.name,
            "sha256": inp.sha256,
            "box_zyx": list(inp.data.shape),
            "voxel_size_A": inp.voxel_size,
            "threshold": inp.threshold,
            "resolution_A": inp.resolution,
            "origin_A": list(inp.origin_A),
            "header_voxel_size_A": list(inp.header_voxel_size),
            "sources": inp.sources,
            "notes": inp.notes,
        },
        "score": {"passed": report.passed, "evaluable": report.evaluable},
        "backend": report.backend,
        "seconds": round(report.seconds, 3),
        "sections": {sid: s.to_json() for sid, s in report.sections.items()},
    })


def write_json_atomic(path: Path, data: dict) -> Path:
    """Write JSON to a temporary file in the same folder, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".results.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, allow_nan=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
