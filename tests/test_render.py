"""Renderer: silhouettes of known shapes, the view convention, exact ray crossings, colour ramps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from gpuvalid.backend import cuda_available, get_backend
from gpuvalid.context import MapContext
from gpuvalid.figures.views import colour_views, isosurface_views
from gpuvalid.render import SPEC_VIEWS, render_views, rotation_matrix
from gpuvalid.render.raycast import first_crossing, pixel_centres
from gpuvalid.render.shading import Lighting

CPU = get_backend("cpu")
FLAT = Lighting(key=0.0, fill=0.0, ambient=1.0, specular=0.0, depth_cue=0.0, edge_width=0)


def grid(shape):
    """Voxel index coordinates x, y, z of a ``[z, y, x]`` box."""
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    return x, y, z


def ellipsoid(shape, centre, semi):
    """``1 − r`` with r the ellipsoidal radius: the contour at 0 is the ellipsoid (x, y, z semi-axes)."""
    x, y, z = grid(shape)
    cx, cy, cz = centre
    a, b, c = semi
    r = np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 + ((z - cz) / c) ** 2)
    return (1.0 - r).astype(np.float32)


def extent(hit, axis):
    """Pixels spanned by the silhouette along an image axis (0 rows, 1 columns)."""
    idx = np.flatnonzero(hit.any(axis=1 - axis))
    return idx[-1] - idx[0] + 1


# ---- rotation convention ------------------------------------------------------------------------

def test_rotation_matrices_of_the_spec_views():
    # screen = R @ map: each spec view sends one map axis to the viewer (+z screen)
    Rx, Ry, Rz = (rotation_matrix(v) for v in SPEC_VIEWS)
    np.testing.assert_array_equal(Rx, [[0, 1, 0], [0, 0, 1], [1, 0, 0]])      # Y right, Z up, X to viewer
    np.testing.assert_array_equal(Ry, [[0, 0, 1], [-1, 0, 0], [0, -1, 0]])    # Z right, X down, −Y to viewer
    np.testing.assert_array_equal(Rz, np.eye(3))
    # a single turn about screen x by +90° sends map y to screen z (right-hand rule)
    np.testing.assert_allclose(rotation_matrix((90, 0, 0)) @ [0, 1, 0], [0, 0, 1], atol=1e-12)


# ---- silhouettes of known shapes -----------------------------------------------------------------

@pytest.mark.parametrize("view", SPEC_VIEWS + ((30.0, 20.0, 10.0),))
def test_sphere_is_a_disc_of_known_radius(view):
    R = 9.0
    shape = (26, 30, 34)  # non-cubic box
    V = ellipsoid(shape, (16.5, 14.0, 12.5), (R, R, R)) * R  # signed distance R − |p − c| (voxels)
    (r,) = render_views(CPU, V, 0.0, [view], size=200, crop=False)
    s = r.px_per_voxel
    area_px = r.hit.sum()
    radius_vox = math.sqrt(area_px / math.pi) / s
    assert radius_vox == pytest.approx(R, abs=0.15)
    assert extent(r.hit, 0) / s == pytest.approx(2 * R, abs=0.6)
    assert extent(r.hit, 1) / s == pytest.approx(2 * R, abs=0.6)
    assert r.rgb[~r.hit].min() == 255  # white background


def test_sphere_front_depth_is_exact():
    # view (0,0,0): viewer on +Z; the ray through the centre meets the sphere at z = cz + R
    shape, c, R = (24, 20, 22), (10.0, 9.0, 11.0), 6.0
    V = ellipsoid(shape, c, (R, R, R)) * R
    (r,) = render_views(CPU, V, 0.0, [(0, 0, 0)], size=21 * 4, crop=False)
    s = r.px_per_voxel
    rows = pixel_centres(r.depth.shape[0], shape[1], s)
    cols = pixel_centres(r.depth.shape[1], shape[2], s)
    i = int(np.argmin(np.abs(rows - (shape[1] - 1 - c[1]))))  # row 0 is the top (max y)
    j = int(np.argmin(np.abs(cols - c[0])))
    dz_expected = (shape[0] - 1) - (c[2] + math.sqrt(R * R - (rows[i] - (shape[1] - 1 - c[1])) ** 2
                                                      - (cols[j] - c[0]) ** 2))
    assert r.depth[i, j] == pytest.approx(dz_expected, abs=0.05)


def test_ellipsoid_axes_per_view_non_cubic_box():
    a, b, c = 18.0, 11.0, 6.0  # semi-axes along x, y, z (voxels)
    shape = (20, 30, 44)
    V = ellipsoid(shape, (21.5, 14.5, 9.5), (a, b, c))
    views = render_views(CPU, V, 0.0, SPEC_VIEWS, size=300, crop=False)
    expected = [(2 * c, 2 * b), (2 * a, 2 * c), (2 * b, 2 * a)]  # (vertical, horizontal) per view
    for r, (vert, horiz) in zip(views, expected):
        s = r.px_per_voxel
        assert extent(r.hit, 0) / s == pytest.approx(vert, abs=0.8), r.angles
        assert extent(r.hit, 1) / s == pytest.approx(horiz, abs=0.8), r.angles
    # image shapes follow the box: view X shows (z rows, y cols), view Y (x, z), view Z (y, x)
    box = {"x": 44, "y": 30, "z": 20}
    s = views[0].px_per_voxel
    for r, (rows_ax, cols_ax) in zip(views, [("z", "y"), ("x", "z"), ("y", "x")]):
        assert r.rgb.shape[:2] == (round(box[rows_ax] * s), round(box[cols_ax] * s))


def test_view_directions_and_signs():
    # a small ball displaced towards +x, +y, +z from the box centre
    shape = (31, 31, 31)
    cen = 15.0
    off = {"x": 8.0, "y": 5.0, "z": 3.0}
    V = ellipsoid(shape, (cen + off["x"], cen + off["y"], cen + off["z"]), (2.5, 2.5, 2.5))
    views = render_views(CPU, V, 0.0, SPEC_VIEWS, size=310, crop=False)
    # (screen right, screen up, towards viewer) as signed map offsets for each spec view
    expect = [(off["y"], off["z"], off["x"]),        # down X from +X: Y right, Z up
              (off["z"], -off["x"], -off["y"]),      # down Y from −Y: Z right, X down
              (off["x"], off["y"], off["z"])]        # down Z from +Z: X right, Y up
    for r, (right, up, near) in zip(views, expect):
        s = r.px_per_voxel
        ii, jj = np.nonzero(r.hit)
        col = (jj.mean() + 0.5) / s - 0.5
        row = (ii.mean() + 0.5) / s - 0.5
        assert col - cen == pytest.approx(right, abs=0.3), r.angles
        assert cen - row == pytest.approx(up, abs=0.3), r.angles
        # nearest point of the ball: depth = box front − (centre offset towards viewer) − radius
        assert np.nanmin(r.depth) == pytest.approx(cen - near - 2.5, abs=0.2), r.angles


def test_crop_keeps_the_shape_and_fills_the_image():
    shape = (40, 40, 40)
    V = ellipsoid(shape, (20, 20, 20), (6, 6, 6)) * 6
    (full,) = render_views(CPU, V, 0.0, [(0, 0, 0)], size=256, crop=False)
    (crop,) = render_views(CPU, V, 0.0, [(0, 0, 0)], size=256)
    assert crop.hit.mean() > 3 * full.hit.mean()
    r_full = math.sqrt(full.hit.sum() / math.pi) / full.px_per_voxel
    r_crop = math.sqrt(crop.hit.sum() / math.pi) / crop.px_per_voxel
    assert r_crop == pytest.approx(r_full, abs=0.1)


# ---- the ray crossing against a slow direct search ----------------------------------------------

def test_first_crossing_matches_dense_search():
    rng = np.random.default_rng(3)
    W = ndimage.gaussian_filter(rng.standard_normal((24, 12, 13)), 2.0).astype(np.float32)
    t = float(np.percentile(W, 80))
    rows = np.linspace(0, 11, 17).astype(np.float32)
    cols = np.linspace(0, 12, 19).astype(np.float32)
    depth = first_crossing(CPU, W, rows, cols, t)
    steps = np.arange(0, 23 + 1e-9, 0.005)
    agree = 0
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            coords = np.stack([steps, np.full_like(steps, r), np.full_like(steps, c)])
            prof = ndimage.map_coordinates(W.astype(np.float64), coords, order=1)
            above = np.flatnonzero(prof >= t)
            ref = np.nan if above.size == 0 else steps[above[0]]
            got = depth[i, j]
            if (np.isnan(ref) and np.isnan(got)) or abs(ref - got) <= 0.006:
                agree += 1
    assert agree == len(rows) * len(cols)


# ---- colour views ---------------------------------------------------------------------------------

def test_colour_follows_a_linear_ramp():
    import matplotlib

    shape = (30, 30, 30)
    V = ellipsoid(shape, (14.5, 14.5, 14.5), (11, 11, 11)) * 11
    x, _, _ = grid(shape)
    values = (2.0 * x + 5.0).astype(np.float32)  # local value = 2·x + 5
    lo, hi = 10.0, 50.0
    (r,) = render_views(CPU, V, 0.0, [(0, 0, 0)], size=150, values=values, lo=lo, hi=hi, crop=False,
                        lighting=FLAT)
    s = r.px_per_voxel
    cols = pixel_centres(r.rgb.shape[1], shape[2], s)
    hit = r.hit
    # the value at the surface point is the ramp at that point's x (view Z: x is the image column)
    expected_vals = np.broadcast_to(2.0 * cols[None, :] + 5.0, hit.shape)
    np.testing.assert_allclose(r.values[hit], expected_vals[hit], atol=1e-3)
    # colours: Matplotlib's jet at (v − lo)/(hi − lo), clipped (tolerance: one 256-entry table step)
    f = np.clip((expected_vals - lo) / (hi - lo), 0, 1)
    ref = matplotlib.colormaps["jet"](f)[..., :3] * 255
    err = np.abs(r.rgb.astype(float) - ref)[hit]
    assert np.percentile(err, 99) <= 6.0
    # blue on the left, red on the right
    left = r.rgb[hit & (np.arange(hit.shape[1])[None, :] < hit.shape[1] // 3)].mean(0)
    right = r.rgb[hit & (np.arange(hit.shape[1])[None, :] > 2 * hit.shape[1] // 3)].mean(0)
    assert left[2] > left[0] and right[0] > right[2]


@pytest.mark.parametrize("view", SPEC_VIEWS + ((25.0, -40.0, 10.0), (33.0, 71.0, -12.0)))
def test_radial_values_on_a_sphere_at_any_angle(view):
    # values = distance from the sphere's centre: every surface point carries the radius R, whatever the view
    R = 8.0
    shape = (26, 28, 30)
    centre = (14.2, 13.1, 12.4)
    V = ellipsoid(shape, centre, (R, R, R)) * R
    x, y, z = grid(shape)
    dist = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2).astype(np.float32)
    (r,) = render_views(CPU, V, 0.0, [view], size=160, values=dist, lo=0.0, hi=2 * R, lighting=FLAT)
    vals = r.values[r.hit]
    assert vals.size > 1000 and np.isfinite(vals).all()
    # trilinear interpolation of f = |p − c| on a unit grid errs by ≤ Σᵢ ∂ᵢ²f / 8 = (2/R)/8 = 1/(4R) voxel;
    # the surface (map resampled to the camera frame, then interpolated along the ray) and the sampled
    # value add at most three such errors
    assert np.abs(vals - R).max() <= 3 / (4 * R)


class _FiniteCvalNdimage:
    """scipy.ndimage wrapper that fails on a NaN/inf ``cval`` (CuPy cannot compile ``(Y)nan``) and records
    the fill values (CuPy compiles one kernel per distinct value)."""

    def __init__(self, nd):
        self._nd = nd
        self.cvals = set()

    def __getattr__(self, name):
        fn = getattr(self._nd, name)

        def wrapped(*a, **kw):
            if "cval" in kw:
                assert np.isfinite(kw["cval"]), f"{name} called with cval={kw['cval']}"
                self.cvals.add(float(kw["cval"]))
            return fn(*a, **kw)
        return wrapped


def test_renderer_never_asks_for_a_nan_fill_value():
    from gpuvalid.backend import Backend

    nd = _FiniteCvalNdimage(ndimage)
    be = Backend("numpy", "cpu", np, nd, CPU._fft)
    rng = np.random.default_rng(5)
    V = ndimage.gaussian_filter(rng.standard_normal((30, 34, 38)), 2.5).astype(np.float32)
    t = float(np.percentile(V, 90))
    vals = np.where(V > t + 0.05, V, np.nan).astype(np.float32)  # NaN outside, like a masked local map
    views = list(SPEC_VIEWS) + [(25.0, -40.0, 10.0)]
    a = render_views(be, V, t, views, size=96, values=vals, lo=0.0, hi=1.0)
    b = render_views(CPU, V, t, views, size=96, values=vals, lo=0.0, hi=1.0)
    for ra, rb in zip(a, b):
        np.testing.assert_array_equal(ra.rgb, rb.rgb)
    # a second map with another minimum: still the one fill value (one compiled kernel on the GPU)
    render_views(be, 3 * V - 7, 3 * t - 7, views[-1:], size=64)
    assert nd.cvals == {0.0}


# ---- figure functions ----------------------------------------------------------------------------

def test_figure_functions_write_pngs(tmp_path):
    import matplotlib.image

    shape = (24, 28, 32)
    V = ellipsoid(shape, (15, 13, 11), (9, 7, 5)) * 10
    ctx = MapContext(CPU, V, 1.5, 0.0, 6.0)
    figs = isosurface_views(ctx, tmp_path)
    assert [f.file for f in figs] == ["figures/isosurface_views.png"]
    assert "(0°, −90°, −90°) down map X" in figs[0].caption and "(0°, 0°, 0°) down map Z" in figs[0].caption
    img = matplotlib.image.imread(tmp_path / "isosurface_views.png")
    assert img.shape[0] > 100 and img.shape[1] > 300
    x, _, _ = grid(shape)
    vals = x.astype(np.float32)
    figs = colour_views(ctx, vals, 5.0, 25.0, "local resolution (Å)", tmp_path, "locres")
    assert [f.file for f in figs] == ["figures/locres_views.png"]
    assert (tmp_path / "locres_views.png").is_file()
    # nothing reaches the threshold: no views, no error
    high = MapContext(CPU, V, 1.5, 100.0, 6.0)
    assert isosurface_views(high, tmp_path) == []
    assert colour_views(high, vals, 0, 1, "x", tmp_path, "none") == []


# ---- GPU mirrors CPU -----------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="no CUDA device")
def test_gpu_render_matches_cpu():
    """Depth within 1e-3 voxel on pixels hit by both; ≤ 0.1 % of pixels differ in hit/miss;
    RGB within 2/255 on 99.5 % of pixels (FMA-free kernel, same float32 arithmetic)."""
    gpu = get_backend("cuda")
    rng = np.random.default_rng(7)
    V = ndimage.gaussian_filter(rng.standard_normal((60, 70, 80)), 3.0).astype(np.float32)
    t = float(np.percentile(V, 90))
    x, _, _ = grid(V.shape)
    vals = x.astype(np.float32)
    for kw in ({}, {"values": vals, "lo": 10.0, "hi": 70.0}):
        views = list(SPEC_VIEWS) + [(25.0, -40.0, 10.0)]
        rc = render_views(CPU, V, t, views, size=384, **kw)
        rg = render_views(gpu, V, t, views, size=384, **kw)
        for a, b in zip(rc, rg):
            assert a.rgb.shape == b.rgb.shape
            both = a.hit & b.hit
            assert (a.hit != b.hit).mean() <= 1e-3
            assert np.abs(a.depth[both] - b.depth[both]).max() <= 1e-3
            diff = np.abs(a.rgb.astype(int) - b.rgb.astype(int)).max(axis=2)
            assert (diff <= 2).mean() >= 0.995


def test_colour_table_ends_and_missing_values():
    import matplotlib

    from gpuvalid.render.colour import map_colours

    v = np.array([-5.0, 0.0, 10.0, 20.0, np.nan], dtype=np.float32)
    rgb = map_colours(CPU, v, 0.0, 10.0)
    jet = matplotlib.colormaps["jet"]
    np.testing.assert_allclose(rgb[0], jet(0.0)[:3], atol=1e-6)   # below lo: clipped to the first colour
    np.testing.assert_allclose(rgb[1], jet(0.0)[:3], atol=1e-6)
    np.testing.assert_allclose(rgb[2], jet(1.0)[:3], atol=1e-6)
    np.testing.assert_allclose(rgb[3], jet(1.0)[:3], atol=1e-6)   # above hi: clipped to the last colour
    np.testing.assert_allclose(rgb[4], [0.6, 0.6, 0.6], atol=1e-6)  # no value: grey
    flat = map_colours(CPU, v, 3.0, 3.0)  # degenerate range: mid colour, NaN still grey
    np.testing.assert_allclose(flat[0], flat[2])
    np.testing.assert_allclose(flat[4], [0.6, 0.6, 0.6], atol=1e-6)
