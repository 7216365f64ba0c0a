"""Level 1: validation of a map with its two half maps (sections 1.a–1.h after Level 0).

``SECTIONS1`` lists the sections in report order (module None: not implemented in this version).  Each
module exposes ``run(ctx1: Level1Context) -> SectionResult``.  :func:`run_level1` reads and checks the
halves, runs the sections and adds the "Half maps" section (not graded) with the resolution-estimates
sentence of the spec.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ..analyses.base import NOT_MEASURED, SectionResult
from ..errors import InputError
from ..lazy import forget

SECTIONS1 = [
    ("1.a", "Global resolution", "gpuvalid.level1.global_res"),
    ("1.b", "FSC permutation (FDR-FSC)", "gpuvalid.level1.fdr"),
    # --- 1.c-1.f: local resolution from the half maps (issue 12) ---
    ("1.c", "Local resolution (local FSC)", "gpuvalid.level1.local_fsc"),
    ("1.d", "Local resolution (local hypothesis tests)", "gpuvalid.level1.resmap"),
    ("1.e", "Local resolution (monogenic, half maps)", "gpuvalid.level1.monores_half"),
    ("1.f", "Directional local resolution", "gpuvalid.level1.monodir"),
    # --- end 1.c-1.f ---
    ("1.g", "Fourier Shell Occupancy", "gpuvalid.level1.fso"),
    ("1.h", "3-D FSC (conical FSC)", "gpuvalid.level1.fsc3d"),
]


def halves_beside(map_path: Path) -> list[Path] | None:
    """Find the half maps beside an EMDB archive entry's primary map.

    ``…/EMD-N/map/emd_N.map[.gz]`` → ``…/EMD-N/other/emd_N_half_map_{1,2}.map[.gz]``; None when the map is not
    in that layout or the halves are absent.
    """
    map_path = Path(map_path)
    name = map_path.name
    if not name.startswith("emd_") or map_path.parent.name != "map":
        return None
    num = name[4:].split(".", 1)[0]
    other = map_path.parent.parent / "other"
    found = []
    for i in (1, 2):
        cands = [other / f"emd_{num}_half_map_{i}.map{suf}" for suf in (".gz", "", ".bz2")]
        hit = next((c for c in cands if c.is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found


def run_level1(ctx0, half_paths, progress: Callable[[str], None] | None = None,
               error_log: list[str] | None = None, seed: int = 3,
               level0: dict | None = None) -> tuple[dict[str, SectionResult], dict | None]:
    """Run Level 1 on the primary map's context ``ctx0`` with ``half_paths`` (two paths).

    ``level0`` (the Level 0 sections) gives the local-resolution median for the estimates sentence.
    Returns ``(sections, half_maps_info)``; bad halves give the "Half maps" section "could not be measured"
    with a one-line reason and every Level 1 section "could not be measured" (the Level 0 report is
    unaffected).
    """
    from ..runner import run_section
    from .context import Level1Context, load_halves
    from .halves import SID as HSID, TITLE as HTITLE, refused

    out: dict[str, SectionResult] = {}
    if progress:
        progress("1 Half maps")
    t0 = time.perf_counter()
    try:
        hm = load_halves(half_paths, ctx0.shape, ctx0.voxel_size)
    except InputError as exc:
        reason = " ".join(str(exc).split())
        out[HSID] = refused(reason)
        out[HSID].seconds = time.perf_counter() - t0
        for sid, title, _mod in SECTIONS1:
            out[sid] = SectionResult(sid, title, status=NOT_MEASURED,
                                     reason="the half maps were refused (see the Half maps section)", key="—")
        return out, {"files": [Path(p).name for p in half_paths if p is not None], "refused": reason}

    ctx1 = Level1Context(ctx0, hm, seed=seed)
    ctx1.shed_level0()                   # the Level 0 sections are done: what only they read goes
    out[HSID] = run_section("gpuvalid.level1.halves", HSID, HTITLE, ctx1, error_log)
    for sid, title, module in run_order():
        prepare(ctx1, sid)
        if progress:
            progress(f"{sid} {title}")
        out[sid] = run_section(module, sid, title, ctx1, error_log)
    out = {HSID: out[HSID], **{sid: out[sid] for sid, _title, _mod in SECTIONS1}}      # report order
    estimates = by_section(ctx1.estimates)
    out[HSID].summary = estimates_sentence(ctx0.resolution, level0 or {}, estimates)
    out[HSID].values["resolution_estimates_A"] = estimates
    ctx1.release()
    return out, hm.info()


#: the local-resolution sections; they neither use the halves' cached spectra nor feed the global sections
LOCAL_SECTIONS = ("1.c", "1.d", "1.e", "1.f")
#: the last local sections, which read the primary map's hard mask and not its soft mask: the soft mask is dropped
#: before them
HARD_MASK_SECTIONS = ("1.d", "1.e", "1.f")
#: the last local sections, which read the halves only through the spectra of their mean and difference
#: (:func:`gpuvalid.level1.monores_half.half_engine`): from the first of them on, the device halves are dropped
ENGINE_SECTIONS = ("1.e", "1.f")


def prepare(ctx1, sid: str) -> None:
    """Let go, before section ``sid`` runs, what it and the sections after it in :func:`run_order` do not read.

    A local section: the halves' cached spectra (the global sections are done); 1.d–1.f: the primary map's soft
    mask (they read its hard mask); 1.e and 1.f: the device halves, once 1.e's engine holds their spectra.
    """
    if sid in LOCAL_SECTIONS:
        ctx1.drop_spectra()
    if sid in HARD_MASK_SECTIONS:
        forget(ctx1.ctx0, ("soft_mask",))
    if sid in ENGINE_SECTIONS:
        ctx1.keep_halves = False


def run_order() -> list[tuple]:
    """Return :data:`SECTIONS1` in the order they run: first the global sections, then the local ones.

    The global Fourier sections (1.a, 1.b, 1.g, 1.h) share the halves' cached spectra; the local-resolution
    sections need 1.a's estimate only.  Between the two the spectra are dropped
    (:meth:`Level1Context.drop_spectra`), so that they do not sit in device memory beside 1.c–1.f's work
    arrays.  The report keeps the order of :data:`SECTIONS1`.
    """
    return ([s for s in SECTIONS1 if s[0] not in LOCAL_SECTIONS]
            + [s for s in SECTIONS1 if s[0] in LOCAL_SECTIONS])


def by_section(estimates: dict) -> dict:
    """Return the resolution estimates (``"1.x label" → Å``) in section order, each section's in its own order."""
    return dict(sorted(estimates.items(), key=lambda kv: kv[0].split(" ", 1)[0]))


def estimates_sentence(R: float | None, level0: dict, estimates: dict) -> str:
    """Return the sentence on the range and mean of the resolution estimates.

    The estimates are the Level 0 local-resolution median and Level 1's; the sentence carries the spec's warning
    when the reported resolution R < 0.8 × their mean.
    """
    est = dict(estimates)
    loc = level0.get("0.e")
    if loc is not None and loc.evaluable:
        p = loc.values.get("percentiles_A")
        if p and p[2] is not None:
            est["0.e local-resolution median"] = float(p[2])
    if not est:
        return "No resolution could be estimated from the half maps."
    vals = list(est.values())
    mean = sum(vals) / len(vals)
    parts = ", ".join(f"{k} {v:.2f} Å" for k, v in est.items())
    s = (f"Half maps (Level 1): the resolution estimates ({parts}) range from {min(vals):.2f} to {max(vals):.2f} Å, "
         f"mean {mean:.2f} Å.")
    if R is not None:
        if R < 0.8 * mean:
            s += f" The reported resolution ({R:g} Å) may be overestimated (it is below 0.8 × the mean)."
        else:
            s += f" The reported resolution ({R:g} Å) is consistent with them (not below 0.8 × the mean)."
    return s
