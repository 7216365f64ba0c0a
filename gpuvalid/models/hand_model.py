"""The hand model (0.h) and the rules that make it abstain.

A linear classifier without bias over the helical-twist features, and the rules that make it abstain when
the evidence is weak.

``logit = Σ_k w_k · T_k / s_k`` with ``T_k`` the mirror-odd twist features of
:mod:`gpuvalid.models.chirality` at the scale pairs ``k``, ``s_k`` their RMS over the training maps and
``w_k`` learned (``python -m gpuvalid.models.train hand``, then refit for evidence by
``python -m gpuvalid.models.hand_calibrate --fit-weights``): ``logit > 0`` means mirrored. With no bias and
odd features the log-odds of the mirror image is exactly ``−logit``. The weights are a small JSON file (no
PyTorch needed to run).

The score is ``Φ(z)``, ``z = logit / se`` (``Φ``: standard normal CDF; ``se``: below): the probability, given
the sampling error of the evidence over the map, that the evidence points to a mirror image (0: correct
hand, 1: mirrored). ``z`` of the mirror is ``−z``, so ``score(mirror(V)) = 1 − score(V)`` exactly.

Evidence (all of it mirror-even, so a map and its mirror image abstain alike):

- *sampling error*: the contour mask is cut into cubic blocks of ``block_A`` Å (12 Å, about one helix
  across); each feature is a ratio of sums over the blocks, so the delete-one-block jackknife gives the
  standard error ``se`` of the log-odds and ``z = logit / se``. A small map, a segment, or a map with little
  helical density has few blocks that agree: ``|z|`` is small;
- *nucleic acid*: the double helices of RNA/DNA (20 Å wide, right-handed) twist strongly at a coarse scale
  (``|T(2.5 Å, 6 Å)|``, which protein density hardly shows) while their fine-scale twist reads as the
  *mirror* of a protein's; a large coarse twist means nucleic acid dominates the density.

The thresholds (``model["abstain"]``: ``z_min``, ``duplex_max``, ``min_blocks``) are calibrated on simulated
protein, β-rich, segment and nucleic-acid maps (``train.calibrate_hand``; docs/models.md).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import models
from . import preprocess as P
from .chirality import BLOCK_A, DUPLEX_SCALES, twist_features

if TYPE_CHECKING:
    from ..backend import Backend

MIN_MASK_VOXELS = 50


def load(path: str | Path | None = None) -> dict:
    """Read the stored model: ``{"scales", "rms", "weights", "abstain", "meta"}`` (``abstain`` optional).

    ``path``: a JSON file; default the shipped ``hand.json``.

    Raises
    ------
    FileNotFoundError
        When the weights file does not exist.
    ValueError
        When ``scales``, ``rms`` and ``weights`` differ in length.
    """
    p = Path(path) if path else models.weights_path("hand")
    if not p.is_file():
        raise FileNotFoundError(f"model weights not found: {p}")
    m = json.loads(p.read_text())
    if not (len(m["scales"]) == len(m["rms"]) == len(m["weights"])):
        raise ValueError(f"inconsistent hand model in {p}")
    return m


def _coef(model: dict) -> np.ndarray:
    return np.asarray(model["weights"], dtype=np.float64) / np.asarray(model["rms"], dtype=np.float64)


def logit(model: dict, features) -> float:
    """``Σ w_k · T_k / s_k``."""
    return float(sum(w * f / s for w, f, s in zip(model["weights"], features, model["rms"], strict=True)))


def sigmoid(x: float) -> float:
    """Logistic function ``1 / (1 + e⁻ˣ)``, evaluated without overflow for large ``|x|``."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def jackknife(model: dict, block_num: np.ndarray, block_den: np.ndarray) -> tuple[float, float, int]:
    """Log-odds from the block sums and its delete-one-block jackknife standard error.

    Returns ``(logit, se, n_blocks)``: the log-odds from the block sums ``(n_blocks, n_scales)`` and its
    delete-one-block jackknife standard error ``se² = (n−1)/n · Σ (L₍ᵢ₎ − L̄)²`` (blocks with no tube
    density carry no evidence and are not counted; ``se`` is infinite for fewer than 2 blocks).
    """
    c = _coef(model)
    bn, bd = np.asarray(block_num, np.float64), np.asarray(block_den, np.float64)
    keep = bd.sum(1) > 0
    bn, bd = bn[keep], bd[keep]
    N, D = bn.sum(0), bd.sum(0)
    L = float(np.where(D > 0, N / np.where(D > 0, D, 1), 0.0) @ c)
    n = len(bn)
    if n < 2:
        return L, float("inf"), n
    Ni, Di = N - bn, D - bd
    Li = np.where(Di > 0, Ni / np.where(Di > 0, Di, 1), 0.0) @ c
    se = float(np.sqrt((n - 1) / n * np.sum((Li - Li.mean()) ** 2)))
    return L, se, n


def abstain_reason(model: dict, ev: dict) -> str | None:
    """Why the hand cannot be called from the evidence ``ev`` (:func:`hand_score`), or None to call it."""
    rule = model.get("abstain")
    if not rule:
        return None
    if ev["duplex"] >= rule["duplex_max"]:
        return (f"nucleic acid dominates the density (coarse-scale double-helix twist T(2.5 Å, 6 Å) of size "
                f"{ev['duplex']:.4f}, at or above {rule['duplex_max']:.4f}, the protein maps' limit): RNA and DNA "
                "read as mirrored protein in this measure, so the hand cannot be judged")
    if ev["n_blocks"] < rule["min_blocks"] or not (0 < ev["se"] < math.inf):
        return (f"the map is too small to judge the hand: its contour mask spans {ev['n_blocks']} blocks of "
                f"{rule['block_A']:g} Å (at least {rule['min_blocks']} needed)")
    if not abs(ev["z"]) >= rule["z_min"]:
        return ("the evidence is too weak to call the hand (too little helical density, or a small or segmented "
                f"map): log-odds {ev['logit']:+.1f} ± {ev['se']:.1f} (block jackknife over {ev['n_blocks']} blocks "
                f"of {rule['block_A']:g} Å), z = {ev['z']:+.1f}, not beyond ±{rule['z_min']:.2f}")
    return None


def map_evidence(be: Backend, V1: np.ndarray, mask, ts1: float, model: dict) -> dict:
    """Features, block sums and coarse (duplex) twist of the map ``V1`` over ``mask``.

    ``V1`` is on the working grid (about 1 Å voxels of ``ts1`` Å).
    """
    block_A = (model.get("abstain") or {}).get("block_A", BLOCK_A)
    f = twist_features(be, V1, mask, ts1, tuple(tuple(s) for s in model["scales"]), block_A=block_A)
    dup = twist_features(be, V1, mask, ts1, DUPLEX_SCALES, block_A=None)["features"][0]
    return {"features": f["features"], "block_num": f["block_num"], "block_den": f["block_den"],
            "n_voxels": f["n_voxels"], "tube_fraction": f["tube_fraction"], "duplex": abs(float(dup))}


def evidence_from(model: dict, raw: dict) -> dict:
    """Score ``Φ(z)``, log-odds, jackknife error, z, duplex twist and the abstention reason (None: call it)."""
    z0 = logit(model, raw["features"])
    _, se, nb = jackknife(model, raw["block_num"], raw["block_den"])
    z = z0 / se if se > 0 else (0.0 if z0 == 0 else math.copysign(math.inf, z0))
    ev = {"score": 0.5 * math.erfc(-z / math.sqrt(2.0)), "logit": z0, "se": se, "z": z,
          "n_blocks": nb, "duplex": raw["duplex"], "features": raw["features"], "n_voxels": raw["n_voxels"],
          "tube_fraction": raw["tube_fraction"]}
    ev["abstain"] = abstain_reason(model, ev)
    return ev


def hand_score(be: Backend, V, voxel_size: float, threshold: float, path: str | Path | None = None) -> dict:
    """Hand score of the map ``V`` at contour ``threshold``, with its evidence and the reason to abstain.

    ``V``: Å voxels of ``voxel_size``, a host array or one on ``be``'s device; ``abstain`` in the result is
    None when the hand can be called.

    The map is resampled to about 1 Å/voxel (:func:`preprocess.to_working_grid`) on ``be``'s device; the
    contour mask ``V ≥ t`` on that grid chooses the voxels; the features are computed there too.

    Raises
    ------
    ValueError
        When the contour mask on the working grid holds fewer than ``MIN_MASK_VOXELS`` voxels.
    """
    model = load(path)
    V1, ts_axes = P.to_working_grid(V, voxel_size, be=be)
    ts1 = float(np.prod(ts_axes)) ** (1.0 / 3.0)    # the axes' voxels differ by < 2 %: one size for the features
    mask = V1 >= threshold
    n = int(be.scalar(be.xp.count_nonzero(mask)))
    if n < MIN_MASK_VOXELS:
        raise ValueError(f"the contour mask holds only {n} voxels on the 1 Å grid (fewer than {MIN_MASK_VOXELS})")
    return evidence_from(model, map_evidence(be, V1, mask, ts1, model))
