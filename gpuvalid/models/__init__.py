"""gpuvalid's own small networks (PyTorch, optional) for local resolution (0.e) and hand (0.h).

Trained here on simulated maps (:mod:`gpuvalid.simulate`) by ``python -m gpuvalid.models.train
{locres,hand}``; the weights ship in ``gpuvalid/models/weights``.  Importing this package does not
import torch: :func:`torch_available` says whether it can be used.
"""

from __future__ import annotations

import importlib
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def torch_available() -> bool:
    """True when ``import torch`` works."""
    try:
        importlib.import_module("torch")
        return True
    except Exception:
        return False


def weights_path(name: str) -> Path:
    """Shipped weight file of a model ('locres', 'helix', 'hand')."""
    return WEIGHTS_DIR / f"{name}.pt"
