"""Synthetic maps with known answers, shared by the tests; ``DATA``, the real maps and models."""

import os
from pathlib import Path

import mrcfile
import numpy as np

#: ../shared/data (the real maps, MANIFEST.tsv, models/), or $GPUVALID_DATA (e.g. .devdata on a GPU node)
DATA = Path(os.environ.get("GPUVALID_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def write_map(path: Path, data: np.ndarray, voxel_size=1.0, **header) -> Path:
    with mrcfile.new(str(path), overwrite=True) as m:
        m.set_data(np.asarray(data, dtype=np.float32))
        m.voxel_size = voxel_size
        for k, v in header.items():
            setattr(m.header, k, v)
    return path


def cubes_map(shape=(40, 40, 40), cubes=(((5, 5, 5), 6), ((25, 25, 25), 3), ((5, 30, 30), 2)), value=1.0):
    """Zero map with solid cubes (corner zyx, edge) of ``value``; returns the map and the cube sizes."""
    V = np.zeros(shape, dtype=np.float32)
    for (z, y, x), e in cubes:
        V[z:z + e, y:y + e, x:x + e] = value
    return V, [e ** 3 for _, e in cubes]
