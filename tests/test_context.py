"""The per-map contexts: every lazily computed value lives in one store that release() empties, and what
the sections leave for the report (figure failures) reaches errors.log."""

import numpy as np
import pytest

from gpuvalid.context import MapContext
from gpuvalid.lazy import cached
from gpuvalid.level1.context import HalfMaps, Level1Context


def _blob(n=32, seed=0):
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:n, :n, :n] - (n - 1) / 2
    V = np.exp(-(x * x + 1.5 * y * y + 0.7 * z * z) / (2 * 5.0 ** 2)) + 0.02 * rng.standard_normal((n, n, n))
    return V.astype(np.float32)


def _cached_names(cls):
    return [k for k, v in vars(cls).items() if isinstance(v, cached)]


def test_map_context_release_drops_every_cached_value(cpu):
    ctx = MapContext(cpu, _blob(), 1.5, 0.5, 6.0)
    names = _cached_names(MapContext)
    assert {"V", "raw_mask", "hard_mask", "hard_mask_box", "soft_mask", "resized"} <= set(names)
    first = {k: getattr(ctx, k) for k in names}          # every property computes (a contour and R are given)
    assert set(ctx._lazy) == set(names)
    ctx.local_maps["0.e"] = {"values": None}
    ctx.figure_errors.append("0.e:\nTraceback")
    ctx.release()
    assert ctx._lazy == {} and ctx.cache == {} and ctx.local_maps == {} and ctx.figure_errors == []
    np.testing.assert_array_equal(ctx.hard_mask, first["hard_mask"])      # computed again, the same
    assert ctx.hard_mask_box == first["hard_mask_box"]
    assert ctx.hard_mask_component_sizes == first["hard_mask_component_sizes"]


def test_cached_value_can_be_assigned_and_errors_are_not_cached(cpu):
    ctx = MapContext(cpu, _blob(), 1.5, None, None)
    V = np.zeros((32, 32, 32), np.float32)
    ctx.V = V                                            # a copy made elsewhere (the resized map's device copy)
    assert ctx.V is V and ctx._lazy["V"] is V
    from gpuvalid.errors import NotMeasurable
    for _ in range(2):                                   # no threshold: raises each time, nothing stored
        with pytest.raises(NotMeasurable):
            _ = ctx.hard_mask
    assert "hard_mask" not in ctx._lazy


def test_level1_context_release_drops_every_cached_value(cpu):
    h1, h2 = _blob(24, 1), _blob(24, 2)
    ctx0 = MapContext(cpu, 0.5 * (h1 + h2), 1.5, 0.5, 6.0)
    halves = HalfMaps(paths=("h1.mrc", "h2.mrc"), data=(h1, h2), sha256=("", ""),
                      header_voxel_size=((1.5,) * 3, (1.5,) * 3))
    ctx1 = Level1Context(ctx0, halves)
    names = _cached_names(Level1Context)
    assert {"h1", "h2", "F1", "F2", "M1", "M2", "mask_info", "fsc_unmasked", "binned_masked"} <= set(names)
    for k in names:
        getattr(ctx1, k)
    assert set(ctx1._lazy) == set(names)
    ctx1.cache["half_monogenic"] = object()
    ctx1.release()
    assert ctx1._lazy == {} and ctx1.cache == {}


def _run_with_failing_figure(module, name: str, sid: str, data_dir, tmp_path, monkeypatch):
    """EMD-5168, section ``sid`` only, with ``module.name`` (a figure function) raising: the section's result,
    and what errors.log holds."""
    from gpuvalid.backend import get_backend
    from gpuvalid.io import load_map_input
    from gpuvalid.pipeline import validate

    def fail(*args, **kwargs):
        raise RuntimeError("injected figure failure")

    monkeypatch.setattr(module, name, fail)
    inp = load_map_input(data_dir / "emd_5168.map", threshold=10.0, resolution=6.6)
    res = validate(inp, get_backend("cpu"), tmp_path, only={sid}).sections[sid]
    log = (tmp_path / "errors.log").read_text()
    assert f"figures of section {sid}:" in log and "RuntimeError: injected figure failure" in log
    # and the report says so where the figure is missing
    assert any("could not be drawn (RuntimeError: injected figure failure)" in b for b in res.blocks)
    return res


def test_figure_failures_of_level0_sections_reach_errors_log(data_dir, tmp_path, monkeypatch):
    # a figure that cannot be drawn leaves the section's numbers as they are and its traceback in errors.log
    import gpuvalid.figures.bfactor as figs

    res = _run_with_failing_figure(figs, "guinier_png", "0.d", data_dir, tmp_path, monkeypatch)
    assert res.status in ("ok", "warnings") and not res.figures


def test_colour_view_failures_of_local_sections_are_logged_with_their_section(data_dir, tmp_path, monkeypatch):
    # the views of a local map (0.f here) failing: the histogram is still drawn, the failure is logged under 0.f
    import gpuvalid.figures.views as views

    res = _run_with_failing_figure(views, "colour_views", "0.f", data_dir, tmp_path, monkeypatch)
    assert [f.file.split("/")[-1] for f in res.figures] == ["locbfactor_histogram.png"]


def test_level1_start_sheds_what_only_level0_reads(cpu):
    """Level1Context.shed_level0: the map, its contour mask and the resized map are dropped from the primary
    map's context (computed again on use, the same), the hard and soft masks and the contour count stay."""
    V = _blob()
    ctx = MapContext(cpu, V, 1.5, 0.5, 6.0)
    raw, n = np.asarray(ctx.raw_mask).copy(), ctx.raw_mask_voxels
    _ = ctx.soft_mask, ctx.resized
    ctx1 = Level1Context(ctx, HalfMaps(("a", "b"), (V, V + 1), ("-", "-"), ((1.5,) * 3,) * 2))
    ctx1.shed_level0()
    assert not set(ctx._lazy) & set(MapContext.LEVEL0_ONLY)
    assert {"hard_mask", "soft_mask", "raw_mask_voxels"} <= set(ctx._lazy)
    ctx.require_mask()                                   # reads the kept count: makes nothing again
    assert "raw_mask" not in ctx._lazy
    np.testing.assert_array_equal(ctx.raw_mask, raw)
    assert ctx.raw_mask_voxels == n
