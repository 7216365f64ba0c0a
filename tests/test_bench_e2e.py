"""bench/bench_e2e.py: a section that is not measured says why, in the table and in the JSON rows (the
device check of 2026-11-27 ran 0.e of the 768³ map into "not_measured" without a word on the cause)."""

from gpuvalid.analyses.base import SectionResult, not_applicable, not_measured
from tests.helpers import bench_module


def _module():
    return bench_module("bench_e2e")


def _row(section, status, reason):
    return dict(map="m", box="4×4×4", voxels=64, work_voxels=64, section=section, status=status, reason=reason,
                device_note="", cpu_s=1.0, dev_s=0.5, peak_bytes=640, estimate_bytes=2 ** 30, agree="yes")


def test_reasons_of_each_device():
    b = _module()
    ok = SectionResult("0.e", "Local resolution", status="ok")
    lost = not_measured("0.e", "Local resolution", "internal error (RuntimeError: x)")
    assert b._reasons(ok, ok) == ""
    assert b._reasons(ok, lost) == "device: internal error (RuntimeError: x)"
    assert b._reasons(lost, lost) == "internal error (RuntimeError: x)"          # said once when the same
    assert b._reasons(None, lost) == "internal error (RuntimeError: x)"
    na = not_applicable("0.h", "Hand", "the resolution is worse than 5 Å")
    assert b._reasons(na, na) == "the resolution is worse than 5 Å"


def test_table_lists_why_a_section_was_not_measured():
    b = _module()
    rows = [_row("0.a", "ok", ""), _row("0.e", "not_measured", "device: out of memory"),
            _row("0.h", "not_applicable", "no hand at 6.6 Å")]
    text = b._fmt(rows, "cuda:0")
    assert "- m, 0.e (not_measured): device: out of memory" in text
    assert "no hand at 6.6 Å" not in text                 # a section that does not apply is not a failure
    assert "| m | 4×4×4 | **all** |" in text and "**all** |  | 3.00 |" in text


def test_big_arrays_dry_run(capsys):
    """bench/big_arrays.py (device check step 5e) on small CPU arrays: every operation (9 on a mask, 4 on a cube)
    answers right, so a "wrong" on a device is CuPy's, not the script's expectation."""
    mod = bench_module("big_arrays")
    for n in (5001, 5000):                    # the last element selected by the stride, and not
        assert mod.main(["--device", "cpu", "--elements", str(n)]) == 0
        rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| ") and "operation" not in r]
        assert len(rows) == 13 and all(r.split(" | ")[1] == "right" for r in rows), rows


def test_compare_runs_across_two_json_files(tmp_path):
    """``--compare``: the device results stored by one run agree with the CPU results stored by another when
    their values are within the section's tolerance, and not when a value moves past it (0.a: 1e-5 relative)."""
    import json

    b = _module()
    ok = SectionResult("0.a", "Mass analysis", status="ok", values={"com_A": [1.0, 2.0], "device": "cuda:0"})
    near = SectionResult("0.a", "Mass analysis", status="ok", values={"com_A": [1.0 + 1e-7, 2.0], "device": "cpu"})
    far = SectionResult("0.a", "Mass analysis", status="ok", values={"com_A": [1.001, 2.0], "device": "cpu"})

    def write(name, res, side):
        row = dict(_row("0.a", res.status, ""), result_cpu=None, result_dev=None)
        row[side] = b._stored(res)
        (tmp_path / name).write_text(json.dumps({"machine": "m", "rows": [row]}))
        return tmp_path / name

    dev = write("dev.json", ok, "result_dev")
    assert b.compare_runs(dev, write("near.json", near, "result_cpu")) == [("m", "0.a", "yes")]
    (m, sid, agree), = b.compare_runs(dev, write("far.json", far, "result_cpu"))
    assert agree.startswith("NO") and "com_A" in agree
    assert b.main(["--compare", str(dev), str(tmp_path / "near.json")]) == 0
    assert b.main(["--compare", str(dev), str(tmp_path / "far.json")]) == 1
    assert b.main(["--compare", str(dev), str(dev)]) == 1          # no CPU results in it: nothing compared


def test_host_table_of_the_cpu_run():
    """The CPU run's resident-memory growth per section beside its host estimate; none for a device-only run."""
    b = _module()
    mib = 2 ** 20
    rows = [dict(_row("0.c", "ok", ""), host_bytes=59 * mib, host_estimate_bytes=312 * mib),
            dict(_row("0.e", "ok", ""), host_bytes=700 * mib, host_estimate_bytes=625 * mib)]
    text = b._fmt(rows, "cpu")
    assert "| m | 0.c | 59 | 312 | yes |" in text and "| m | 0.e | 700 | 625 | NO |" in text
    assert "RSS growth" not in b._fmt([_row("0.c", "ok", "")], "cuda:0")
