"""Shared fixtures: the real maps in ../shared/data (override with GPUVALID_DATA) and the backends."""

import os
from pathlib import Path

import pytest

from gpuvalid.backend import cuda_available, get_backend

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GPUVALID_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "MANIFEST.tsv").is_file():
        pytest.skip(f"real EMDB maps not found at {DATA} (set GPUVALID_DATA to the shared/data folder)")
    return DATA


@pytest.fixture(scope="session")
def cpu():
    return get_backend("cpu")


@pytest.fixture(scope="session")
def gpu():
    if not cuda_available():
        pytest.skip("no CUDA device / CuPy not installed")
    return get_backend("cuda:0")


requires_cuda = pytest.mark.skipif(not cuda_available(), reason="no CUDA device / CuPy not installed")
