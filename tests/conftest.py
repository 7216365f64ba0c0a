"""Shared fixtures: the real maps in ../shared/data (override with GPUVALID_DATA) and the backends.

``GPUVALID_CUPY_STANDIN=1`` (on a machine without CUDA) runs the GPU tests on the CuPy stand-in of
:mod:`tests.standin`: ``gpu`` and ``get_backend("cuda:0")`` give its backend, torch stays on the CPU.
``python -m pytest -m gpu`` with it set rehearses every GPU code path before a GPU session.
"""

import os
from pathlib import Path

import pytest

import gpuvalid.backend as _backend

STANDIN = os.environ.get("GPUVALID_CUPY_STANDIN", "") not in ("", "0") and (
    getattr(_backend.get_backend, "standin", False) or not _backend.cuda_available())  # (sitecustomize: installed)
if STANDIN:
    from tests import standin as _standin

    _standin.install()
    # worker processes (batch mode) and CLI subprocesses load the stand-in through tests/standin/site
    _root = Path(__file__).resolve().parents[1]
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(_root / "tests" / "standin" / "site"), str(_root)] + [p for p in [os.environ.get("PYTHONPATH")] if p])

cuda_available, get_backend = _backend.cuda_available, _backend.get_backend

# the memory ledger of this test run alone (gpuvalid.ledger): a batch or run elsewhere on the machine neither
# waits for the tests nor makes them wait; subprocesses inherit it
_OWN_LEDGER = None
if not os.environ.get("GPUVALID_MEMORY_LEDGER"):
    import tempfile

    _OWN_LEDGER = os.environ["GPUVALID_MEMORY_LEDGER"] = tempfile.mkdtemp(prefix="gpuvalid-test-ledger-")


def pytest_unconfigure(config):
    if _OWN_LEDGER is not None:
        import shutil

        shutil.rmtree(_OWN_LEDGER, ignore_errors=True)

from tests.helpers import DATA  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="session")
def torch_device(gpu) -> str:
    """The torch device of the ``gpu`` backend (the CPU on the stand-in, whose arrays live in host memory)."""
    return "cpu" if STANDIN else gpu.device


requires_cuda = pytest.mark.skipif(not cuda_available(), reason="no CUDA device / CuPy not installed")


def pytest_runtest_logreport(report):
    """With ``GPUVALID_PRINT_FAILURES=1``, print each failure as it happens (the device check's time limit can
    stop pytest before its summary: the GPU session of 2026-11-27 lost the one failure it saw that way)."""
    if report.failed and os.environ.get("GPUVALID_PRINT_FAILURES", "") not in ("", "0"):
        import sys

        text = report.longreprtext
        print(f"\n!!! FAILED {report.nodeid} ({report.when}):\n{text[-4000:]}\n", file=sys.stderr, flush=True)
