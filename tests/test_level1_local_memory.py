"""Device memory budget of the Level 1 local-resolution sections (1.c–1.f): their estimates, and the CPU
fallback of a section that does not fit (a fake GPU backend with $GPUVALID_DEVICE_BUDGET, as
tests/test_memory.py does for Level 0), said in the section, the report and results.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpuvalid import memory
from gpuvalid.backend import get_backend
from gpuvalid.context import MapContext
from gpuvalid.level1.context import HalfMaps, Level1Context
from gpuvalid.runner import run_section
from tests.test_memory import FakeGpu, _flat, blob_map

CPU = get_backend("cpu")
LOCAL = [("1.c", "gpuvalid.level1.local_fsc"), ("1.d", "gpuvalid.level1.resmap"),
         ("1.e", "gpuvalid.level1.monores_half"), ("1.f", "gpuvalid.level1.monodir")]


def halves(n=40, seed=1):
    """A blob map and two halves with independent noise (σ = 0.15 of the blobs' peak)."""
    V = blob_map(n)
    rng = np.random.default_rng(seed)
    h1 = (V + 0.15 * rng.standard_normal(V.shape)).astype(np.float32)
    h2 = (V + 0.15 * rng.standard_normal(V.shape)).astype(np.float32)
    return V, h1, h2


def level1_context(be, V, h1, h2):
    ctx0 = MapContext(be, V, 1.5, 0.3, 6.0)
    hm = HalfMaps(("h1.mrc", "h2.mrc"), (h1, h2), ("-", "-"), ((1.5,) * 3, (1.5,) * 3))
    return Level1Context(ctx0, hm)


def test_local_estimates_scale_with_voxels_and_mask():
    """Each of 1.c–1.f has its own estimate: a·N + m·(mask voxels) + fixed, the whole box standing for an
    unknown mask; 1.c's fixed part is the largest chunk of boxes (and group of FSCs) local_fsc uses on a
    device, with either engine; 1.f's per-voxel summaries go in passes that cost at most
    ``L1_DIR_SUMMARY_GRID`` B per voxel of the map above a floor of ``L1_DIR_SUMMARY_MIN`` voxels (its fixed
    part)."""
    from gpuvalid.level1 import local_fsc

    n3 = 64 ** 3
    for sid, _ in LOCAL:
        per = memory.BYTES_PER_VOXEL[sid]
        a, m, f = per.get("input", 0), per.get("mask", 0), per.get("fixed", 0)
        assert a > 0 and m > 0
        for mask in (1000, 10 ** 6):
            assert memory.estimate_bytes(sid, (64, 64, 64), 1.0, 3.0, mask_voxels=mask) == (
                memory.FIXED_BYTES + f + a * n3 + m * mask)
        assert memory.estimate_bytes(sid, (64, 64, 64), 1.0, 3.0) == (
            memory.FIXED_BYTES + f + (a + m) * n3)
    pass_bytes = 47 * memory.L1_DIR_SUMMARY_BYTES
    assert memory.BYTES_PER_VOXEL["1.f"]["fixed"] == memory.L1_DIR_SUMMARY_MIN * pass_bytes
    for n in (32, 64, 128, 256, 384, 768):
        chunk = memory.l1_dir_summary_chunk(n ** 3)
        assert memory.L1_DIR_SUMMARY_MIN <= chunk <= memory.L1_DIR_SUMMARY_CHUNK
        assert chunk == memory.L1_DIR_SUMMARY_MIN or chunk * pass_bytes <= memory.L1_DIR_SUMMARY_GRID * n ** 3
    assert memory.l1_dir_summary_chunk(128 ** 3) == memory.L1_DIR_SUMMARY_MIN          # 7,436 would fit
    assert memory.l1_dir_summary_chunk(384 ** 3) == memory.L1_DIR_SUMMARY_CHUNK        # 200,791 would fit
    # 1.c's chunk: within its engine's floor and cap, and within what the estimate allows at every size
    group = local_fsc.GROUP_ROWS * memory.L1_FSC_ROW_BYTES
    per = memory.BYTES_PER_VOXEL["1.c"]
    for n in (32, 64, 128, 256, 384, 512, 768, 1024):
        for least, most, box in ((local_fsc.KERNEL_MIN_CHUNK, local_fsc.KERNEL_MAX_CHUNK, local_fsc.KERNEL_BOX_BYTES),
                                 (local_fsc.MIN_CHUNK_BOXES, local_fsc.MAX_CHUNK_BOXES, local_fsc.BYTES_PER_BOX)):
            chunk = memory.l1_box_chunk(n ** 3, box, least, most)
            assert least <= chunk <= most
            assert chunk == least or chunk == most or chunk * box <= memory.L1_BOX_GRID * n ** 3
            assert chunk * box + group <= per["fixed"] + memory.L1_BOX_GRID * n ** 3
    kernel = (local_fsc.KERNEL_BOX_BYTES, local_fsc.KERNEL_MIN_CHUNK, local_fsc.KERNEL_MAX_CHUNK)
    assert memory.l1_box_chunk(256 ** 3, *kernel) == 1024          # 8 B × 256³ / 269,640 B = 497.7: the floor
    assert memory.l1_box_chunk(384 ** 3, *kernel) == 1679          # 1,679.9 boxes: 453 MB, not 1.1 GB
    assert memory.l1_box_chunk(768 ** 3, *kernel) == 4096          # 13,439.6: the cap
    # 1.f at 256³ with a 10 % mask: 56 B per voxel + 103 B per mask voxel + the summaries' floor (18.5 MB)
    # + 256 MiB, about 1.3 GiB (fits any current GPU)
    est = memory.estimate_bytes("1.f", (256,) * 3, 1.0, 3.0, mask_voxels=256 ** 3 // 10)
    assert 1.2 * 2 ** 30 < est < 1.4 * 2 ** 30


def test_local_sections_that_do_not_fit_run_on_the_cpu(monkeypatch):
    """With a 1 MiB device budget every local section runs on the CPU, says so, and gives the CPU numbers;
    the resolution estimates and histograms reach the device context (the summary and the overlay read
    them there)."""
    monkeypatch.setenv(memory.ENV_BUDGET, "1MiB")
    V, h1, h2 = halves(36)
    ref1 = level1_context(CPU, V, h1, h2)
    got1 = level1_context(FakeGpu(free=2 ** 40), V, h1, h2)
    mask_voxels = int(np.count_nonzero(ref1.ctx0.hard_mask))
    for sid, module in LOCAL:
        ref = run_section(module, sid, sid, ref1)
        got = run_section(module, sid, sid, got1)
        assert got.status == ref.status and got.status in ("ok", "warnings"), (sid, got.reason)
        note = got.values.pop("device")
        need = memory.estimate_bytes(sid, V.shape, 1.5, 6.0, mask_voxels)
        assert note == f"cpu (fallback: needs {memory.gib(need)} of device memory (estimate), budget 0.00 GiB)"
        assert "Computed on the CPU" in got.blocks[0]
        a, b = dict(_flat(got.values)), dict(_flat(ref.values))
        assert a.keys() == b.keys()
        for k in a:
            assert np.array_equal(np.asarray(a[k]), np.asarray(b[k])), (sid, k)
    assert got1.estimates == ref1.estimates and len(got1.estimates) >= 4
    assert set(got1.cache["local_resolution_hists"]) == {"1.c", "1.d", "1.e", "1.f"}


@pytest.mark.slow
def test_whole_run_with_halves_on_a_tiny_device(tmp_path):
    """`validate` with half maps on a device with no memory: every Level 1 section runs on the CPU and
    results.json and report.md say so."""
    from gpuvalid.context import MapInput
    from gpuvalid.io.mrc import write_mrc
    from gpuvalid.pipeline import validate
    from gpuvalid.report import write_report

    V, h1, h2 = halves(36)
    paths = [tmp_path / "h1.mrc", tmp_path / "h2.mrc"]
    for p, h in zip(paths, (h1, h2)):
        write_mrc(p, h, 1.5)
    inp = MapInput(path=tmp_path / "blobs.map", data=V, voxel_size=1.5, threshold=0.3, resolution=6.0,
                   sha256="0" * 64)
    rep = validate(inp, FakeGpu(free=0), tmp_path / "out", figures=False, only={"0.a"}, halves=paths)
    write_report(rep, tmp_path / "out")
    js = json.loads((tmp_path / "out" / "results.json").read_text())
    for sid, _ in LOCAL:
        assert rep.sections[sid].evaluable, (sid, rep.sections[sid].reason)
        assert js["sections"][sid]["values"]["device"].startswith("cpu (fallback: needs"), sid
    text = (tmp_path / "out" / "report.md").read_text()
    assert text.count("Computed on the CPU") >= 4


def test_local_sections_run_last_without_the_global_spectra(tmp_path, monkeypatch):
    """`run_level1` runs the global sections (1.a, 1.b, 1.g, 1.h) first, then drops the halves' cached spectra
    before 1.c–1.f, which do not use them (1.a drops the unmasked ones, which only it reads); 1.e's engine drops
    the halves themselves, which 1.f does not read; the primary map's context holds neither what only Level 0
    reads nor, from 1.d on, the soft mask; the report keeps the order of SECTIONS1 and the estimates their
    section order."""
    import gpuvalid.runner as runner
    from gpuvalid.io.mrc import write_mrc
    from gpuvalid.level1 import SECTIONS1, run_level1

    V, h1, h2 = halves(36)
    paths = [write_mrc(tmp_path / f"h{i}.mrc", h, 1.5) for i, h in enumerate((h1, h2))]
    seen, seen0 = {}, {}
    real = runner.run_section

    def spy(module, sid, title, ctx, error_log=None):
        seen[sid] = set(ctx._lazy)            # the cached values when the section starts
        seen0[sid] = set(ctx.ctx0._lazy)      # and the primary map's
        return real(module, sid, title, ctx, error_log)

    monkeypatch.setattr(runner, "run_section", spy)
    ctx0 = MapContext(CPU, V, 1.5, 0.3, 6.0)
    _ = ctx0.V, ctx0.raw_mask, ctx0.soft_mask, ctx0.resized        # as the Level 0 sections leave it
    out, _ = run_level1(ctx0, paths)
    for sid in seen0:                      # what only Level 0 reads is gone from the start
        assert not seen0[sid] & set(MapContext.LEVEL0_ONLY), (sid, seen0[sid])
        assert "hard_mask" in seen0[sid]
    assert "soft_mask" in seen0["1.c"] and not {"soft_mask"} & (seen0["1.d"] | seen0["1.e"] | seen0["1.f"])
    assert [sid for sid in seen if sid != "1"] == ["1.a", "1.b", "1.g", "1.h", "1.c", "1.d", "1.e", "1.f"]
    assert list(out) == ["1"] + [s[0] for s in SECTIONS1]
    assert {"M1", "M2", "geo"} <= seen["1.g"]                  # shared by the global sections
    assert not {"F1", "F2"} & seen["1.b"]                        # the unmasked spectra: 1.a's alone
    assert {"h1", "h2"} <= seen["1.d"] and not {"h1", "h2"} & seen["1.f"]     # 1.f has the engine's spectra
    for sid, _ in LOCAL:
        assert out[sid].evaluable, (sid, out[sid].reason)
        assert not seen[sid] & set(Level1Context.SPECTRA), (sid, seen[sid])
    keys = [k.split()[0] for k in out["1"].values["resolution_estimates_A"]]
    assert keys == sorted(keys) and "1.c" in keys and "1.g" in keys
