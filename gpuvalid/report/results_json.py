"""``results.json``: every number of the report with stable names (see the spec)."""

from __future__ import annotations

import json
from pathlib import Path

from ..analyses.base import jsonable
from .files import atomic_write_text


def results_dict(report) -> dict:
    """Return the ``results.json`` content: version, input, score, backend, timing and every section's values.

    NaN/Inf become ``null`` (:func:`~gpuvalid.analyses.base.jsonable`); ``half_maps`` is added for Level 1.
    """
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
            "origin_A": None if inp.origin_A is None else list(inp.origin_A),
            "header_voxel_size_A": list(inp.header_voxel_size),
            "sources": inp.sources,
            "notes": inp.notes,
        },
        "score": {"passed": report.passed, "evaluable": report.evaluable},
        "backend": report.backend,
        "seconds": round(report.seconds, 3),
        "sections": {sid: s.to_json() for sid, s in report.sections.items()},
        **({"half_maps": report.half_maps} if getattr(report, "half_maps", None) else {}),  # Level 1
    })


def write_json_atomic(path: Path, data: dict) -> Path:
    """Write JSON (no NaN/Inf: they are ``null`` after :func:`jsonable`) atomically, mode 0644."""
    return atomic_write_text(path, json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n")
