"""Every real map of ../shared/data/MANIFEST.tsv through the whole pipeline (CPU, no figures).

Checks what can be checked independently of gpuvalid's code: the hard mask and the 0.f/0.g percentiles against
an independent implementation of the spec (tests/spec_reference.py), the two symmetric halves of haemoglobin,
the zero-mean map's centre of mass, and — across all maps — that no measured section carries a number that
cannot mean anything (NaN, Inf, null) in its values or in its text.
"""

from __future__ import annotations

import csv
import math
import re

import numpy as np
import pytest

from gpuvalid.backend import get_backend
from gpuvalid.context import MapContext
from gpuvalid.errors import GpuvalidError
from gpuvalid.io import load_map_input
from gpuvalid.pipeline import validate

from . import spec_reference as spec

SLOW_SPEC_CHECK = {"emd_0093_masked.mrc.gz"}  # 172³ after resizing: the float64 reference takes minutes


def manifest(data_dir):
    rows = []
    with open(data_dir / "MANIFEST.tsv") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            if r["file"].startswith("models/") or not (data_dir / r["file"]).is_file():
                continue
            num = lambda s: None if s.strip() in ("-", "") else float(s)  # noqa: E731
            rows.append((r["file"], num(r["contour"]), num(r["resolution_A"])))
    return rows


@pytest.fixture(scope="module")
def reports(data_dir):
    """gpuvalid's report of every real map (or the one-line error it gave)."""
    be = get_backend("cpu")
    out = {}
    for name, t, R in manifest(data_dir):
        try:
            inp = load_map_input(data_dir / name, threshold=t, resolution=R)
        except GpuvalidError as exc:
            out[name] = str(exc)
            continue
        out[name] = (inp, validate(inp, be, None, figures=False))
    return out


def _bad_numbers(x, path=""):
    if isinstance(x, dict):
        return [b for k, v in x.items() for b in _bad_numbers(v, f"{path}.{k}")]
    if isinstance(x, (list, tuple)):
        return [b for i, v in enumerate(x) for b in _bad_numbers(v, f"{path}[{i}]")]
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return [path]
    return []


_MEANINGLESS_TEXT = re.compile(r"(?<![A-Za-z])(nan|inf|-inf)(?![A-Za-z])", re.IGNORECASE)


def test_no_meaningless_numbers_on_any_real_map(reports):
    problems = []
    for name, rep in reports.items():
        if isinstance(rep, str):
            assert "\n" not in rep and rep, f"{name}: error is not one line"
            continue
        for sid, s in rep[1].sections.items():
            if not s.evaluable:
                assert s.reason, f"{name} {sid}: {s.status} without a reason"
                continue
            problems += [f"{name} {sid} values{p}" for p in _bad_numbers(s.to_json()["values"])]
            text = " ".join(s.blocks + s.warnings + [s.summary, s.key])
            if _MEANINGLESS_TEXT.search(text):
                problems.append(f"{name} {sid} text: {_MEANINGLESS_TEXT.search(text).group(0)}")
    assert not problems, problems


def test_every_map_gives_a_report_or_one_line_error(reports, data_dir):
    assert set(reports) == {n for n, _, _ in manifest(data_dir)}
    assert sum(not isinstance(r, str) for r in reports.values()) >= 8


def test_hard_masks_equal_the_spec(reports):
    be = get_backend("cpu")
    checked = 0
    for name, rep in reports.items():
        if isinstance(rep, str) or rep[0].threshold is None or rep[0].threshold >= rep[0].data.max():
            continue
        inp = rep[0]
        ctx = MapContext(be, inp.data, inp.voxel_size, inp.threshold, inp.resolution)
        np.testing.assert_array_equal(ctx.hard_mask, spec.hard_mask(inp.data, inp.threshold, inp.voxel_size),
                                      err_msg=name)
        checked += 1
    assert checked >= 5


def test_haemoglobin_keeps_both_halves(reports):
    if "emd_3488.mrc" not in reports:
        pytest.skip("emd_3488.mrc not in the data folder")
    inp, rep = reports["emd_3488.mrc"]
    b = rep.sections["0.b"].values
    assert b["hard_mask_components"] == 2
    assert sorted(b["hard_mask_component_voxels"]) == [9476, 9478]  # the MANIFEST's counts
    assert b["overlap"] > 0.95 and rep.sections["0.b"].vrs_compat["overlap"] < 0.55
    # the molecule is centred: its centre of mass is within a voxel of the box centre on X and Y
    c = rep.sections["0.a"].values["center_of_mass_vox"]
    assert abs(c[0] - 50) < 1 and abs(c[1] - 50) < 1


def test_zero_mean_map_centre_of_mass(reports):
    if "emd_6824.mrc" not in reports:
        pytest.skip("emd_6824.mrc not in the data folder")
    inp, rep = reports["emd_6824.mrc"]
    assert abs(float(inp.data.astype(np.float64).sum())) < 0.01 * float(np.abs(inp.data).sum())
    a = rep.sections["0.a"]
    assert a.vrs_compat["center_of_mass_vox"] is None and a.vrs_compat["center_of_mass_note"]
    n = inp.data.shape[::-1]
    assert all(0 <= c < m for c, m in zip(a.values["center_of_mass_vox"], n))
    assert all(d < 50 for d in a.values["com_decentering_pct"])


def _spec_local(inp):
    Vr, ts = spec.resize(inp.data, inp.voxel_size, inp.resolution)
    mask = spec.hard_mask(Vr, inp.threshold, ts)
    return Vr, ts, mask


def _local_cases(data_dir, slow: bool):
    cases = [(n, t, R) for n, t, R in manifest(data_dir) if t is not None and R is not None and R < 15]
    return [c for c in cases if (c[0] in SLOW_SPEC_CHECK) == slow]


def _check_local_sections(reports, name):
    inp, rep = reports[name]
    Vr, ts, mask = _spec_local(inp)
    f, g = rep.sections["0.f"], rep.sections["0.g"]
    assert f.values["resized_box_zyx"] == list(Vr.shape), name
    assert f.values["resized_voxel_size_A"] == pytest.approx(ts, rel=1e-6)
    assert f.values["mask_voxels"] == int(mask.sum())
    pf = spec.locbfactor_percentiles(Vr, ts, mask, inp.resolution)
    # 2 % of each percentile (and of the 2.5–97.5 % spread, for values near 0)
    tol = 0.02 * np.maximum(np.abs(pf), pf[4] - pf[0])
    np.testing.assert_array_less(np.abs(np.array(f.values["percentiles_A2"]) - pf), tol + 1e-9, err_msg=name)
    po = spec.occupancy_percentiles(Vr, ts, mask, inp.resolution)
    np.testing.assert_allclose(g.values["percentiles"], po, atol=0.02, err_msg=name)  # 2 % of [0, 1]


def test_local_sections_equal_the_spec(reports, data_dir):
    """0.f and 0.g within 2 % of the independent implementation on every real map with t and R."""
    cases = _local_cases(data_dir, slow=False)
    assert len(cases) >= 3
    for name, _, _ in cases:
        _check_local_sections(reports, name)


@pytest.mark.slow
def test_local_sections_equal_the_spec_large_maps(reports, data_dir):
    for name, _, _ in _local_cases(data_dir, slow=True):
        _check_local_sections(reports, name)
