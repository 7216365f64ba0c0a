"""0.e on real maps against an independent local reference: ``python -m gpuvalid.models.realcheck``.

For every real map of ``shared/data`` with a fitted model (``REAL_MAPS``), the network's local resolution
(what section 0.e reports) is compared with the local map-model FSC resolution
(:mod:`gpuvalid.models.mapmodel`) over the voxels of the hard mask within 3 Å of a model atom:
median bias (network median − reference median, Å), voxel-wise Pearson and Spearman correlations, and
where the reported resolution R falls in each distribution (``P = 100·#(local < R)/#``; inside 10–90 %
is what a sensible local-resolution map shows).  A model that does not line up with the map (correlation
of the map with the model density low-passed to R below ``MIN_PLACEMENT_CC`` over the model's
footprint, header origin or zero origin) is not used, and the map is reported as "not measured" with
that reason.  Models not placed in their map (``FITS``: GroEL's crystal ring 1oel in EMD-1997) are first
fitted by an exhaustive rigid-body search (:func:`gpuvalid.models.mapmodel.fit_copies`).

Then, on every map the same way, the model is refined as rigid bodies, one per chain (each copy's chains
separately for a fitted model; :func:`gpuvalid.models.mapmodel.refine_rigid_bodies`: small rotations and
translations maximising the correlation with the model density at R over each chain's footprint), so
that the reference measures the map rather than where a crystal structure or a deposition left the model;
the model correlation before and after and each chain's motion (angle °, centroid shift Å, RMS atom
displacement Å) are reported, and the reference and the compared voxels use the refined model.
``--no-refine`` gives the reference on the model as deposited (or as fitted).  Writes ``realcheck.json``
and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

MIN_PLACEMENT_CC = 0.3
FOOTPRINT_A = 3.0

# file, contour t, resolution R (Å), model; contour None: the level enclosing the model's volume
REAL_MAPS = [
    ("emd_3488.mrc", 0.09, 3.2, "5me2.pdb"),
    ("emd_0093_masked.mrc.gz", 0.7, 3.4, "6gyn.pdb"),
    ("emd_2566_crop_3j6b_chain9.mrc", None, 3.2, "3j6b_chain9.pdb"),
    ("emd_5168.map", 10.0, 6.6, "3mfp.pdb"),
    ("emd_1997.map", 1.0, 7.0, "1oel.pdb"),
]
# models that are not placed in their map: fitted here (1oel is one heptameric GroEL ring in the crystal
# frame; EMD-1997 is the tetradecamer with its 7-fold axis along z): two copies, each by exhaustive search
# over rotations about z in 1° steps over 360/7°, both ways up, and FFT translation
FITS = {"emd_1997.map": dict(n_copies=2, min_separation_A=40.0, step_deg=1.0, fold=7)}


def _rank(x: np.ndarray) -> np.ndarray:
    r = np.empty(x.size)
    r[np.argsort(x, kind="stable")] = np.arange(x.size)
    return r


def _pct_of(v: np.ndarray, R: float) -> float:
    return float(100.0 * np.count_nonzero(v < R) / max(v.size, 1))


def contour_for_model_volume(V: np.ndarray, n_atoms: int, voxel_size: float) -> float:
    """Return the contour level enclosing the model's volume (17 Å³ per non-hydrogen atom)."""
    from gpuvalid.simulate.filters import threshold_for_volume
    from gpuvalid.simulate.maps import VOLUME_PER_ATOM_A3

    return threshold_for_volume(V, int(round(n_atoms * VOLUME_PER_ATOM_A3 / voxel_size**3)))


def check_map(path: Path, threshold: float | None, R: float, model_path: Path, weights: str | None = None,
              log=print, refine: bool = True) -> dict:
    """Network vs local map-model FSC on one map (see the module docstring)."""
    from gpuvalid.backend import get_backend
    from gpuvalid.context import MapContext
    from gpuvalid.io.load import load_map_input
    from gpuvalid.simulate.structure import read_atoms

    from .infer import predict_locres
    from .mapmodel import (
        REFINE_CYCLES,
        REFINE_FOOTPRINT_A,
        REFINE_GRID_DEG,
        REFINE_MAX_ANGLE_DEG,
        REFINE_MAX_SHIFT_A,
        chain_labels,
        local_fsc_resolution,
        model_density,
        model_footprint,
        placement,
        refine_rigid_bodies,
        soft_model_mask,
        window_size_A,
    )

    t0 = time.perf_counter()
    mi = load_map_input(path, resolution=R)
    V, ts = mi.data, float(mi.voxel_size)
    atoms = read_atoms(model_path)
    out: dict = {"map": path.name, "model": model_path.name, "resolution_A": R, "voxel_size_A": ts,
                 "box_zyx": list(V.shape)}
    if threshold is None:
        threshold = contour_for_model_volume(V, len(atoms), ts)
        out["threshold_rule"] = "level enclosing the model's volume (17 Å³ per atom)"
    out["threshold"] = float(threshold)
    origin0 = mi.origin_A or (0.0, 0.0, 0.0)
    bodies = chain_labels(atoms)
    if path.name in FITS:
        from .mapmodel import fit_copies, rotation_z

        fs = FITS[path.name]
        rots = [rotation_z(d, f) for f in (False, True) for d in np.arange(0.0, 360.0 / fs["fold"], fs["step_deg"])]
        n_one = len(atoms)
        atoms, used = fit_copies(V, atoms, ts, origin0, R, rots, fs["n_copies"], fs["min_separation_A"])
        # every copy's chains are rigid bodies of their own: "copy k, chain X" -> "X<k+1>"
        bodies = np.array([f"{b}{k // n_one + 1}" for k, b in enumerate(np.tile(bodies, len(used)))])
        out["fitted"] = (f"{len(used)} copies fitted by exhaustive search (rotation about z in {fs['step_deg']:g}° "
                         f"steps, both ways up; FFT translation); centroids " +
                         "; ".join("(" + ", ".join(f"{v:.1f}" for v in u[3]) + ") Å" for u in used))
    pl = placement(V, atoms, ts, origin0, R)
    out["placement"] = pl
    best = pl[pl["best"]]
    if not (np.isfinite(best["cc"]) and best["cc"] >= MIN_PLACEMENT_CC):
        out["status"] = "not_measured"
        out["reason"] = (f"the model does not line up with the map (correlation with the model density at R: "
                         f"{pl['header_origin']['cc']:.2f} with the header origin, {pl['zero_origin']['cc']:.2f} "
                         f"with a zero origin; {100 * best['atoms_inside_fraction']:.0f} % of the atoms in the box)")
        log(f"{path.name}: {out['reason']}")
        return out
    origin = best["origin_A"]
    if refine:
        t_r = time.perf_counter()
        atoms, fits = refine_rigid_bodies(V, atoms, ts, origin, R, groups=bodies, cycles=REFINE_CYCLES)
        pl_after = placement(V, atoms, ts, origin, R)
        out["refinement"] = {
            "rule": (f"each chain a rigid body, {REFINE_CYCLES} cycles; rotation grid ±{REFINE_GRID_DEG:g}° per "
                     f"axis, then bounded Powell (±{REFINE_MAX_ANGLE_DEG:g}°, ±{REFINE_MAX_SHIFT_A:g} Å per "
                     f"component); correlation with the model density at R over each chain's "
                     f"{REFINE_FOOTPRINT_A:g} Å footprint"),
            "cc_before": best["cc"], "cc_after": pl_after[pl["best"]]["cc"],
            "seconds": time.perf_counter() - t_r,
            "bodies": [{"body": f.label, "atoms": f.n_atoms, "points": f.n_points, "cc_before": f.cc_before,
                        "cc_after": f.cc_after, "angle_deg": f.angle_deg, "centroid_shift_A": f.centroid_shift_A,
                        "rms_move_A": f.rms_move_A, "max_move_A": f.max_move_A, "at_bound": f.at_bound,
                        "centroid_A": [float(v) for v in f.centre_A], "shift_xyz_A": [float(v) for v in f.shift_A],
                        "rotation": [[float(v) for v in row] for row in f.rot]}
                       for f in fits]}
        rf = out["refinement"]
        log(f"{path.name}: rigid-body refinement of {len(fits)} chains: model CC {rf['cc_before']:.3f} -> "
            f"{rf['cc_after']:.3f}; per chain: " + "; ".join(
                f"{f.label} {f.cc_before:.3f}->{f.cc_after:.3f} {f.angle_deg:.1f}° {f.centroid_shift_A:.2f} Å "
                f"(rms {f.rms_move_A:.2f}){' AT BOUND' if f.at_bound else ''}" for f in fits) +
            f" ({rf['seconds']:.0f} s)")
    ctx = MapContext(get_backend("cpu"), V, ts, threshold, R)
    hard = ctx.be.to_host(ctx.hard_mask).astype(bool)
    where = hard & model_footprint(atoms, V.shape, ts, origin, FOOTPRINT_A)
    out["hard_mask_voxels"] = int(hard.sum())
    out["compared_voxels"] = int(where.sum())
    out["model_covered_fraction_of_mask"] = float(where.sum() / max(hard.sum(), 1))
    M = model_density(atoms, V.shape, ts, origin)
    w = soft_model_mask(atoms, V.shape, ts, origin, R)
    ref = local_fsc_resolution(V * w, M * w, ts, where, window_size_A(R))
    t1 = time.perf_counter()
    net = predict_locres(V, ts, hard, "cpu", weights)
    t2 = time.perf_counter()
    r, n = ref.resolution[where], net[where]
    ok = np.isfinite(r) & np.isfinite(n)
    r, n = r[ok], n[ok]
    bounded = (ref.at_nyquist | ref.below_first_shell)[where][ok]
    pr = [float(v) for v in np.percentile(r, [2.5, 10, 25, 50, 75, 90, 97.5])]
    pn = [float(v) for v in np.percentile(n, [2.5, 10, 25, 50, 75, 90, 97.5])]
    out.update(
        status="ok", window_A=ref.window_A, n_centres=ref.n_centres,
        reference_percentiles_A=pr, network_percentiles_A=pn,
        median_bias_A=float(np.median(n) - np.median(r)),
        median_bias_unbounded_A=float(np.median(n[~bounded]) - np.median(r[~bounded])) if (~bounded).any()
        else float("nan"),
        reference_bound_fraction=float(bounded.mean()),
        reference_at_nyquist_fraction=float(ref.at_nyquist[where][ok].mean()),
        pearson=float(np.corrcoef(n, r)[0, 1]) if n.std() > 0 and r.std() > 0 else float("nan"),
        spearman=float(np.corrcoef(_rank(n), _rank(r))[0, 1]) if n.std() > 0 and r.std() > 0 else float("nan"),
        R_percentile_network=_pct_of(n, R), R_percentile_reference=_pct_of(r, R),
        seconds_reference=t1 - t0, seconds_network=t2 - t1)
    log(f"{path.name}: ref median {pr[3]:.2f} net median {pn[3]:.2f} bias {out['median_bias_A']:+.2f} "
        f"pearson {out['pearson']:.2f} P_net {out['R_percentile_network']:.1f} P_ref "
        f"{out['R_percentile_reference']:.1f} (cc {best['cc']:.2f}, {where.sum()} voxels, "
        f"{t1 - t0:.0f}+{t2 - t1:.0f} s)")
    return out


def markdown(rows: list[dict]) -> str:
    """Markdown table of :func:`check_map` results, one row per map (unmeasured maps with their reason)."""
    head = ("| map | R (Å) | model CC (before → after refinement) | largest chain motion | voxels | "
            "reference median (10–90 %) | network median (10–90 %) | median bias | "
            "Pearson / Spearman | P(R) network / reference |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for o in rows:
        if o.get("status") != "ok":
            lines.append(f"| {o['map']} | {o['resolution_A']:g} | | | — | not measured: {o.get('reason', '')} "
                         "| | | | |")
            continue
        pr, pn = o["reference_percentiles_A"], o["network_percentiles_A"]
        rf = o.get("refinement")
        if rf:
            cc = f"{rf['cc_before']:.3f} → {rf['cc_after']:.3f}"
            b = max(rf["bodies"], key=lambda x: x["rms_move_A"]) if rf["bodies"] else None
            mv = (f"{b['body']}: {b['angle_deg']:.1f}°, {b['centroid_shift_A']:.2f} Å (rms {b['rms_move_A']:.2f} Å)"
                  if b else "—")
        else:
            cc, mv = f"{o['placement'][o['placement']['best']]['cc']:.3f} (not refined)", "—"
        lines.append(
            f"| {o['map']} | {o['resolution_A']:g} | {cc} | {mv} | {o['compared_voxels']} | "
            f"{pr[3]:.2f} ({pr[1]:.2f}–{pr[5]:.2f}) | "
            f"{pn[3]:.2f} ({pn[1]:.2f}–{pn[5]:.2f}) | {o['median_bias_A']:+.2f} | {o['pearson']:.2f} / "
            f"{o['spearman']:.2f} | {o['R_percentile_network']:.0f} % / {o['R_percentile_reference']:.0f} % |")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the check from the command line (see the module docstring); return the exit status 0.

    Writes ``--out`` (default ``realcheck.json``) after each map and prints the Markdown table.

    Raises
    ------
    SystemExit
        When no ``shared/data`` folder is given (``--data``) or found.
    """
    from gpuvalid.simulate.sources import shared_data_dir

    ap = argparse.ArgumentParser(prog="python -m gpuvalid.models.realcheck",
                                 description="0.e network vs local map-model FSC on the real maps with models.")
    ap.add_argument("--data", type=Path, default=None, help="the shared/data folder")
    ap.add_argument("--out", type=Path, default=Path("realcheck.json"))
    ap.add_argument("--only", nargs="*", default=None, help="map file names to check")
    ap.add_argument("--weights", type=Path, default=None, help="locres weights (default: the shipped ones)")
    ap.add_argument("--no-refine", action="store_true",
                    help="use the model as deposited (or as fitted), without the per-chain rigid-body refinement")
    a = ap.parse_args(argv)
    data = a.data or shared_data_dir()
    if data is None:
        raise SystemExit("gpuvalid: error: shared/data not found (use --data)")
    rows = []
    for f, t, R, model in REAL_MAPS:
        if a.only and f not in a.only:
            continue
        rows.append(check_map(data / f, t, R, data / "models" / model, None if a.weights is None else str(a.weights),
                              refine=not a.no_refine))
        a.out.write_text(json.dumps(rows, indent=1, default=float))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
