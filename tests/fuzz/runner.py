"""Run fuzz cases through ``gpuvalid run`` in subprocesses and check each outcome.

Checks, for every case: no traceback; a non-zero exit has exactly one line on stderr, starting
``gpuvalid: error:`` and not an "internal error"; exit 0 means ``report.md`` and ``results.json`` exist,
the JSON has no NaN/Inf, no evaluable section has a missing or non-finite key result, and neither the
report nor the terminal prints ``nan``/``inf``; the expected outcome (error/report) and the case's own
check; peak resident memory (``ru_maxrss`` of the child) at most 1 GB for inputs under 1 MB, and for
refused inputs at most the import baseline + 2 × the declared map size (float32) + 64 MB.

``python -m tests.fuzz.runner WORKDIR [fast|default|all]`` runs a corpus and prints the numbers.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .corpus import Case, build

CHILD = Path(__file__).with_name("_child.py")
REPO = Path(__file__).resolve().parents[2]
SLACK_KB = 64 * 1024
GB_KB = 1024 * 1024
NONFINITE = re.compile(r"(?<![\w.])[-+]?(?:nan|inf|infinity)(?![\w])", re.IGNORECASE)


def _env(rss_file: Path) -> dict:
    env = dict(os.environ)
    env.update(FUZZ_RSS_FILE=str(rss_file), FUZZ_AS_LIMIT=str(16 << 30), OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", COLUMNS="200", PYTHONWARNINGS="default")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("GPUVALID_DEBUG", None)
    return env


def run_child(args: list[str], cwd: Path, rss_file: Path, timeout: float = 600) -> dict:
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, str(CHILD), *args], cwd=cwd, capture_output=True, timeout=timeout,
                           env=_env(rss_file))
        rc, out, err = p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        rc, out, err = "timeout", "", ""
    rss = int(rss_file.read_text()) if rss_file.is_file() else -1
    return {"rc": rc, "stdout": out, "stderr": err, "rss_kb": rss, "seconds": time.perf_counter() - t0}


def baseline_kb(work: Path) -> int:
    """Peak RSS of a run refused at once (the import cost every case pays)."""
    work.mkdir(parents=True, exist_ok=True)
    o = run_child(["run", str(work / "does-not-exist.mrc"), "--out", str(work / "baseline_out")], work,
                  work / "baseline.rss")
    return o["rss_kb"]


def _promised_ok(results: dict) -> list[str]:
    from gpuvalid.analyses.base import PROMISED

    bad = []
    for sid, s in results["sections"].items():
        if s["status"] not in ("ok", "warnings"):
            continue
        for k in PROMISED.get(sid, ()):
            if k in s["values"] and _has_null(s["values"][k]):
                bad.append(f"{sid}.{k} = {s['values'][k]!r}")
        for k, v in s["values"].items():
            if v is None:
                bad.append(f"{sid}.{k} is null")
    return bad


def _has_null(v) -> bool:
    if isinstance(v, list):
        return any(_has_null(x) for x in v)
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def run_case(case: Case, work: Path, base_kb: int) -> dict:
    """Run one case; return the outcome with ``problems`` (empty when everything holds)."""
    cdir = work / case.name
    cdir.mkdir(parents=True, exist_ok=True)
    if case.cwd_default_out:
        cwd = cdir / "cwd"
        cwd.mkdir(exist_ok=True)
        out = None
    else:
        cwd = cdir
        out = cdir / "out"
    args = ["run"] + [a.replace("{out}", str(out)) for a in case.args]
    if "--out" in args[:-1] and not case.cwd_default_out:  # the report folder the case names
        out = Path(args[args.index("--out") + 1])
        out = out if out.is_absolute() else cwd / out
    o = run_child(args, cwd, cdir / "rss")
    problems: list[str] = []
    text = o["stdout"] + o["stderr"]
    if o["rc"] == "timeout":
        problems.append("timed out")
    if "Traceback" in text:
        problems.append("traceback")
    results, report = None, ""
    if o["rc"] not in (0, "timeout"):
        lines = [ln for ln in o["stderr"].splitlines() if ln.strip()]
        if len(lines) != 1 or not lines[0].startswith("gpuvalid: error: "):
            problems.append(f"stderr is not one error line: {o['stderr'][-300:]!r}")
        elif "internal error" in lines[0]:
            problems.append(lines[0])
        if case.expect == "report":
            problems.append(f"expected a report, got: {o['stderr'].strip()[:200]}")
        if case.error_contains and case.error_contains not in o["stderr"]:
            problems.append(f"error lacks {case.error_contains!r}")
    elif o["rc"] == 0:
        if case.cwd_default_out:
            outs = list((cwd / "reports").glob("*/results.json"))
            out = outs[0].parent if len(outs) == 1 else cwd / "reports" / "?"
            stray = sorted(p.name for p in cwd.iterdir() if p.name != "reports")
            if stray:
                problems.append(f"files written into the working directory: {stray}")
        if case.expect == "error":
            problems.append("expected an error, got exit 0")
        try:
            results = json.loads((out / "results.json").read_text(encoding="utf-8"),
                                 parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
            report = (out / "report.md").read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            problems.append(f"no valid report: {exc}")
        if results is not None:
            problems += [f"meaningless value {b}" for b in _promised_ok(results)]
            for where, t in (("report.md", report), ("stdout", o["stdout"])):
                m = NONFINITE.search(t)
                if m:
                    problems.append(f"{where} prints {t[max(0, m.start() - 60):m.end()]!r}")
            if o["stderr"].strip():
                problems.append(f"stderr on success: {o['stderr'].strip()[:200]!r}")
            if case.check is not None:
                try:
                    case.check({**o, "out": out, "results": results, "report": report})
                except AssertionError as exc:
                    problems.append(f"check failed: {exc}")
    # memory: ≤ 1 GB for small inputs; refused inputs ≤ baseline + 2 × declared + slack
    if o["rss_kb"] > GB_KB:
        problems.append(f"peak RSS {o['rss_kb'] / 1024:.0f} MB > 1 GB")
    if o["rc"] not in (0, "timeout") and base_kb > 0:
        bound = base_kb + 2 * case.declared_bytes // 1024 + SLACK_KB
        if o["rss_kb"] > bound:
            problems.append(f"peak RSS {o['rss_kb'] / 1024:.0f} MB above {bound / 1024:.0f} MB for a refused input")
    return {"name": case.name, "rc": o["rc"], "rss_kb": o["rss_kb"], "seconds": o["seconds"],
            "stderr": o["stderr"].strip()[-300:], "problems": problems,
            "score": results["score"] if results else None}


def run_corpus(work: Path, subset: str = "default", workers: int = 2, names: set | None = None) -> dict:
    work = Path(work)
    cases = build(work / "corpus", subset)
    if names:
        cases = [c for c in cases if c.name in names]
    base = baseline_kb(work / "baseline")
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        outcomes = list(ex.map(lambda c: run_case(c, work / "runs", base), cases))
    return {"subset": subset, "cases": len(cases), "baseline_kb": base, "wall_s": time.perf_counter() - t0,
            "outcomes": outcomes}


def summarise(res: dict) -> str:
    oc = res["outcomes"]
    errs = [o for o in oc if o["rc"] not in (0, "timeout")]
    reps = [o for o in oc if o["rc"] == 0]
    bad = [o for o in oc if o["problems"]]
    lines = [f"{res['cases']} cases ({res['subset']}), wall {res['wall_s']:.0f} s; baseline RSS "
             f"{res['baseline_kb'] / 1024:.0f} MB",
             f"{len(errs)} one-line errors, {len(reps)} reports, {len(bad)} with problems",
             f"peak RSS max {max(o['rss_kb'] for o in oc) / 1024:.0f} MB; refused inputs max "
             f"{max([o['rss_kb'] for o in errs] or [0]) / 1024:.0f} MB; slowest case "
             f"{max(o['seconds'] for o in oc):.1f} s"]
    for o in bad:
        lines.append(f"  PROBLEM {o['name']}: {'; '.join(o['problems'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:  # pragma: no cover
    """``python -m tests.fuzz.runner [WORKDIR] [fast|default|all]``: run a corpus, print and save the outcomes."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tests.fuzz.runner", description=__doc__.splitlines()[0])
    ap.add_argument("work", nargs="?", default="fuzz_work", help="folder for the corpus and the runs (new)")
    ap.add_argument("subset", nargs="?", default="default", choices=("fast", "default", "all"))
    a = ap.parse_args(argv)
    work = Path(a.work)
    res = run_corpus(work, a.subset)
    (work / "fuzz_results.json").write_text(json.dumps(res, indent=1))
    print(summarise(res))
    for o in res["outcomes"]:
        print(f"{o['name']:34s} rc={o['rc']!s:4s} {o['rss_kb'] / 1024:6.0f} MB {o['seconds']:5.1f} s  "
              f"{(o['stderr'].splitlines() or [''])[-1][:110]}")
    return res


if __name__ == "__main__":  # pragma: no cover
    main()
