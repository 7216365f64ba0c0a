"""The hand model (0.h): a linear classifier without bias over the helical-twist features.

``logit = Σ_k w_k · T_k / s_k`` with ``T_k`` the mirror-odd twist features of
:mod:`gpuvalid.models.chirality` at the scale pairs ``k``, ``s_k`` their RMS over the training maps and
``w_k`` learned (``python -m gpuvalid.models.train hand``); ``score = sigmoid(logit)`` is the probability
that the map is mirrored (0: correct hand, 1: mirrored). With no bias and odd features,
``score(mirror(V)) = 1 − score(V)`` exactly. The weights are a small JSON file (no PyTorch needed to run).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .. import models
from . import preprocess as P
from .chirality import twist_features

MIN_MASK_VOXELS = 50


def load(path: str | Path | None = None) -> dict:
    """The stored model: ``{"scales", "rms", "weights", "meta"}``."""
    p = Path(path) if path else models.weights_path("hand")
    if not p.is_file():
        raise FileNotFoundError(f"model weights not found: {p}")
    m = json.loads(p.read_text())
    if not (len(m["scales"]) == len(m["rms"]) == len(m["weights"])):
        raise ValueError(f"inconsistent hand model in {p}")
    return m


def logit(model: dict, features) -> float:
    """``Σ w_k · T_k / s_k``."""
    return float(sum(w * f / s for w, f, s in zip(model["weights"], features, model["rms"])))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def hand_score(be, V: np.ndarray, voxel_size: float, threshold: float, path: str | Path | None = None) -> dict:
    """Hand score of the host map ``V`` (Å voxels) at contour ``threshold``, with its evidence.

    The map is resampled to about 1 Å/voxel (:func:`preprocess.to_working_grid`); the contour mask
    ``V ≥ t`` on that grid chooses the voxels; the features are computed on ``be``.
    """
    model = load(path)
    V1, ts1 = P.to_working_grid(V, voxel_size)
    mask = V1 >= threshold
    n = int(mask.sum())
    if n < MIN_MASK_VOXELS:
        raise ValueError(f"the contour mask holds only {n} voxels on the 1 Å grid (fewer than {MIN_MASK_VOXELS})")
    f = twist_features(be, V1, mask, ts1, tuple(tuple(s) for s in model["scales"]))
    z = logit(model, f["features"])
    return {"score": sigmoid(z), "logit": z, "features": f["features"], "n_voxels": f["n_voxels"],
            "tube_fraction": f["tube_fraction"]}
