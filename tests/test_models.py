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
