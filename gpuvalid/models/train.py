"""Train gpuvalid's learned models from scratch on simulated maps: ``python -m gpuvalid.models.train {locres,hand}``.

Everything is seeded (``--seed``, default 0): the structures' split, the simulated maps, the patch
sampling, the weight initialisation and the batch order; torch runs single-process on the CPU with
deterministic algorithms, so a rerun on the same machine and versions gives the same weights.
Weights go to ``gpuvalid/models/weights/`` (or ``--out``) with a ``<kind>_metrics.json`` of held-out
metrics (validation during training, test at the end).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from gpuvalid.simulate import sources
from gpuvalid.simulate.helix import helix_fraction
from gpuvalid.simulate.maps import simulate_locres, simulate_uniform
from gpuvalid.simulate.structure import read_atoms

from . import WEIGHTS_DIR, preprocess as P
from .nets import build, n_parameters

PATCH = 24
HAND_RES_RANGE = (2.5, 5.0)   # Å: resolutions of the hand training maps
HAND_CROP_A = 25.0            # Å: radius of the model crops of the hand maps


def load_structures(split: str, protein_only: bool = False, min_helix: float = 0.0) -> list:
    """``(Structure, Atoms)`` of one split, skipping unavailable files."""
    out = []
    for s in sources.splits()[split]:
        p = sources.path_of(s)
        if p is None or (protein_only and not s.protein):
            continue
        a = read_atoms(p)
        if min_helix and helix_fraction(a) < min_helix:
            continue
        out.append((s, a))
    return out


def _patch_centres(where: np.ndarray, rng, n: int, half: int) -> np.ndarray:
    idx = np.argwhere(where)
    shape = np.array(where.shape)
    ok = ((idx >= half) & (idx < shape - half)).all(1)
    idx = idx[ok]
    if len(idx) == 0:
        return idx
    return idx[rng.choice(len(idx), size=min(n, len(idx)), replace=False)]


def _cut(a: np.ndarray, c, half: int, patch: int) -> np.ndarray:
    z, y, x = (int(v) - half for v in c)
    return a[z:z + patch, y:y + patch, x:x + patch]


def locres_patches(structs: list, rng, maps_per_structure: int, patches_per_map: int, patch: int = PATCH,
                   rf: int = 13, grid_A: float = 1.0, res_range=(2.0, 13.0), deposit: bool = False,
                   crop_radius_A: float = 30.0, sharpen: bool = False, log_res: bool = False) -> dict:
    """Simulate training patches for the local-resolution network.

    Input patches (local-RMS normalised), target local resolution and loss mask of the valid output, from
    maps simulated at ``grid_A`` Å/voxel with local resolutions in ``res_range`` Å (``deposit``: made to
    look like deposited maps; ``sharpen``: atom envelope flattened up to the finest resolution;
    :func:`gpuvalid.simulate.maps.simulate_locres`).  Returns ``{"x", "y", "m"}`` stacked arrays.
    """
    X, Y, M = [], [], []
    r = rf // 2
    for _s, atoms in structs:
        for _ in range(maps_per_structure):
            m = simulate_locres(atoms, rng, voxel_size=grid_A, res_range=res_range, deposit=deposit,
                                crop_radius_A=crop_radius_A, sharpen=sharpen, log_res=log_res)
            x = P.locres_input(m.V)
            for c in _patch_centres(m.mask, rng, patches_per_map, patch // 2):
                X.append(_cut(x, c, patch // 2, patch))
                Y.append(_cut(m.local_res, c, patch // 2, patch)[r:patch - r, r:patch - r, r:patch - r])
                M.append(_cut(m.mask, c, patch // 2, patch)[r:patch - r, r:patch - r, r:patch - r])
    return {"x": np.stack(X), "y": np.stack(Y), "m": np.stack(M)}


def _augment(x: torch.Tensor, *ys: torch.Tensor, gen: torch.Generator):
    """Random proper rotation by 90° steps of a batch and its per-voxel targets."""
    k = int(torch.randint(0, 4, (1,), generator=gen))
    axes = [(2, 3), (2, 4), (3, 4)][int(torch.randint(0, 3, (1,), generator=gen))]
    x = torch.rot90(x, k, axes)
    return (x, *[torch.rot90(y, k, (a - 1, b - 1)) for y, (a, b) in zip(ys, [axes] * len(ys), strict=True)])


def fit(kind: str, data: dict, val: dict | None, seed: int, steps: int, batch: int = 16,
        lr: float = 3e-3, log=print, channels=None, log_every: int = 25, out_range=None,
        relative: bool = False) -> tuple:
    """Train the local-resolution network (``kind`` 'locres' or 'locres_fine') for ``steps`` AdamW steps.

    Cosine learning-rate decay and an L1 loss (Å; ``relative``: |error|/truth, so that 0.5 Å at 1.5 Å
    weighs as 2 Å at 6 Å) over the masked output voxels of rotated patches; returns (net, history).

    Raises
    ------
    ValueError
        When ``kind`` is not a local-resolution network (the hand model is trained by :func:`fit_hand`).
    """
    if kind not in ("locres", "locres_fine"):
        raise ValueError(f"fit() trains the local-resolution networks, not {kind!r} (the hand model: fit_hand)")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = build(kind, channels, out_range)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    X = torch.from_numpy(data["x"])[:, None]
    Y = torch.from_numpy(data["y"])
    M = torch.from_numpy(data["m"])
    n = X.shape[0]
    t0 = time.perf_counter()
    hist = {"step": [], "train_loss": [], "val": []}
    step, running = 0, []
    while step < steps:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - batch + 1, batch):
            b = perm[i:i + batch]
            frac = step / max(steps, 1)
            for g in opt.param_groups:  # cosine decay over the run
                g["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))
            x, y, m = _augment(X[b], Y[b], M[b].float(), gen=gen)
            err = torch.abs(net(x) - y) / y if relative else torch.abs(net(x) - y)
            loss = (err * m).sum() / m.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running.append(float(loss.detach()))
            step += 1
            if step % log_every == 0:
                hist["step"].append(step)
                hist["train_loss"].append(float(np.mean(running)))
                running = []
                msg = f"{kind} step {step} loss {hist['train_loss'][-1]:.4f} ({time.perf_counter() - t0:.0f} s)"
                if val is not None and step % (4 * log_every) == 0:
                    v = evaluate_patches(kind, net, val, seed)
                    hist["val"].append((step, v))
                    msg += f" val {v:.4f}"
                log(msg)
            if step >= steps:
                break
    hist["seconds"] = time.perf_counter() - t0
    hist["steps"] = step
    net.eval()
    return net, hist


@torch.no_grad()
def evaluate_patches(kind: str, net, data: dict, seed: int = 0) -> float:
    """Local-resolution MAE (Å) of ``net`` over the masked output voxels of the patches."""
    net.eval()
    X = torch.from_numpy(data["x"])[:, None]
    err, cnt = 0.0, 0.0
    for i in range(0, X.shape[0], 32):
        y = torch.from_numpy(data["y"][i:i + 32])
        m = torch.from_numpy(data["m"][i:i + 32]).float()
        err += (torch.abs(net(X[i:i + 32]) - y) * m).sum().item()
        cnt += m.sum().item()
    net.train()
    return err / max(cnt, 1.0)


# ------------------------------------------------------------------------------- hand model
def hand_features(structs: list, rng, maps_per_structure: int, res_range=HAND_RES_RANGE) -> dict:
    """Twist features of simulated maps (correct hand) at resolutions drawn uniformly in ``res_range`` Å.

    Computed exactly as at inference (1 Å grid, contour mask of the simulation).
    """
    from gpuvalid.backend import get_backend

    from .chirality import twist_features

    be = get_backend("cpu")
    X = []
    for _s, atoms in structs:
        for _ in range(maps_per_structure):
            m = simulate_uniform(atoms, rng, float(rng.uniform(*res_range)), with_helix=False,
                                 crop_radius_A=HAND_CROP_A)
            X.append(twist_features(be, m.V, m.mask, m.voxel_size)["features"])
    return {"x": np.asarray(X, dtype=np.float64)}


def fit_hand(data: dict, seed: int, steps: int = 400, lr: float = 0.05, l2: float = 1e-3, log=print) -> tuple:
    """Fit the hand model: bias-free logistic regression of "mirrored" on the standardised features.

    Each map once as is (label 0) and once mirrored (features negated, which is exact for these odd
    features; label 1).  Returns (model dict for :mod:`hand_model`, history).
    """
    torch.manual_seed(seed)
    X = torch.from_numpy(data["x"])
    rms = X.pow(2).mean(0).sqrt().clamp(min=1e-12)
    Z = torch.cat([X / rms, -X / rms])
    y = torch.cat([torch.zeros(len(X)), torch.ones(len(X))]).double()
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr)
    hist = {"step": [], "train_loss": []}
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(Z @ w, y) + l2 * w.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == 1:
            hist["step"].append(step)
            hist["train_loss"].append(float(loss.detach()))
            log(f"hand step {step} loss {hist['train_loss'][-1]:.4f}")
    hist["seconds"] = time.perf_counter() - t0
    from .chirality import SCALES

    model = {"scales": [list(s) for s in SCALES], "rms": [float(v) for v in rms],
             "weights": [float(v) for v in w.detach()]}
    return model, hist


def hand_accuracy(model: dict, data: dict) -> float:
    """Fraction of maps (each as is and mirrored) on the right side of 0.5."""
    from .hand_model import logit

    z = np.array([logit(model, f) for f in data["x"]])
    return float(0.5 * (np.mean(z < 0) + np.mean(-z > 0)))


def save(net, kind: str, out_dir: Path, meta: dict) -> Path:
    """Write ``net`` as ``<out_dir>/<kind>.pt`` (kind, channels, state, output range, ``meta``); return the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    p = out_dir / f"{kind}.pt"
    sd = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    blob = {"kind": kind, "channels": list(net.channels), "state_dict": sd, "meta": meta}
    if hasattr(net, "LO"):
        blob["out_range"] = [net.LO, net.HI]
    torch.save(blob, p)
    return p


# ------------------------------------------------------------------------------- test evaluation
LOCRES_SETUPS = {  # kind: working grid (Å/voxel), training resolutions (Å), output range (Å), crop radius (Å),
    # log_res: best resolution log-uniform, spread 5–80 % of it (more maps and voxels at the fine end); relative:
    # L1 loss on |error|/truth; sharpen (--sharpen, an experiment, not the shipped weights): atom envelope
    # flattened up to the finest resolution (simulate_locres's sharpen_envelope)
    "locres": dict(grid_A=1.0, res_range=(2.0, 13.0), out_range=(2.0, 13.0), crop_radius_A=30.0),
    "locres_fine": dict(grid_A=0.5, res_range=(1.5, 6.0), out_range=(1.0, 7.0), crop_radius_A=18.0, sharpen=False,
                        log_res=True, relative=True),
}


def test_locres(seed: int, out_dir: Path, maps_per_structure: int = 2, log=print, kind: str = "locres",
                deposit: bool = False, weights: Path | None = None, sharpen: bool = False) -> dict:
    """MAE of the network on whole held-out test maps, and of the monogenic estimate, against the truth.

    Maps simulated as in training for ``kind``; ``deposit``: deposited-looking maps; ``sharpen``: sharpened
    maps, also where the setup does not sharpen.
    """
    from gpuvalid.backend import get_backend
    from gpuvalid.errors import NotMeasurable
    from gpuvalid.masks import dilate
    from gpuvalid.monores import monogenic_local_resolution

    from .infer import locres_on_working_grid

    be = get_backend("cpu")
    rng = np.random.default_rng(seed + 1000)
    su = LOCRES_SETUPS[kind]
    weights = weights or out_dir / f"{kind}.pt"
    rows = []
    for s, atoms in load_structures("test"):
        for _ in range(maps_per_structure):
            # 20 Å pad: room for a background (the monogenic noise level)
            m = simulate_locres(atoms, rng, voxel_size=su["grid_A"], res_range=su["res_range"], pad_A=20.0,
                                deposit=deposit, crop_radius_A=su["crop_radius_A"],
                                sharpen=sharpen or su.get("sharpen", False), log_res=su.get("log_res", False))
            pred = locres_on_working_grid(m.V, m.mask, "cpu", str(weights))
            hard = dilate(be, m.mask, int(round(2.0 / su["grid_A"])))  # the hard mask's 2 Å dilation
            try:
                mono = monogenic_local_resolution(be, m.V, m.voxel_size, hard)
            except NotMeasurable:   # counted as "not measured" (NaN), never as a number
                mono = np.full(m.V.shape, np.nan, dtype=np.float32)
            t = m.local_res[m.mask]
            p, q = pred[m.mask], mono[m.mask]
            rows.append(dict(structure=s.name, lo=m.params["lo"], hi=m.params["hi"], n=int(m.mask.sum()),
                             mae_net=float(np.mean(np.abs(p - t))), mae_mono=float(np.nanmean(np.abs(q - t))),
                             median_true=float(np.median(t)), median_net=float(np.median(p)),
                             median_mono=float(np.nanmedian(q)),
                             mad_net_mono=float(np.nanmean(np.abs(p - q))),
                             corr_net_mono=float(np.corrcoef(p[np.isfinite(q)], q[np.isfinite(q)])[0, 1])
                             if np.isfinite(q).sum() > 2 else float("nan")))
            log(f"test {s.name}: true {rows[-1]['median_true']:.2f} net {rows[-1]['median_net']:.2f} "
                f"mono {rows[-1]['median_mono']:.2f}  MAE net {rows[-1]['mae_net']:.2f} mono {rows[-1]['mae_mono']:.2f}")
    agg = {k: float(np.nanmean([r[k] for r in rows])) for k in ("mae_net", "mae_mono", "mad_net_mono", "corr_net_mono")}
    agg["median_abs_err_of_median_net"] = float(np.median([abs(r["median_net"] - r["median_true"]) for r in rows]))
    agg["median_abs_err_of_median_mono"] = float(np.nanmedian([abs(r["median_mono"] - r["median_true"]) for r in rows]))
    agg["n_maps_mono_measured"] = int(sum(np.isfinite(r["median_mono"]) for r in rows))
    agg["n_maps"] = len(rows)
    return {"summary": agg, "maps": rows}


def check_fine_range(seed: int, weights: Path, n_maps: int = 12, res_range=(1.5, 2.5), voxel_sizes=(0.5, 0.6),
                     compare: Path | None = None, log=print) -> dict:
    """Check the fine model where it is needed, on held-out maps at its finest resolutions.

    Held-out maps (test structures) simulated with best local resolution in ``res_range`` Å at
    ``voxel_sizes`` Å/voxel (alternating), each twice from the same random state (same rotation, crop,
    resolution field, B-factor), unsharpened and sharpened (:func:`simulate_locres` ``sharpen``), run through
    the whole :func:`~.infer.predict_locres` path with the hard mask (as 0.e does); per map the median truth
    and the median estimate over the hard mask.  ``compare``: another weights file run on the same maps
    (e.g. the 1 Å model).
    """
    from gpuvalid.backend import get_backend
    from gpuvalid.context import MapContext

    from .infer import predict_locres

    be = get_backend("cpu")
    rng = np.random.default_rng(seed + 3000)
    su = LOCRES_SETUPS["locres_fine"]
    structs = load_structures("test")
    rows = []
    for i in range(n_maps):
        s, atoms = structs[i % len(structs)]
        ts = voxel_sizes[i % len(voxel_sizes)]
        state = rng.bit_generator.state
        for sharpen in (False, True):
            rng.bit_generator.state = state
            m = simulate_locres(atoms, rng, voxel_size=ts, res_range=res_range, pad_A=12.0,
                                crop_radius_A=su["crop_radius_A"], sharpen=sharpen)
            hard = be.to_host(MapContext(be, m.V, ts, m.threshold, float(np.median(m.local_res))).hard_mask)
            hard = hard.astype(bool)
            t = m.local_res[hard]
            row = dict(structure=s.name, voxel_size=ts, sharpen=sharpen, lo=m.params["lo"], hi=m.params["hi"],
                       bfactor=m.params["bfactor"], sharpen_fraction=m.params.get("sharpen_fraction", 0.0),
                       n=int(hard.sum()), median_true=float(np.median(t)))
            for key, w in (("fine", weights), ("compare", compare)):
                if w is None:
                    continue
                p = predict_locres(m.V, ts, hard, "cpu", str(w))[hard]
                row[f"median_{key}"] = float(np.median(p))
                row[f"bias_{key}"] = row[f"median_{key}"] - row["median_true"]
                row[f"mae_{key}"] = float(np.mean(np.abs(p - t)))
            rows.append(row)
            log(f"{s.name} Ts {ts} {'sharpened' if sharpen else 'plain'}: lo {row['lo']:.2f} hi {row['hi']:.2f} "
                f"true {row['median_true']:.2f} fine {row['median_fine']:.2f} ({row['bias_fine']:+.2f})"
                + (f" compare {row['median_compare']:.2f}" if compare is not None else ""))
    summ = {}
    for sharpen in (False, True):
        sel = [r for r in rows if r["sharpen"] == sharpen]
        b = np.array([r["bias_fine"] for r in sel])
        key = "sharpened" if sharpen else "plain"
        summ[key] = dict(n_maps=len(sel), median_bias_A=float(np.median(b)), min_bias_A=float(b.min()),
                         max_bias_A=float(b.max()), n_within_0_5=int(np.sum(np.abs(b) <= 0.5)),
                         mae_A=float(np.mean([r["mae_fine"] for r in sel])))
        if compare is not None:
            summ[key]["median_bias_compare_A"] = float(np.median([r["bias_compare"] for r in sel]))
    return {"summary": summ, "maps": rows}


def test_hand(seed: int, out_dir: Path, resolutions=(3.0, 4.0, 4.5), crop_radius_A: float | None = HAND_CROP_A,
              log=print) -> dict:
    """Map-level hand accuracy on held-out test structures and their mirror images, per resolution.

    Each mirrored map is simulated, mirrored and scored through :func:`hand_model.hand_score` like any
    input; maps of ``crop_radius_A`` Å crops around a random Cα (as in training) or, with None, of whole
    models.
    """
    from gpuvalid.backend import get_backend
    from gpuvalid.simulate.filters import mirror

    from .hand_model import hand_score

    be = get_backend("cpu")
    rng = np.random.default_rng(seed + 2000)
    rows = []
    for s, atoms in load_structures("test", protein_only=True, min_helix=0.1):
        for res in resolutions:
            m = simulate_uniform(atoms, rng, res, with_helix=False, crop_radius_A=crop_radius_A)
            for mirrored, V in ((False, m.V), (True, mirror(m.V))):
                r = hand_score(be, V, m.voxel_size, m.threshold, out_dir / "hand.json")
                ok = (r["score"] > 0.5) == mirrored
                rows.append(dict(structure=s.name, resolution=res, mirrored=mirrored, score=r["score"],
                                 correct=ok, n_voxels=r["n_voxels"]))
            log(f"test {s.name} {res} Å: score {rows[-2]['score']:.3f} / mirror {rows[-1]['score']:.3f}")
    summ = {}
    for res in resolutions:
        sel = [r for r in rows if r["resolution"] == res]
        summ[f"accuracy_{res:g}A"] = float(np.mean([r["correct"] for r in sel]))
    summ["accuracy_all"] = float(np.mean([r["correct"] for r in rows]))
    le4 = [r for r in rows if r["resolution"] <= 4.0]
    summ["accuracy_le4A"] = float(np.mean([r["correct"] for r in le4])) if le4 else float("nan")
    summ["n_maps"] = len(rows)
    return {"summary": summ, "maps": rows}


def main(argv=None) -> int:
    """Train (or test) from the command line (see the module docstring); return the exit status 0.

    Writes the weights and ``<kind>_metrics.json`` to ``--out`` (default: the shipped weights folder;
    ``--check-fine``: ``locres_fine_check.json``).
    """
    ap = argparse.ArgumentParser(prog="python -m gpuvalid.models.train",
                                 description="Train gpuvalid's local-resolution or hand networks from scratch.")
    ap.add_argument("kind", choices=["locres", "locres_fine", "hand"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    ap.add_argument("--steps", type=int, default=2400, help="training steps of the local-resolution network")
    ap.add_argument("--batch", type=int, default=8, help="patches per step")
    ap.add_argument("--hand-steps", type=int, default=400, help="optimiser steps of the hand model")
    ap.add_argument("--maps", type=int, default=None,
                    help="simulated training maps per structure (default: 8 for locres, 6 for hand)")
    ap.add_argument("--patches", type=int, default=10, help="patches per simulated map")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-test", action="store_true")
    ap.add_argument("--sharpen", action="store_true",
                    help="locres_fine: train and test on sharpened simulations (atom envelope flattened up to the "
                         "finest resolution; an experiment, not what the shipped weights were trained on)")
    ap.add_argument("--test-maps", type=int, default=2, help="held-out test maps per test structure")
    ap.add_argument("--test-only", action="store_true",
                    help="local resolution: no training; test the weights in --out and add the result to "
                         "<kind>_metrics.json there")
    ap.add_argument("--check-fine", action="store_true",
                    help="locres_fine: no training; run the weights in --out on held-out 1.5–2.5 Å maps "
                         "(plain and sharpened, 0.5/0.6 Å voxels, whole predict_locres path with the hard mask) "
                         "and write locres_fine_check.json there")
    ap.add_argument("--deposit", action="store_true",
                    help="local resolution: simulate deposited-looking maps (masks, sharpening, anisotropy, "
                         "map-shaped noise; not what the shipped weights were trained on)")
    a = ap.parse_args(argv)
    if a.maps is None:
        a.maps = 6 if a.kind == "hand" else 8
    torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True)
    sources.fetch()
    if a.check_fine:
        from . import weights_path
        res = check_fine_range(a.seed, a.out / "locres_fine.pt", compare=weights_path("locres"))
        (a.out / "locres_fine_check.json").write_text(json.dumps(res, indent=1, default=float))
        print(json.dumps(res["summary"], indent=1))
        return 0
    if a.test_only and a.kind in LOCRES_SETUPS:
        mp = a.out / f"{a.kind}_metrics.json"
        metrics = json.loads(mp.read_text()) if mp.is_file() else {"seed": a.seed}
        t0 = time.perf_counter()
        metrics["test"] = test_locres(a.seed, a.out, a.test_maps, kind=a.kind, deposit=a.deposit, sharpen=a.sharpen)
        metrics["test_seconds"] = time.perf_counter() - t0
        mp.write_text(json.dumps(metrics, indent=1, default=float))
        print(json.dumps(metrics["test"]["summary"], indent=1))
        return 0
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    metrics: dict = {"seed": a.seed, "torch": torch.__version__}
    if a.kind in LOCRES_SETUPS:
        su = LOCRES_SETUPS[a.kind]
        if a.sharpen:
            su = {**su, "sharpen": True}
        kw = dict(grid_A=su["grid_A"], res_range=su["res_range"], deposit=a.deposit,
                  crop_radius_A=su["crop_radius_A"], sharpen=su.get("sharpen", False), log_res=su.get("log_res", False))
        tr = locres_patches(load_structures("train"), rng, a.maps, a.patches, **kw)
        va = locres_patches(load_structures("val"), rng, 2, a.patches, **kw)
        metrics["data_seconds"] = time.perf_counter() - t0
        metrics["setup"] = {**su, "deposit": a.deposit}
        print(f"data: {len(tr['x'])} train / {len(va['x'])} val patches in {metrics['data_seconds']:.0f} s")
        net, hist = fit(a.kind, tr, va, a.seed, a.steps, batch=a.batch, out_range=su["out_range"],
                        relative=su.get("relative", False))
        metrics.update(train_seconds=hist["seconds"], steps=hist["steps"], params=n_parameters(net),
                       val_mae_A=evaluate_patches(a.kind, net, va), history=hist)
        save(net, a.kind, a.out, {"seed": a.seed, "val_mae_A": metrics["val_mae_A"], **metrics["setup"]})
        if not a.no_test:
            metrics["test"] = test_locres(a.seed, a.out, a.test_maps, kind=a.kind, deposit=a.deposit,
                                          sharpen=a.sharpen)
    else:
        tr = hand_features(load_structures("train", protein_only=True), rng, a.maps)
        va = hand_features(load_structures("val", protein_only=True), rng, 2)
        metrics["data_seconds"] = time.perf_counter() - t0
        print(f"data: {len(tr['x'])} train / {len(va['x'])} val maps in {metrics['data_seconds']:.0f} s")
        model, hist = fit_hand(tr, a.seed, a.hand_steps)
        model["meta"] = {"seed": a.seed, "train_maps": len(tr["x"]), "train_accuracy": hand_accuracy(model, tr),
                         "val_accuracy": hand_accuracy(model, va)}
        metrics.update(train_seconds=hist["seconds"], params=len(model["weights"]), history=hist, **model["meta"])
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "hand.json").write_text(json.dumps(model, indent=1))
        print(f"hand: train accuracy {model['meta']['train_accuracy']:.3f}, val {model['meta']['val_accuracy']:.3f}")
        if not a.no_test:
            metrics["test"] = test_hand(a.seed, a.out)
            metrics["test_whole_models"] = test_hand(a.seed, a.out, crop_radius_A=None)
    metrics["total_seconds"] = time.perf_counter() - t0
    (a.out / f"{a.kind}_metrics.json").write_text(json.dumps(metrics, indent=1, default=float))
    print(json.dumps(metrics.get("test", {}).get("summary", {}), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
