"""gpuvalid's own learned models: the local-resolution network and the hand model.

The local-resolution network (0.e) is PyTorch and optional; the hand model (0.h) is a linear classifier
over mirror-odd helical-twist features (NumPy only at inference).

Trained here on simulated maps (:mod:`gpuvalid.simulate`) by ``python -m gpuvalid.models.train
{locres,hand}``; the weights ship in ``gpuvalid/models/weights``.  Importing this package does not
import torch: :func:`torch_available` says whether it can be used.
"""

from __future__ import annotations

import importlib
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def torch_available() -> bool:
    """Return True when ``import torch`` works."""
    try:
        importlib.import_module("torch")
        return True
    except Exception:
        return False


WEIGHT_FILES = {"locres": "locres.pt", "hand": "hand.json"}


def weights_path(name: str) -> Path:
    """Shipped weight file of a model: 'locres' (PyTorch state) or 'hand' (JSON)."""
    return WEIGHTS_DIR / WEIGHT_FILES[name]
