"""The PyTorch networks: a tiny model learns on simulated maps; inference is deterministic and tiled
inference equals whole-map evaluation."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gpuvalid.models import infer, nets, train  # noqa: E402
from gpuvalid.simulate.structure import Atoms  # noqa: E402

TINY = (1, 4, 4, 4, 4, 4, 4)


def _blobs(seed=0, n=300):
    """A random 'protein': n carbon atoms in a 14 Å ball, chained so that consecutive Cα are 3.8 Å apart."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(n, 3))
    steps *= 3.8 / np.linalg.norm(steps, axis=1, keepdims=True)
    xyz = np.cumsum(steps, 0)
    xyz = 14 * xyz / np.abs(xyz - xyz.mean(0)).max() + 30
    return [(None, Atoms(xyz, np.array(["C"] * n), np.full(n, 6.0), np.array(["CA"] * n),
                         np.array([f"A|{i}|" for i in range(n)]), np.array(["ALA"] * n)))]


def test_tiny_locres_model_learns():
    rng = np.random.default_rng(0)
    data = train.locres_patches(_blobs(), rng, maps_per_structure=2, patches_per_map=6, patch=18)
    torch.manual_seed(0)
    before = train.evaluate_patches("locres", nets.build("locres", TINY), data)
    net, hist = train.fit("locres", data, None, seed=0, steps=40, batch=6, lr=1e-2, log=lambda m: None, log_every=5,
                          channels=TINY)
    after = train.evaluate_patches("locres", net, data)
    assert len(hist["train_loss"]) == 8
    assert np.mean(hist["train_loss"][-2:]) < np.mean(hist["train_loss"][:2])
    assert after < before                      # MAE in Å on its training patches fell


def test_inference_deterministic_and_tiles_agree():
    torch.manual_seed(3)
    net = nets.build("locres", TINY).eval()
    x = np.random.default_rng(0).normal(size=(20, 23, 17)).astype(np.float32)
    a = infer.apply_fcn(net, x, tile=48)
    b = infer.apply_fcn(net, x, tile=7)
    c = infer.apply_fcn(net, x, tile=48)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_allclose(a, b, atol=1e-5)
    # direct evaluation of the whole padded map: the same function
    r = net.receptive_field // 2
    with torch.no_grad():
        d = net(torch.from_numpy(np.pad(x, r, mode="reflect"))[None, None])[0].numpy()
    np.testing.assert_allclose(a, d, atol=1e-5)
    assert (a >= 2.0).all() and (a <= 13.0).all()


def test_receptive_field_is_13():
    torch.manual_seed(0)
    net = nets.build("locres", TINY).eval()
    assert net.receptive_field == 13
    x = torch.zeros(1, 1, 25, 25, 25)
    y0 = net(x)
    x[0, 0, 12 + 7, 12, 12] = 5.0      # outside the 13³ cube of output voxel (6, 6, 6)
    assert torch.equal(net(x)[0, 6, 6, 6], y0[0, 6, 6, 6])
    x[0, 0, 12 + 6, 12, 12] = 5.0      # on its edge
    assert not torch.equal(net(x)[0, 6, 6, 6], y0[0, 6, 6, 6])


def test_save_and_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = nets.build("locres", TINY)
    p = train.save(net, "locres", tmp_path, {"seed": 0})
    infer.load.cache_clear()
    back = infer.load("locres", str(p))
    x = torch.randn(1, 1, 15, 15, 15)
    with torch.no_grad():
        assert torch.equal(back(x), net.eval()(x))


def test_fine_model_keeps_its_range_and_grid(tmp_path):
    """The fine model (0.5 Å working grid) stores its output range; inference clamps to [max(lo, 2·Ts), hi]."""
    torch.manual_seed(0)
    net = nets.build("locres_fine", TINY, (1.0, 7.0))
    p = train.save(net, "locres_fine", tmp_path, {"seed": 0})
    infer.load.cache_clear()
    back = infer.load("locres", str(p))
    assert (back.LO, back.HI) == (1.0, 7.0)
    V = np.random.default_rng(1).normal(size=(20, 18, 22)).astype(np.float32)
    mask = np.zeros(V.shape, bool)
    mask[6:14, 5:12, 8:15] = True
    out = infer.predict_locres(V, 0.8, mask, path=str(p), kind="locres_fine")
    assert np.isfinite(out[mask]).all() and np.isnan(out[~mask]).all()
    assert out[mask].min() >= 1.6 - 1e-6 and out[mask].max() <= 7.0 + 1e-6
    assert infer.P.working_shape(V.shape, 0.8, infer.FINE_GRID_A) == (32, 29, 35)


def test_fine_model_is_chosen_below_2A_only_when_shipped(tmp_path, monkeypatch):
    from gpuvalid import models
    from gpuvalid.analyses import locres

    monkeypatch.setattr(infer, "weights_path", lambda name: tmp_path / f"{name}.pt")
    monkeypatch.setattr(models, "weights_path", lambda name: tmp_path / f"{name}.pt")
    assert infer.locres_kind(1.8) == "locres" and locres.r_range() == (2.0, 13.0)
    train.save(nets.build("locres_fine", TINY, (1.0, 7.0)), "locres_fine", tmp_path, {})
    assert infer.locres_kind(1.8) == "locres_fine" and infer.locres_kind(2.5) == "locres"
    assert locres.r_range() == (1.5, 13.0)
