"""The hand evidence (0.h): helical-twist features are rotation-invariant and exactly odd under a mirror,
an ideal right-handed helix gives the sign proteins give, and the bias-free hand model learns and keeps
``score(mirror) = 1 − score``."""

import numpy as np
import pytest

from gpuvalid.backend import get_backend
from gpuvalid.models.chirality import twist_features
from gpuvalid.simulate.filters import mirror


def helix_map(hand: int = +1, n: int = 48, radius: float = 2.3, pitch: float = 5.4, per_turn: int = 20,
              atom_sigma: float = 1.3, turns: float = 7.0) -> np.ndarray:
    """A helical tube along z with the alpha helix's radius and pitch (1 Å voxels, array [z, y, x]):
    Gaussians every 360°/per_turn on ``x = r·cos t, y = r·sin t, z = pitch·t/2π``, right-handed in
    (x, y, z) for ``hand`` = +1."""
    rise = pitch / per_turn
    c = (n - 1) / 2
    t = np.arange(-turns * per_turn / 2, turns * per_turn / 2) * 2 * np.pi / per_turn
    pts = np.stack([rise * t * per_turn / (2 * np.pi), radius * np.sin(hand * t), radius * np.cos(t)], 1) + c
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=np.float32)] * 3, indexing="ij")
    V = np.zeros((n, n, n), np.float32)
    for z, y, x in pts:
        V += np.exp(-((zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2) / (2 * atom_sigma**2))
    return V


@pytest.fixture(scope="module")
def right():
    V = helix_map(+1)
    return V, V >= 0.3 * V.max()


def test_mirror_reverses_every_feature(right):
    V, mask = right
    be = get_backend("cpu")
    f = np.array(twist_features(be, V, mask, 1.0)["features"])
    for ax in range(3):
        fm = np.array(twist_features(be, np.flip(V, ax).copy(), np.flip(mask, ax).copy(), 1.0)["features"])
        np.testing.assert_allclose(fm, -f, rtol=1e-4, atol=1e-7)


def test_rotation_leaves_features_unchanged(right):
    V, mask = right
    be = get_backend("cpu")
    f = np.array(twist_features(be, V, mask, 1.0)["features"])
    for axes in ((0, 1), (0, 2), (1, 2)):
        fr = np.array(twist_features(be, np.rot90(V, 1, axes).copy(), np.rot90(mask, 1, axes).copy(),
                                     1.0)["features"])
        np.testing.assert_allclose(fr, f, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("radius, sigma", [(2.3, 1.3), (2.3, 1.0), (3.0, 1.2)])
def test_right_handed_helix_is_negative(radius, sigma):
    """The sign convention of the docs: a right-handed helical tube gives T < 0 at most scale pairs and in
    sum; its left-handed twin the opposite."""
    be = get_backend("cpu")
    for hand, sign in ((+1, -1), (-1, +1)):
        V = helix_map(hand, radius=radius, atom_sigma=sigma)
        f = sign * np.array(twist_features(be, V, V >= 0.3 * V.max(), 1.0)["features"])
        assert f.sum() > 0 and (f > 0).sum() >= 6


def test_blocks_sum_to_the_features_and_mirror(right):
    """The block sums add up to the features' numerators and denominators; a mirror along an array axis
    maps the centroid-centred block grid onto itself, so its block sums are the map's, numerators negated."""
    V, mask = right
    be = get_backend("cpu")
    r = twist_features(be, V, mask, 1.0)
    assert r["block_num"].shape[0] > 8
    np.testing.assert_allclose(r["block_num"].sum(0) / r["block_den"].sum(0), r["features"], rtol=1e-9)
    rm = twist_features(be, mirror(V), mirror(mask), 1.0)
    key = lambda a: np.lexsort(np.round(a.T, 6))  # noqa: E731  (blocks in another order)
    np.testing.assert_allclose(rm["block_den"][key(rm["block_den"])], r["block_den"][key(r["block_den"])],
                               rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(np.sort(rm["block_num"].sum(1)), np.sort(-r["block_num"].sum(1)), rtol=1e-3, atol=1e-9)


def test_voxel_cap_keeps_the_features(right, monkeypatch):
    """On large maps a fixed pseudo-random third of the mask gives the same means within sampling error."""
    import gpuvalid.models.chirality as C

    V, mask = right
    be = get_backend("cpu")
    a = np.array(twist_features(be, V, mask, 1.0)["features"])
    monkeypatch.setattr(C, "MAX_VOXELS", int(mask.sum()) // 3)
    r = twist_features(be, V, mask, 1.0)
    assert abs(r["n_voxels"] - mask.sum() / 3) < 0.15 * mask.sum()
    np.testing.assert_allclose(r["features"], a, rtol=0.15)


def test_hand_model_learns_and_is_odd(right, tmp_path):
    pytest.importorskip("torch")  # training uses torch; inference does not
    import json

    from gpuvalid.models import hand_model, train

    be = get_backend("cpu")
    rng = np.random.default_rng(0)
    feats = []
    for _ in range(6):   # right-handed helices of varied geometry, some noise
        V = helix_map(+1, radius=rng.uniform(2.1, 2.5), pitch=rng.uniform(5.0, 5.8), atom_sigma=rng.uniform(1.0, 1.5))
        V += rng.normal(scale=0.05, size=V.shape).astype(np.float32)
        feats.append(twist_features(be, V, V >= 0.3 * V.max(), 1.0)["features"])
    data = {"x": np.array(feats)}
    model, hist = train.fit_hand(data, seed=0, steps=100, log=lambda m: None)
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert train.hand_accuracy(model, data) == 1.0
    p = tmp_path / "hand.json"
    p.write_text(json.dumps(model))
    V, mask = right
    s = hand_model.hand_score(be, V, 1.0, 0.3 * float(V.max()), p)
    sm = hand_model.hand_score(be, mirror(V), 1.0, 0.3 * float(V.max()), p)
    assert s["score"] < 0.5 < sm["score"]
    assert sm["score"] == pytest.approx(1.0 - s["score"], abs=1e-6)


@pytest.mark.gpu
def test_twist_features_gpu_equal_cpu(right, cpu, gpu):
    """CuPy/cupyx path of the features equals the NumPy/SciPy path: 1e-4 relative (float32 filters, float64
    sums; the features are ratios of sums over the mask)."""
    V, mask = right
    ra = twist_features(cpu, V, mask, 1.0)
    rb = twist_features(gpu, gpu.asarray(V), gpu.asarray(mask), 1.0)
    np.testing.assert_allclose(np.array(rb["features"]), np.array(ra["features"]), rtol=1e-4, atol=1e-7)
    for k in ("block_num", "block_den"):   # the same blocks, in the same order (the jackknife's input)
        assert rb[k].shape == ra[k].shape
        np.testing.assert_allclose(rb[k], ra[k], rtol=1e-3, atol=1e-6 * np.abs(ra[k]).max())
