"""0.h abstains when the evidence is weak: real maps (≤ 5 Å) and their mirrors are called right or not at all;
nucleic-acid density and a small β-rich segment give "could not be measured"; a clear helical protein is still
called.  Expected answers come from construction: a deposited map with a fitted protein model has the correct
hand, and a mirror flips it."""

import numpy as np
import pytest

from gpuvalid import models
from gpuvalid.backend import get_backend
from gpuvalid.context import MapContext
from gpuvalid.models import hand_model as H
from gpuvalid.runner import run_section
from gpuvalid.simulate.filters import mirror
from gpuvalid.simulate.helix import helix_residues
from gpuvalid.simulate.maps import simulate_uniform
from gpuvalid.simulate.structure import read_atoms

pytestmark = pytest.mark.skipif(not models.weights_path("hand").is_file(), reason="the shipped hand model is missing")


def _section(V, voxel_size, t, R):
    return run_section("gpuvalid.analyses.hand", "0.h", "Hand", MapContext(get_backend("cpu"), V, voxel_size, t, R))


def test_jackknife_is_the_delete_one_formula():
    """Log-odds and its error from block sums equal a direct loop over left-out blocks."""
    rng = np.random.default_rng(0)
    model = {"weights": list(rng.normal(size=4)), "rms": list(rng.uniform(0.5, 2, 4))}
    bn, bd = rng.normal(size=(9, 4)), rng.uniform(0.5, 1.5, size=(9, 4))
    c = np.array(model["weights"]) / np.array(model["rms"])
    full = float(c @ (bn.sum(0) / bd.sum(0)))
    loo = np.array([c @ (np.delete(bn, i, 0).sum(0) / np.delete(bd, i, 0).sum(0)) for i in range(9)])
    se = np.sqrt(8 / 9 * np.sum((loo - loo.mean()) ** 2))
    L, s, n = H.jackknife(model, bn, bd)
    assert n == 9 and L == pytest.approx(full, rel=1e-12) and s == pytest.approx(se, rel=1e-12)
    # the mirror's block sums are the negated numerators: same error, opposite log-odds
    Lm, sm, _ = H.jackknife(model, -bn, bd)
    assert Lm == pytest.approx(-L, rel=1e-12) and sm == pytest.approx(s, rel=1e-12)


# ------------------------------------------------------------------------------------------------ real maps
REAL = [("emd_3488.mrc", 0.09), ("emd_2566_crop_3j6b_chain9.mrc", None), ("emd_0093_masked.mrc.gz", 0.7)]


@pytest.fixture(scope="module")
def real_evidence(data_dir):
    """Hand evidence of each real map ≤ 5 Å (MANIFEST contour; the EMD-2566 crop's by the volume rule of
    tests/test_locres_hand.py) and of its x-mirror."""
    from gpuvalid.io import load_map_input

    from .test_locres_hand import emd2566_threshold

    be = get_backend("cpu")
    out = {}
    for name, t in REAL:
        inp = load_map_input(str(data_dir / name))
        if t is None:
            t = emd2566_threshold(inp.data, inp.voxel_size, data_dir)
        out[name] = (H.hand_score(be, inp.data, inp.voxel_size, t),
                     H.hand_score(be, mirror(inp.data), inp.voxel_size, t))
    return out


@pytest.mark.parametrize("name", [n for n, _ in REAL])
def test_real_map_and_mirror_right_or_abstain(real_evidence, name):
    """Never a confident wrong call: the deposited map scores < 0.5 or abstains, its mirror > 0.5 or abstains."""
    ev, evm = real_evidence[name]
    assert ev["abstain"] is not None or ev["score"] < 0.5
    assert evm["abstain"] is not None or evm["score"] > 0.5


@pytest.mark.parametrize("name", [n for n, _ in REAL])
def test_real_maps_are_still_called(real_evidence, name):
    """These protein maps (3.2–3.4 Å, many helices) carry strong evidence: abstaining here would be a loss."""
    ev, evm = real_evidence[name]
    assert ev["abstain"] is None and evm["abstain"] is None
    assert abs(ev["z"]) > 1.5 * H.load()["abstain"]["z_min"]


# ------------------------------------------------------------------------------------------ simulated maps
@pytest.fixture(scope="module")
def models_dir(data_dir):
    return data_dir / "models"


def test_nucleic_acid_abstains(models_dir):
    """A 78-nt RNA alone at 4 Å (the fine-scale twist of RNA reads as mirrored protein): not measured, and
    the reason names nucleic acid — for the map and for its mirror."""
    m = simulate_uniform(read_atoms(models_dir / "6v5b_drna.pdb"), np.random.default_rng(1), 4.0,
                         with_helix=False, crop_radius_A=None, noise_k=0.3)
    for V in (m.V, mirror(m.V)):
        r = _section(V, m.voxel_size, m.threshold, 4.0)
        assert r.status == "not_measured" and "nucleic acid" in r.reason


def _beta_segment(models_dir, radius_A=16.0):
    """A β-rich segment of the HIV Env trimer (5fuu): the atoms within ``radius_A`` of the Cα with no helical
    residue (and the most Cα) within that radius, at 3.2 Å, density zeroed outside the molecule (≈ 48³ box)."""
    from gpuvalid.models.hand_calibrate import segment

    a = read_atoms(models_dir / "pdb5fuu.ent")
    ca = np.flatnonzero(a.name == "CA")
    helical = np.isin(a.res_key[ca], list(helix_residues(a)))
    xyz = a.xyz[ca]
    near = np.linalg.norm(xyz[:, None] - xyz[None], axis=2) <= radius_A
    frac = (near & helical[None]).sum(1) / near.sum(1)
    best = np.lexsort((-near.sum(1), frac))[0]
    assert frac[best] == 0.0
    sub = a.subset(np.linalg.norm(a.xyz - xyz[best], axis=1) <= radius_A)
    m = simulate_uniform(sub, np.random.default_rng(0), 3.2, with_helix=False, crop_radius_A=None, noise_k=0.3)
    V, _ = segment(m.V, m.mask)
    return V, m.threshold


def test_small_beta_segment_abstains(models_dir):
    V, t = _beta_segment(models_dir)
    assert max(V.shape) <= 56
    for W in (V, mirror(V)):
        r = _section(W, 1.0, t, 3.2)
        assert r.status == "not_measured" and "too weak" in r.reason


def test_helical_protein_is_still_called(models_dir):
    """3j6b chain 9 (66 % helix) at 3.5 Å: called right; its mirror called mirrored with score 1 − score."""
    m = simulate_uniform(read_atoms(models_dir / "3j6b_chain9.pdb"), np.random.default_rng(0), 3.5,
                         with_helix=False, crop_radius_A=None, noise_k=0.2)
    r = _section(m.V, m.voxel_size, m.threshold, 3.5)
    rm = _section(mirror(m.V), m.voxel_size, m.threshold, 3.5)
    assert r.status == "ok" and r.values["score"] < 0.4 and r.values["z"] <= -H.load()["abstain"]["z_min"]
    assert rm.status == "warnings" and any("mirrored" in w for w in rm.warnings)
    assert rm.values["score"] == pytest.approx(1.0 - r.values["score"], abs=1e-6)
    assert rm.values["logit_se"] == pytest.approx(r.values["logit_se"], rel=1e-5)


def test_fit_weights_favours_the_consistent_feature():
    """Refitting for evidence moves the weight to the feature that agrees across blocks, raises every map's
    |z| and keeps the model bias-free (a map's mirror has the negated block numerators: opposite z)."""
    from gpuvalid.models.hand_calibrate import fit_weights

    rng = np.random.default_rng(0)
    rows = []
    for _ in range(12):
        bn = np.stack([rng.normal(-1.0, 0.3, 30), rng.normal(-1.0, 4.0, 30)], 1)
        rows.append({"category": "helical", "block_num": bn, "block_den": np.ones((30, 2))})
    model = {"weights": [1.0, 1.0], "rms": [1.0, 1.0], "scales": [[1, 2], [1, 3]]}
    fitted = fit_weights(model, rows)
    w = np.array(fitted["weights"])
    assert w[0] > 0 and abs(w[0]) > 5 * abs(w[1])
    for r in rows:
        L0, s0, _ = H.jackknife(model, r["block_num"], r["block_den"])
        L1, s1, _ = H.jackknife(fitted, r["block_num"], r["block_den"])
        Lm, sm, _ = H.jackknife(fitted, -r["block_num"], r["block_den"])
        assert L1 / s1 <= L0 / s0 + 1e-9 and Lm == pytest.approx(-L1) and sm == pytest.approx(s1)
