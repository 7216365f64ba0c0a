"""Sections 1.c–1.f end to end on small simulated half maps (figures included): status, promised values,
the resolution-estimate medians and the overlay figure."""

from __future__ import annotations

import numpy as np
import pytest

from gpuvalid.backend import get_backend
from tests.test_level1_local import MODEL, two_region_halves


@pytest.fixture(scope="module")
def ctx1(tmp_path_factory):
    if not MODEL.is_file():
        pytest.skip("model 1a5t not available")
    from gpuvalid.context import MapContext, RunOptions
    from gpuvalid.level1.context import HalfMaps, Level1Context

    h1, h2, hard, soft, truth = two_region_halves(box=48, seed=2)
    primary = 0.5 * (h1 + h2)
    out = tmp_path_factory.mktemp("l1local")
    (out / "figures").mkdir()
    opts = RunOptions(figure_dir=out / "figures", views=False)
    opts.local_fsc_step = 3
    thr = float(np.quantile(primary, 0.85))
    ctx0 = MapContext(get_backend("cpu"), primary, 1.0, thr, 2.4, opts)   # R = 2.4 Å: sweeps start at 12 Å
    hm = HalfMaps(("h1.mrc", "h2.mrc"), (h1, h2), ("0", "1"), ((1.0,) * 3,) * 2)
    return Level1Context(ctx0, hm)


def test_local_sections_run(ctx1):
    from gpuvalid.level1 import SECTIONS1
    from gpuvalid.runner import run_section

    mods = {sid: mod for sid, _t, mod in SECTIONS1}
    log: list[str] = []
    out = {}
    for sid in ("1.c", "1.d", "1.e", "1.f"):
        out[sid] = run_section(mods[sid], sid, sid, ctx1, log)
        assert out[sid].evaluable, (sid, out[sid].reason, log)
        p = out[sid].values["percentiles_A"]
        assert len(p) == 5 and all(np.isfinite(p)) and p == sorted(p)
        assert 0.0 <= out[sid].values["resolution_percentile"] <= 100.0
        assert out[sid].figures, sid
    assert out["1.c"].values["step"] == 3
    assert "uniformity_p" in out["1.f"].values and out["1.f"].values["mean_directional_A"] > 2.0
    assert {k.split()[0] for k in ctx1.estimates} >= {"1.c", "1.d", "1.e", "1.f"}
    assert any(f.file.endswith("l1_local_overlay.png") for f in out["1.f"].figures)
    assert not [e for e in ctx1.ctx0.figure_errors if e.startswith("1.")]
