"""Fully convolutional 3-D networks (valid convolutions).

Each output voxel sees a cube of ``receptive_field`` voxels of the input (13³ at 1 Å/voxel), so training on
patches and inference on a whole map compute the same function.

- :class:`LocResNet` regresses local resolution in [2, 13] Å (``2 + 11·sigmoid``) on the 1 Å working
  grid, or in another range (the fine model on the 0.5 Å grid).

(The hand model of 0.h is not a convolutional network: see :mod:`gpuvalid.models.hand_model`.)
"""

from __future__ import annotations

import torch
from torch import nn

DEFAULT_CHANNELS = (1, 8, 12, 12, 16, 16, 16)


def _trunk(channels: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for cin, cout in zip(channels[:-1], channels[1:], strict=True):
        layers += [nn.Conv3d(cin, cout, 3), nn.GELU()]
    return nn.Sequential(*layers)


class FCNet(nn.Module):
    """Valid 3×3×3 convolutions over ``channels`` then a 1×1×1 head to one value per voxel."""

    def __init__(self, channels=DEFAULT_CHANNELS, hidden: int = 16):
        super().__init__()
        self.channels = tuple(channels)
        self.trunk = _trunk(list(channels))
        self.head = nn.Sequential(nn.Conv3d(channels[-1], hidden, 1), nn.GELU(), nn.Conv3d(hidden, 1, 1))

    @property
    def receptive_field(self) -> int:
        """Edge (voxels) of the input cube each output voxel sees: 1 + 2 per 3×3×3 convolution."""
        return 1 + 2 * (len(self.channels) - 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Raw head output ``(B, d, h, w)`` for an input ``(B, 1, D, H, W)``.

        Valid convolutions: each edge shrinks by ``receptive_field − 1``.
        """
        return self.head(self.trunk(x))[:, 0]


class LocResNet(FCNet):
    """Local resolution (Å) in ``out_range`` (default [2, 13]) for every voxel of the valid output."""

    def __init__(self, channels=DEFAULT_CHANNELS, hidden: int = 16, out_range=(2.0, 13.0)):
        super().__init__(channels, hidden)
        self.LO, self.HI = (float(v) for v in out_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Local resolution (Å): ``LO + (HI − LO)·sigmoid(logits)`` per valid output voxel."""
        return self.LO + (self.HI - self.LO) * torch.sigmoid(self.logits(x))


def build(kind: str, channels=None, out_range=None) -> FCNet:
    """Build the network for 'locres' or 'locres_fine'.

    Default widths unless ``channels`` is given; output range ``out_range`` Å, default [2, 13].

    Raises
    ------
    ValueError
        When ``kind`` is not 'locres' or 'locres_fine'.
    """
    if kind in ("locres", "locres_fine"):
        return LocResNet(channels or DEFAULT_CHANNELS, out_range=out_range or (2.0, 13.0))
    raise ValueError(f"unknown model kind {kind!r}")


def n_parameters(net: nn.Module) -> int:
    """Count the parameters (weights and biases) of ``net``."""
    return sum(p.numel() for p in net.parameters())
