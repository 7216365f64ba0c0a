"""Calibrate when the hand model (0.h) abstains: ``python -m gpuvalid.models.hand_calibrate [--fit-weights]``.

Starts from the classifier in ``hand.json`` (trained by ``python -m gpuvalid.models.train hand``); with
``--fit-weights`` its weights are first refit on the training-split maps below to maximise the evidence
(:func:`fit_weights`: the jackknife ``z`` of every map, not only the sign); then the abstention rule
``"abstain"`` is added to ``hand.json`` and a ``"calibration"`` entry (held-out numbers) to
``hand_metrics.json`` (with ``--fit-weights`` also the classifier's held-out ``test`` accuracies again).
Seeded; CPU only; 10–30 minutes on 2 cores.

Calibration maps (train and validation structures), each simulated at a resolution drawn in 2.5–5 Å:

- every protein as a whole model, a 25 Å crop and two *segments* (a 12–18 Å crop whose density is zeroed
  outside the molecule, as deposited segments are): helical, mixed and β-rich proteins alike;
- the nucleic-acid model 6v5b_drna (78-nt RNA) in the same four modes, four times over;
- protein + RNA complexes (each protein beside 6v5b_drna, about half and half by atoms).

Rules, all mirror-even (a map and its mirror abstain alike):

- ``duplex_max``: 1.25 × the largest coarse twist ``|T(2.5 Å, 6 Å)|`` of any protein-only map: above it the
  density is taken as dominated by nucleic acid;
- ``z_min``: the larger of 2 (one-sided 97.7 % that the sign is right, for a normal log-odds) and 1.25 × the
  largest ``|z|`` of any wrong-sign map not already set aside by the duplex rule;
- ``min_blocks``: 8 blocks of 12 Å at least (a jackknife over fewer blocks is not a usable error).

Held-out evaluation: the test structures in the same modes (and with RNA) and, by construction, their
mirror images (the features and block sums are odd, so the mirror's are their negatives: a mirror flips
the call and never changes the abstention).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from gpuvalid.simulate import sources
from gpuvalid.simulate.density import random_rotation
from gpuvalid.simulate.helix import helix_fraction
from gpuvalid.simulate.maps import simulate_uniform
from gpuvalid.simulate.structure import Atoms, read_atoms

from . import WEIGHTS_DIR, hand_model as H
from .chirality import BLOCK_A

RES_RANGE = (2.5, 5.0)
MODES = ("whole", "crop25", "segment", "segment")
NA_NAME = "6v5b_drna"
MIN_BLOCKS = 8
MARGIN = 1.25


def category(helix: float, na: bool, mixed: bool) -> str:
    """Calibration category of a map from its helical fraction ``helix`` and whether it is nucleic acid or mixed.

    'protein+RNA', 'nucleic acid', or by helical fraction: 'helical' (≥ 0.3), 'mixed α/β' (≥ 0.15), 'β-rich'.
    """
    if mixed:
        return "protein+RNA"
    if na:
        return "nucleic acid"
    return "helical" if helix >= 0.3 else ("mixed α/β" if helix >= 0.15 else "β-rich")


def segment(V: np.ndarray, mask: np.ndarray, pad: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Return a deposited-segment-like map: the density zeroed beyond ``pad`` voxels of the mask and cut to its box."""
    import scipy.ndimage as ndi

    keep = ndi.binary_dilation(mask, iterations=pad)
    sl = ndi.find_objects(keep.astype(np.int8))[0]
    return np.where(keep, V, 0).astype(np.float32)[sl], mask[sl]


def complex_of(a: Atoms, b: Atoms, rng) -> Atoms:
    """Place ``a`` and ``b``, randomly oriented, side by side (touching at their 90th-percentile radii × 0.8)."""
    a, b = a.transformed(random_rotation(rng)), b.transformed(random_rotation(rng))
    ca, cb = a.xyz.mean(0), b.xyz.mean(0)
    ra = np.percentile(np.linalg.norm(a.xyz - ca, axis=1), 90)
    rb = np.percentile(np.linalg.norm(b.xyz - cb, axis=1), 90)
    d = rng.normal(size=3)
    b = b.transformed(np.eye(3), ca - cb + d / np.linalg.norm(d) * 0.8 * (ra + rb))
    return Atoms(*[np.concatenate([getattr(a, f), getattr(b, f)])
                   for f in ("xyz", "element", "z", "name", "res_key", "res_name")])


def calibration_maps(split: str, model: dict, rng, na_repeats: int = 4, with_complexes: bool = True,
                     log=print) -> list[dict]:
    """Evidence (:func:`hand_model.map_evidence`, correct hand) of the simulated maps of one split."""
    from gpuvalid.backend import get_backend

    be = get_backend("cpu")
    cat = {s.name: s for s in sources.catalogue()}
    rna = read_atoms(sources.path_of(cat[NA_NAME])) if sources.path_of(cat[NA_NAME]) else None
    rows = []
    t0 = time.perf_counter()
    for s in sources.splits()[split]:
        p = sources.path_of(s)
        if p is None:
            continue
        a = read_atoms(p)
        hf = helix_fraction(a)
        jobs = [(m, False) for m in MODES * (na_repeats if not s.protein else 1)]
        if s.protein and with_complexes and rna is not None:
            jobs.append(("whole", True))
        for mode, mixed in jobs:
            res = float(rng.uniform(*RES_RANGE))
            if mixed:
                m = simulate_uniform(complex_of(a, rna, rng), rng, res, with_helix=False, crop_radius_A=None)
            else:
                crop = {"whole": None if len(a) < 6000 else 35.0, "crop25": 25.0,
                        "segment": float(rng.uniform(12.0, 18.0))}[mode]
                m = simulate_uniform(a, rng, res, with_helix=False, crop_radius_A=crop)
            V, mask = (m.V, m.mask) if mode != "segment" else segment(m.V, m.mask)
            ev = H.map_evidence(be, V, mask, m.voxel_size, model)
            rows.append(dict(structure=s.name, split=split, helix=hf, category=category(hf, not s.protein, mixed),
                             mode="protein+RNA" if mixed else mode, resolution=res, box=list(V.shape),
                             features=ev["features"], block_num=ev["block_num"].tolist(),
                             block_den=ev["block_den"].tolist(), duplex=ev["duplex"], n_voxels=ev["n_voxels"],
                             tube_fraction=ev["tube_fraction"]))
        log(f"{split} {s.name}: {len(jobs)} maps ({time.perf_counter() - t0:.0f} s)")
    return rows


def _evidence(model: dict, r: dict) -> dict:
    raw = {k: r[k] for k in ("features", "duplex", "n_voxels", "tube_fraction")}
    raw["block_num"], raw["block_den"] = np.asarray(r["block_num"]), np.asarray(r["block_den"])
    return H.evidence_from(model, raw)


def _moments(model: dict, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Per map: the standardised features ``a`` (n_scales) and their jackknife covariance ``S``.

    ``S`` is the jackknife covariance of the standardised leave-one-block-out features, so that for weights
    ``w`` the log-odds is ``w·a`` and its jackknife variance ``wᵀ S w``.
    """
    rms = np.asarray(model["rms"], dtype=np.float64)
    A, S = [], []
    for r in rows:
        bn, bd = np.asarray(r["block_num"], np.float64), np.asarray(r["block_den"], np.float64)
        keep = bd.sum(1) > 0
        bn, bd = bn[keep], bd[keep]
        N, D = bn.sum(0), bd.sum(0)
        ri = (N - bn) / np.where(D - bd > 0, D - bd, np.inf) / rms
        d = ri - ri.mean(0)
        A.append(N / D / rms)
        S.append((len(ri) - 1) / len(ri) * d.T @ d)
    return np.array(A), np.array(S)


def fit_weights(model: dict, rows: list[dict], k: float = 1.0, z0: float = 3.0, l2: float = 1e-3) -> dict:
    """Refit the classifier's weights to maximise the evidence rather than only the fit.

    Over the protein-only maps ``m`` (all of the correct hand), minimise ``mean softplus(k·(z_m + z0))``
    with ``z_m = w·a_m / √(wᵀ S_m w)`` (pushes every map's jackknife ``z`` below −z0; scale-free in ``w``;
    Nelder–Mead from the current weights), then fit the scale ``α`` of ``α·w`` by bias-free logistic
    regression of each map (label 0) and its mirror (label 1) with an L2 penalty ``l2·|α w|²``, so the score
    stays a probability. No bias: still odd.  Returns a copy of ``model`` with the new weights and the
    fit's record in ``meta["weights_fit"]``.
    """
    from scipy.optimize import minimize, minimize_scalar

    prot = [r for r in rows if r["category"] not in ("nucleic acid", "protein+RNA")]
    A, S = _moments(model, prot)

    def z(w):
        return (A @ w) / np.sqrt(np.maximum(np.einsum("i,mij,j->m", w, S, w), 1e-300))

    w0 = np.asarray(model["weights"], dtype=np.float64)
    res = minimize(lambda w: float(np.mean(np.logaddexp(0.0, k * (z(w) + z0)))), w0 / np.linalg.norm(w0),
                   method="Nelder-Mead", options={"maxiter": 6000, "xatol": 1e-5, "fatol": 1e-8})
    w = res.x / np.linalg.norm(res.x)
    L = A @ w
    bce = lambda al: float(np.mean(np.logaddexp(0.0, al * L)) + l2 * al * al)  # noqa: E731 (mirror: same)
    alpha = float(minimize_scalar(bce, bounds=(1e-3, 1e3), method="bounded").x)
    out = dict(model, weights=[float(v) for v in alpha * w])
    out["meta"] = dict(model.get("meta", {}), weights_fit={
        "objective": f"mean softplus({k:g}·(z + {z0:g})) over {len(prot)} protein maps, then logistic scale",
        "mean_z_before": float(np.mean(z(w0))), "mean_z_after": float(np.mean(z(w))), "alpha": alpha,
        "nelder_mead_iterations": int(res.nit)})
    return out


def calibrate(model: dict, rows: list[dict]) -> dict:
    """Derive the abstention rule from calibration maps (see the module docstring)."""
    prot = [r for r in rows if r["category"] not in ("nucleic acid", "protein+RNA")]
    duplex_max = MARGIN * max(r["duplex"] for r in prot)
    rule = {"block_A": BLOCK_A, "duplex_max": duplex_max, "min_blocks": MIN_BLOCKS, "z_min": 0.0}
    probe = dict(model, abstain=rule)
    wrong = []
    for r in rows:
        ev = _evidence(probe, r)
        if ev["abstain"] is None and ev["logit"] > 0:   # every calibration map has the correct hand
            wrong.append(abs(ev["z"]))
    rule["z_min"] = float(max(2.0, MARGIN * max(wrong, default=0.0)))
    rule["calibration"] = {"max_protein_duplex": max(r["duplex"] for r in prot),
                           "max_wrong_abs_z": max(wrong, default=0.0), "n_maps": len(rows), "margin": MARGIN}
    return rule


def evaluate(model: dict, rows: list[dict]) -> dict:
    """Per category: maps (each also mirrored), calls, correct calls, abstentions (by reason)."""
    out: dict = {}
    per_map = []
    for r in rows:
        ev = _evidence(model, r)
        called = ev["abstain"] is None
        reason = None if called else ("nucleic acid" if ev["abstain"].startswith("nucleic") else
                                      "too small" if "too small" in ev["abstain"] else "weak evidence")
        per_map.append(dict(structure=r["structure"], category=r["category"], mode=r["mode"],
                            resolution=round(r["resolution"], 2), logit=ev["logit"], se=ev["se"], z=ev["z"],
                            duplex=ev["duplex"], n_blocks=ev["n_blocks"], called=called,
                            correct=bool(called and ev["logit"] < 0), abstain=reason))
    for key in sorted({m["category"] for m in per_map}) + ["all protein"]:
        sel = [m for m in per_map if (m["category"] == key if key != "all protein"
                                      else m["category"] not in ("nucleic acid", "protein+RNA"))]
        n = 2 * len(sel)   # each map and its mirror: same call status, opposite sign
        calls = 2 * sum(m["called"] for m in sel)
        correct = 2 * sum(m["correct"] for m in sel)
        out[key] = {"maps_with_mirrors": n, "called": calls, "correct_calls": correct,
                    "wrong_calls": calls - correct, "abstention_rate": 1 - calls / n if n else None,
                    "accuracy_of_calls": correct / calls if calls else None,
                    "abstained_for": {k: 2 * sum(m["abstain"] == k for m in sel)
                                      for k in ("weak evidence", "too small", "nucleic acid")}}
        for mode in ("whole", "crop25", "segment"):
            ms = [m for m in sel if m["mode"] == mode]
            if ms:
                out[key][f"called_fraction_{mode}"] = sum(m["called"] for m in ms) / len(ms)
    return {"summary": out, "maps": per_map}


def main(argv=None) -> int:
    """Run the calibration from the command line (see the module docstring); return the exit status 0.

    Writes ``hand.json`` (with the ``abstain`` rule) and the ``calibration`` entry of ``hand_metrics.json``
    in ``--out`` (default: the shipped weights folder).
    """
    ap = argparse.ArgumentParser(prog="python -m gpuvalid.models.hand_calibrate", description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    ap.add_argument("--fit-weights", action="store_true",
                    help="also refit the classifier's weights for evidence on the training-split maps (fit_weights)")
    a = ap.parse_args(argv)
    sources.fetch()
    model = H.load(a.out / "hand.json")
    model.pop("abstain", None)
    t0 = time.perf_counter()
    rng = np.random.default_rng(a.seed + 3000)
    train = calibration_maps("train", model, rng)
    cal = train + calibration_maps("val", model, rng)
    if a.fit_weights:
        model = fit_weights(model, train)
    rule = calibrate(model, cal)
    model["abstain"] = rule
    test = calibration_maps("test", model, np.random.default_rng(a.seed + 4000))
    res = {"seed": a.seed, "rule": rule, "calibration_maps": evaluate(model, cal)["summary"],
           "test": evaluate(model, test), "seconds": time.perf_counter() - t0}
    (a.out / "hand.json").write_text(json.dumps(model, indent=1))
    mp = a.out / "hand_metrics.json"
    metrics = json.loads(mp.read_text()) if mp.is_file() else {}
    metrics["calibration"] = res
    if a.fit_weights:   # the classifier changed: its held-out accuracy (without abstention) again
        from .train import test_hand

        metrics["weights_fit"] = model["meta"]["weights_fit"]
        metrics["test"] = test_hand(a.seed, a.out)
        metrics["test_whole_models"] = test_hand(a.seed, a.out, crop_radius_A=None)
    mp.write_text(json.dumps(metrics, indent=1, default=float))
    print(json.dumps({"rule": rule, "test": res["test"]["summary"]}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
