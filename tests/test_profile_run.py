"""bench/profile_run.py (device check step 5c): one run on the CPU writes exactly one text file holding every
section's seconds and, per section, the two cProfile tables (by cumulative and by own time)."""

from pathlib import Path

from gpuvalid.analyses import SECTIONS
from tests.helpers import bench_module

REPO = Path(__file__).resolve().parents[1]


def _module():
    return bench_module("profile_run")


def _rows(block: str, heading: str) -> list[str]:
    """The data rows of the table under ``heading`` in one section's block."""
    lines = block.split(heading, 1)[1].split("\n")[1:]
    assert lines[0].split() == ["ncalls", "tottime", "s", "cumtime", "s", "function"]
    rows = []
    for line in lines[1:]:
        if not line.strip():
            break
        rows.append(line)
    return rows


def test_profile_run_writes_every_section_and_both_tables(tmp_path):
    pr = _module()
    top = 8
    assert pr.main(["--device", "cpu", "--size", "48", "--map", "synthetic", "--top", str(top),
                    "--out", str(tmp_path)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["profile_48.txt"]  # one file (the device tool keeps 8)
    text = (tmp_path / "profile_48.txt").read_text()
    assert len(text.encode()) < 200_000
    assert pr.PENDING not in text  # the unblocked run finished and replaced the placeholder
    assert "CUDA_LAUNCH_BLOCKING=1 in the profiled process" in text
    assert "48×48×48" in text

    seconds, profiles = text.split("## Profiles", 1)
    for sid, title, _ in SECTIONS:
        row = next(line for line in seconds.splitlines() if line.startswith(f"| {sid} | {title} |"))
        s, p = row.split("|")[4:6]
        assert float(s) >= 0 and float(p) >= 0
        block = profiles.split(f"\n### {sid} {title}: ", 1)[1].split("\n### ", 1)[0]
        cum = _rows(block, f"top {top} by cumulative time")
        own = _rows(block, f"top {top} by own time")
        assert 1 <= len(cum) <= top and 1 <= len(own) <= top
        cumtimes = [float(r.split()[2]) for r in cum]
        assert cumtimes == sorted(cumtimes, reverse=True)
        assert "gpuvalid/runner.py" in cum[0] and "run_section" in cum[0]  # the harness itself is left out
        owntimes = [float(r.split()[1]) for r in own]
        assert owntimes == sorted(owntimes, reverse=True)
    assert f"top {2 * top} by own time" in profiles.rsplit("\n### ", 1)[1]  # all sections together


def test_paths_are_shortened():
    pr = _module()
    assert pr._short("/opt/venv/lib/python3.12/site-packages/cupy/_core/core.py") == "cupy/_core/core.py"
    assert pr._short("/usr/lib/python3.12/functools.py") == "<stdlib>/functools.py"
    assert pr._short(str(REPO / "gpuvalid" / "monores.py")) == "gpuvalid/monores.py"
    assert pr._label(("~", 0, "<built-in method torch.conv3d>")) == "<built-in method torch.conv3d>"
    assert len(pr._label(("/x.py", 1, "f" * 500))) == pr.LABEL_MAX
