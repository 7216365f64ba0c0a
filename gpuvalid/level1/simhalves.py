"""Simulated half maps with a known answer (tests, benchmarks, the example report).

``h_i = signal + n_i``: one signal map (Gaussian atoms of an atomic model with a known B-factor, optionally
band-limited) and two independent noise realisations of a known spectrum (Gaussian white noise shaped in
Fourier space by ``exp(−B_n·s²/4)`` and, for anisotropic cases, by a direction factor
``√(1 + a·|u_z|^p)`` that puts more noise along Z).  The expected FSC of a shell or cone is
``S/(S + N)`` with ``S`` the signal power and ``N`` the mean noise power there, both computable from the
returned arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from ..simulate.density import atom_density, spatial_frequency
from ..simulate.structure import read_atoms


@dataclass
class SimHalves:
    """Simulated halves ``h_i = signal + n_i`` (float arrays, voxel size in Å) with the parts kept apart."""

    signal: np.ndarray
    n1: np.ndarray
    n2: np.ndarray
    voxel_size: float

    @property
    def h1(self) -> np.ndarray:
        """Half map 1, ``signal + n1`` (float32)."""
        return (self.signal + self.n1).astype(np.float32)

    @property
    def h2(self) -> np.ndarray:
        """Half map 2, ``signal + n2`` (float32)."""
        return (self.signal + self.n2).astype(np.float32)

    @property
    def primary(self) -> np.ndarray:
        """The full map ``(h1 + h2)/2``."""
        return (self.signal + 0.5 * (self.n1 + self.n2)).astype(np.float32)


def model_signal(model_path, voxel_size: float, box: int, bfactor_A2: float = 50.0,
                 cutoff_A: float | None = None) -> np.ndarray:
    """Return the density of the model centred in a cubic ``box`` (float32).

    Blurred by ``exp(−B s²/4)`` and, when ``cutoff_A`` is given, set to zero beyond ``1/cutoff_A`` Å⁻¹ (a sharp
    band limit).
    """
    atoms = read_atoms(model_path)
    centre = 0.5 * (atoms.xyz.min(0) + atoms.xyz.max(0))
    origin = centre - 0.5 * box * voxel_size
    V, _ = atom_density(atoms, voxel_size, shape=(box, box, box), origin_A=origin, bfactor_A2=bfactor_A2)
    if cutoff_A is not None:
        F = scipy.fft.rfftn(V)
        F *= spatial_frequency(V.shape, voxel_size) <= 1.0 / cutoff_A
        V = scipy.fft.irfftn(F, s=V.shape)
    return V.astype(np.float32)


def noise_envelope(shape: tuple, voxel_size: float, bfactor_A2: float = 0.0, aniso: float = 0.0,
                   power: float = 2.0) -> np.ndarray:
    """Amplitude envelope of the noise on the rfftn half grid: ``exp(−B s²/4)·√(1 + aniso·|u_z|^power)``."""
    s = spatial_frequency(shape, voxel_size)
    env = np.exp(-bfactor_A2 * s * s / 4.0)
    if aniso:
        fz = np.fft.fftfreq(shape[0], voxel_size)[:, None, None]
        uz = np.abs(fz) / np.maximum(s, 1e-12)
        env = env * np.sqrt(1.0 + aniso * uz ** power)
    return env


def noise_pair(shape: tuple, voxel_size: float, rng: np.random.Generator, sigma: float,
               bfactor_A2: float = 0.0, aniso: float = 0.0, power: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Two independent noise maps with the same spectrum, scaled so the first has standard deviation ``sigma``."""
    env = noise_envelope(shape, voxel_size, bfactor_A2, aniso, power)
    out = []
    scale = None
    for _ in range(2):
        F = scipy.fft.rfftn(rng.normal(size=shape))
        n = scipy.fft.irfftn(F * env, s=shape)
        if scale is None:
            scale = sigma / max(float(n.std()), 1e-30)
        out.append((n * scale).astype(np.float32))
    return out[0], out[1]


def simulate_halves(model_path, voxel_size: float = 1.5, box: int = 64, bfactor_A2: float = 50.0,
                    noise_rel: float = 1.0, noise_bfactor_A2: float = 0.0, aniso: float = 0.0,
                    cutoff_A: float | None = None, seed: int = 0) -> SimHalves:
    """Half maps of a model: noise σ = ``noise_rel`` × σ of the signal over the whole box."""
    rng = np.random.default_rng(seed)
    sig = model_signal(model_path, voxel_size, box, bfactor_A2, cutoff_A)
    n1, n2 = noise_pair(sig.shape, voxel_size, rng, noise_rel * float(sig.std()), noise_bfactor_A2, aniso)
    return SimHalves(sig, n1, n2, voxel_size)
