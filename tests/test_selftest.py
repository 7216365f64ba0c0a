"""``gpuvalid selftest`` on the CPU backend: deterministic map, every section measured, agreement logic,
exit codes, the GPU run (skipped without CUDA)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from typer.testing import CliRunner

from gpuvalid import selftest as st
from gpuvalid.analyses import SECTIONS
from gpuvalid.analyses.base import SectionResult
from gpuvalid.backend import cuda_available
from gpuvalid.cli import app


def test_synthetic_map_is_deterministic_and_sensible():
    V1, ts, t, R = st.synthetic_map()
    V2, *_ = st.synthetic_map()
    np.testing.assert_array_equal(V1, V2)
    assert V1.dtype == np.float32 and min(V1.shape) >= 30
    # the contour holds about 1.3 × the molecular volume of the atoms (17 Å³ per atom)
    n_atoms = 4 * 18 * 5
    assert (V1 >= t).sum() == pytest.approx(n_atoms * 17 * 1.3 / ts**3, rel=0.02)
    assert 2.0 <= R <= 13.0  # inside 0.e's range


def test_selftest_on_the_cpu_measures_every_section(capsys):
    from rich.console import Console

    from gpuvalid.level1 import SECTIONS1

    code, rows = st.selftest("cpu", console=Console(width=200))
    assert code == 0
    assert [r.sid for r in rows] == [sid for sid, _, _ in SECTIONS] + [sid for sid, _, m in SECTIONS1 if m]
    assert all(r.status in ("ok", "warnings") for r in rows), [(r.sid, r.status, r.detail) for r in rows]
    out = capsys.readouterr().out
    assert "compared with themselves and trivially agree" in out and "All 16 sections agree" in out


def test_synthetic_halves_are_deterministic_halves_of_the_map():
    """Two independent noisy copies of the bundle: their mean is the primary map, their difference has the
    noise's σ (√2 · HALF_NOISE · σ(V)), the same arrays for the same seed."""
    V, ts, _, _ = st.synthetic_map()
    h1, h2, P = st.synthetic_halves(V, ts)
    np.testing.assert_array_equal(h1, st.synthetic_halves(V, ts)[0])
    np.testing.assert_allclose(P, 0.5 * (h1 + h2), rtol=0, atol=1e-6)
    assert float((h1 - h2).std()) == pytest.approx(np.sqrt(2) * st.HALF_NOISE * float(V.std()), rel=0.05)
    assert np.corrcoef(h1.ravel(), h2.ravel())[0, 1] > 0.5


def _res(values, status="ok", warnings=()):
    return SectionResult("0.x", "x", status=status, values=values, warnings=list(warnings))


def test_compare_tolerances():
    a = _res({"v": 1.0, "n": 3, "p": [2.0, float("nan")], "m": "network"})
    assert st.compare(a, copy.deepcopy(a), 1e-5, 0)[0]
    assert st.compare(a, _res({"v": 1.0 + 5e-6, "n": 3, "p": [2.0, float("nan")], "m": "network"}), 1e-5, 0)[0]
    ok, why = st.compare(a, _res({"v": 1.0 + 5e-5, "n": 3, "p": [2.0, float("nan")], "m": "network"}), 1e-5, 0)
    assert not ok and why.startswith("v:")
    assert not st.compare(a, _res({"v": 1.0, "n": 4, "p": [2.0, float("nan")], "m": "network"}), 1, 1)[0]
    assert not st.compare(a, _res({"v": 1.0, "n": 3, "p": [2.0, 1.0], "m": "network"}), 1, 1)[0]
    assert not st.compare(a, _res(a.values, status="warnings", warnings=["w"]), 1, 1)[0]
    # absolute tolerance for numbers near zero; the fallback note and 1.c's engine say how, not what
    assert st.compare(_res({"b": 0.0}), _res({"b": 0.3, "device": "cpu (fallback: …)"}), 1e-3, 0.5)[0]
    assert st.compare(_res({"b": 1.0, "engine": "fft"}), _res({"b": 1.0, "engine": "kernel"}), 1e-3, 0)[0]
    # 1.b is compared on its FDR resolution alone (Monte-Carlo p-values differ between generators)
    a, b = _res({"fdr_fsc_A": 4.0, "p": [0.01]}), _res({"fdr_fsc_A": 4.1, "p": [0.02]})
    keys = st.COMPARED_KEYS["1.b"]
    assert st.compare(st._only_keys(a, keys), st._only_keys(b, keys), *st.TOLERANCE["1.b"])[0]
    assert not st.compare(a, b, *st.TOLERANCE["1.b"])[0] and a.values["p"] == [0.01]


def test_cli_exit_codes(monkeypatch):
    runner = CliRunner()
    only = {"0.a", "0.b"}
    real = st.selftest
    monkeypatch.setattr(st, "selftest", lambda device, **kw: real(device, only=only, **kw))
    r = runner.invoke(app, ["selftest", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    monkeypatch.setattr(st, "compare", lambda a, b, rel, abs_: (False, "forced"))
    r = runner.invoke(app, ["selftest", "--device", "cpu"])
    assert r.exit_code == 1 and "DIFFERS" in r.output
    r = runner.invoke(app, ["selftest", "--device", "tpu:3"])
    assert r.exit_code == 2 and "gpuvalid: error:" in r.output


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="no CUDA device")
def test_selftest_on_the_gpu_agrees():
    code, rows = st.selftest("cuda:0")
    assert code == 0, [(r.sid, r.detail) for r in rows if not r.agree]


def test_device_branch_with_a_tiny_fake_device(monkeypatch, capsys):
    """The device branch (warm-up, two runs, ratio column) on a fake GPU with no free memory: every section
    falls back to the CPU, says so, and agrees with the CPU run."""
    from rich.console import Console

    import gpuvalid.backend as backend
    from tests.test_memory import FakeGpu

    class Fake(FakeGpu):
        def synchronize(self):
            pass

    fake = Fake(free=0)
    real = backend.get_backend
    monkeypatch.setattr(backend, "get_backend", lambda d="auto": fake if d == "fake" else real(d))
    code, rows = st.selftest("fake", only={"0.a", "0.b", "0.d"}, console=Console(width=250))
    assert code == 0 and [r.sid for r in rows] == ["0.a", "0.b", "0.d"]
    assert all(r.dev_s is not None and "cpu (fallback: needs" in r.detail for r in rows)
    out = capsys.readouterr().out
    assert "×" in out and "All 3 sections agree" in out
