"""Simulation of training maps: parser, Gaussian atoms, filters, helices, mirroring, splits."""

import numpy as np
import pytest

from gpuvalid.simulate import filters, sources
from gpuvalid.simulate.density import ATOM_SIGMA_A, atom_density, random_rotation
from gpuvalid.simulate.helix import helix_residues
from gpuvalid.simulate.structure import Atoms, read_atoms

PDB = """\
ATOM      1  N   ALA A   1      11.104   6.134  -6.504  1.00  0.00           N
ATOM      2  CA  ALA A   1      11.639   6.071  -5.147  1.00  0.00           C
ATOM      3  HA  ALA A   1      11.000   6.000  -5.000  1.00  0.00           H
HETATM    4  O   HOH A 101       1.000   2.000   3.000  1.00  0.00           O
HETATM    5 ZN    ZN A 102       4.000   5.000   6.000  1.00  0.00          ZN
END
"""

CIF = """data_test
loop_
_atom_site.group_PDB
_atom_site.id
_atom_site.type_symbol
_atom_site.label_atom_id
_atom_site.label_alt_id
_atom_site.label_comp_id
_atom_site.label_asym_id
_atom_site.label_seq_id
_atom_site.Cartn_x
_atom_site.Cartn_y
_atom_site.Cartn_z
_atom_site.pdbx_PDB_model_num
ATOM 1 N N . ALA A 1 11.104 6.134 -6.504 1
ATOM 2 C CA . ALA A 1 11.639 6.071 -5.147 1
ATOM 3 C CA . ALA A 1 99.0 99.0 99.0 2
#
"""


def test_read_pdb_and_cif(tmp_path):
    p = tmp_path / "x.pdb"
    p.write_text(PDB)
    a = read_atoms(p)
    assert list(a.element) == ["N", "C", "ZN"]          # hydrogen and water dropped
    assert list(a.z) == [7, 6, 30]
    np.testing.assert_allclose(a.xyz[1], [11.639, 6.071, -5.147])
    c = tmp_path / "x.cif"
    c.write_text(CIF)
    b = read_atoms(c)
    assert len(b) == 2                                  # second model ignored
    np.testing.assert_allclose(b.xyz, a.xyz[:2])


def test_unlabelled_alternate_copies_are_read_once(tmp_path):
    """A residue whose side chain is written twice without alternate-location labels keeps its first copy."""
    lines = ["ATOM      1  CA  MET A   1      61.764   3.419  13.552  1.00100.00           C",
             "ATOM      2  CG  MET A   1      59.921   3.884  11.838  1.00100.00            ",
             "ATOM      3  SD  MET A   1      59.411   5.087  10.595  1.00100.00            ",
             "ATOM      4  CG  MET A   1      58.000   3.000  11.000  1.00100.00            ",
             "ATOM      5  SD  MET A   1      59.411   5.087  10.595  1.00100.00            ",
             "ATOM      6  CA  MET A   2      64.000   3.419  13.552  1.00100.00           C"]
    p = tmp_path / "dup.pdb"
    p.write_text("\n".join(lines) + "\nEND\n")
    a = read_atoms(p)
    assert list(a.name) == ["CA", "CG", "SD", "CA"]
    np.testing.assert_allclose(a.xyz[1], [59.921, 3.884, 11.838])


def _one_atom(xyz, z=6.0):
    return Atoms(np.array([xyz], float), np.array(["C"]), np.array([z]), np.array(["CA"]),
                 np.array(["A|1|"]), np.array(["ALA"]))


def test_gaussian_atom_mass_centre_and_width():
    a = _one_atom([10.3, 12.0, 9.6])
    B = 20.0
    V, origin = atom_density(a, 0.5, shape=(48, 48, 48), origin_A=(0, 0, 0), bfactor_A2=B)
    assert V.sum() == pytest.approx(6.0, rel=1e-3)        # integral = atomic number
    g = np.indices(V.shape).reshape(3, -1) * 0.5
    w = V.ravel() / V.sum()
    c = (g * w).sum(1)                                    # z, y, x
    np.testing.assert_allclose(c, [9.6, 12.0, 10.3], atol=0.02)
    var = ((g - c[:, None]) ** 2 * w).sum(1)
    expected = ATOM_SIGMA_A**2 + B / (8 * np.pi**2)       # Gaussian variance per axis, Å²
    # trilinear spreading + its average (sinc²) correction: exact on average, ±0.05 Å² with the sub-voxel position
    np.testing.assert_allclose(var, expected, atol=0.05)


def test_lowpass_keeps_low_and_removes_high_frequencies():
    n, ts = 64, 1.0
    x = np.arange(n)
    low = np.sin(2 * np.pi * 4 * x / n)      # 16 Å period
    high = np.sin(2 * np.pi * 16 * x / n)    # 4 Å period
    V = np.broadcast_to(low + high, (n, n, n)).astype(np.float32)
    out = filters.lowpass(V, ts, 8.0)
    np.testing.assert_allclose(out[0, 0], low, atol=1e-4)


def test_blend_with_constant_field_is_lowpass():
    rng = np.random.default_rng(0)
    V = rng.normal(size=(24, 24, 24)).astype(np.float32)
    field = np.full(V.shape, 5.0, np.float32)
    np.testing.assert_allclose(filters.blend_resolutions(V, 1.0, field), filters.lowpass(V, 1.0, 5.0), atol=1e-5)
    # a two-valued field: each voxel is the copy filtered at its own resolution
    field[:12] = 4.0
    field[12:] = 8.0
    b = filters.blend_resolutions(V, 1.0, field, n_levels=2)
    np.testing.assert_allclose(b[:12], filters.lowpass(V, 1.0, 4.0)[:12], atol=1e-5)
    np.testing.assert_allclose(b[12:], filters.lowpass(V, 1.0, 8.0)[12:], atol=1e-5)


def test_noise_sigma_and_band_limit():
    rng = np.random.default_rng(1)
    n = filters.coloured_noise((32, 32, 32), rng, 1.0, 0.7, nyquist_A=4.0)
    assert n.std() == pytest.approx(0.7, rel=1e-3)
    F = np.abs(np.fft.fftn(n))
    f = np.sqrt(sum(g**2 for g in np.meshgrid(*[np.fft.fftfreq(32)] * 3, indexing="ij")))
    assert F[f > 0.26].max() < 1e-3 * F.max()


def _ideal_helix(n=20, right=True):
    """Cα trace of an ideal α-helix: radius 2.3 Å, rise 1.5 Å, +100° per residue (right-handed)."""
    t = np.radians(100.0) * np.arange(n) * (1 if right else -1)
    xyz = np.stack([2.3 * np.cos(t), 2.3 * np.sin(t), 1.5 * np.arange(n)], 1)
    return Atoms(xyz, np.array(["C"] * n), np.full(n, 6.0), np.array(["CA"] * n),
                 np.array([f"A|{i}|" for i in range(n)]), np.array(["ALA"] * n))


def test_helix_detection_and_its_mirror():
    right = _ideal_helix()
    assert len(helix_residues(right)) == 20
    mirrored = right.transformed(np.diag([-1.0, 1.0, 1.0]))
    assert len(helix_residues(mirrored)) == 0
    assert len(helix_residues(_ideal_helix(right=False))) == 0
    rot = random_rotation(np.random.default_rng(3))
    assert np.linalg.det(rot) == pytest.approx(1.0)
    assert len(helix_residues(right.transformed(rot))) == 20      # proper rotations keep the hand


def test_mirror_is_an_involution():
    V = np.random.default_rng(0).normal(size=(5, 6, 7))
    np.testing.assert_array_equal(filters.mirror(filters.mirror(V)), V)
    np.testing.assert_array_equal(filters.mirror(V)[:, :, 0], V[:, :, -1])


def test_split_by_group():
    sp = sources.splits()
    groups = {k: {s.group for s in v} for k, v in sp.items()}
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])
    assert not (groups["val"] & groups["test"])
    assert "3j6b_chain9" in {s.name for s in sp["test"]}
    assert {"1j6z", "3mfp"} <= {s.name for s in sp["test"]}
    assert len(sp["train"]) >= 20 and len(sp["test"]) >= 8


def test_threshold_for_volume():
    V = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    t = filters.threshold_for_volume(V, 100)
    assert (V >= t).sum() == 100


def test_anisotropic_frequency_scales_one_axis():
    """Along the axis u the effective frequency is a·|s|, across it |s| (resolution a× worse along u)."""
    s = filters.anisotropic_frequency((16, 16, 16), 1.0, (0.0, 0.0, 1.0), 1.5)   # u = z
    fz = np.fft.fftfreq(16)
    fx = np.fft.rfftfreq(16)
    assert s[3, 0, 0] == pytest.approx(1.5 * abs(fz[3]))
    assert s[0, 0, 3] == pytest.approx(fx[3])


def test_shaped_noise_follows_the_signal_spectrum():
    rng = np.random.default_rng(2)
    sig = filters.lowpass(rng.normal(size=(32, 32, 32)).astype(np.float32), 1.0, 6.0)
    n = filters.shaped_noise(sig, rng, 1.0, 0.5)
    assert n.std() == pytest.approx(0.5, rel=1e-3)
    F = np.abs(np.fft.fftn(n))
    f = np.sqrt(sum(g**2 for g in np.meshgrid(*[np.fft.fftfreq(32)] * 3, indexing="ij")))
    assert F[f > 0.25].mean() < 0.05 * F[(f > 0.02) & (f < 0.1)].mean()   # little beyond 1/(1.1·6 Å)


def test_bfactor_sharpening_is_inverse_of_blurring():
    rng = np.random.default_rng(3)
    V = filters.lowpass(rng.normal(size=(24, 24, 24)).astype(np.float32), 1.0, 4.0)
    back = filters.bfactor(filters.bfactor(V, 1.0, 60.0), 1.0, -60.0)
    np.testing.assert_allclose(back, V, atol=1e-4 * float(np.abs(V).max()))


def test_deposit_like_maps_keep_their_truth():
    """Deposited-looking training maps: finite, truth inside the range, masked ones zero far from the
    molecule, and a map's local resolution follows its truth (finer-truth half has more high-frequency
    power)."""
    from gpuvalid.simulate.maps import simulate_locres

    atoms = _random_protein()
    rng = np.random.default_rng(4)
    seen_mask = False
    for _ in range(6):
        m = simulate_locres(atoms, rng, res_range=(2.0, 13.0), crop_radius_A=None, deposit=True)
        assert np.isfinite(m.V).all() and m.mask.any()
        assert 2.0 <= m.local_res.min() and m.local_res.max() <= 13.0 * 1.5 ** (1 / 3) + 1e-4
        if "mask_A" in m.params:
            seen_mask = True
            assert np.mean(m.V == 0) > 0.05
    assert seen_mask


def _random_protein(n=1500, seed=0):
    xyz = np.random.default_rng(seed).uniform(0, 1, size=(n, 3)) * np.array([30.0, 26.0, 22.0])
    return Atoms(xyz, np.array(["C"] * n), np.full(n, 6.0), np.array(["CA"] * n),
                 np.array([f"A|{i}|" for i in range(n)]), np.array(["ALA"] * n))
