"""0.h Hand: is the map mirrored?  A score in [0, 1] (0 = correct hand, 1 = mirrored).

Applies for R ≤ 5 Å and needs the contour threshold.  gpuvalid's own two networks (trained here on
simulated maps and their mirror images) run on the map resampled to 1 Å/voxel and low-passed to 5 Å:
the first finds alpha-helical voxels inside the contour mask, the second gives, for each of those, the
probability that the helix is left-handed (i.e. the map is mirrored); the score is their mean.
"""

from __future__ import annotations

from .. import models
from ..errors import NotMeasurable
from .base import SectionResult, md_table, not_applicable

SID, TITLE = "0.h", "Hand"
R_MAX = 5.0
FLIPPED, UNCERTAIN = 0.5, 0.4

EXPLANATION = (
    "A reconstruction can come out as the mirror image of the molecule, which no global statistic reveals. "
    "Alpha helices are right-handed in proteins, so their handedness in the density tells the two apart. "
    "gpuvalid finds helical density with one small 3-D network and classifies the hand of each helical "
    "voxel with a second; the score is the mean probability of a mirrored hand (0: correct, 1: mirrored).")

CRITERIA = (f"Warn when the score is above {FLIPPED:g} (the map is probably mirrored) or above {UNCERTAIN:g} "
            "(the hand is uncertain).")

DIFFERENCES = [
    "The reference runs DeepHand, whose weights are downloaded from its model server and are not "
    "redistributable; gpuvalid uses its own networks of the same two-stage design trained on simulated "
    "maps (docs/models.md gives the held-out accuracy), so the score is not the reference's.",
]


def run(ctx) -> SectionResult:
    if ctx.resolution is None:
        return not_applicable(SID, TITLE, "no resolution reported", EXPLANATION)
    if ctx.resolution > R_MAX:
        return not_applicable(SID, TITLE, f"the resolution {ctx.resolution:g} Å is worse than {R_MAX:g} Å",
                              EXPLANATION)
    if not models.torch_available():
        raise NotMeasurable("PyTorch is not installed (install gpuvalid[torch])")
    for name in ("helix", "hand"):
        if not models.weights_path(name).is_file():
            raise NotMeasurable(f"the model weights are missing ({models.weights_path(name).name})")
    ctx.require_mask()
    from ..models.infer import hand_score

    try:
        r = hand_score(ctx.host, ctx.voxel_size, ctx.threshold, ctx.be.device if ctx.be.is_gpu else "cpu")
    except ValueError as exc:
        raise NotMeasurable(str(exc)) from None
    s = r["score"]
    res = SectionResult(SID, TITLE, explanation=EXPLANATION, criteria=CRITERIA, differences=list(DIFFERENCES))
    res.values = {"score": s, "helix_voxels": r["n_voxels"], "mask_voxels_1A": r["n_mask"],
                  "helix_fraction": r["helix_fraction"], "vote_fraction_mirrored": r["vote_fraction_mirrored"],
                  "helix_fallback_top5pct": r["fallback_top5pct"]}
    rows = [["hand score (0 correct, 1 mirrored)", f"{s:.3f}"],
            ["voxels voting (helical)", str(r["n_voxels"])],
            ["fraction of the contour mask found helical", f"{r['helix_fraction']:.3f}"],
            ["fraction of voting voxels calling 'mirrored'", f"{r['vote_fraction_mirrored']:.3f}"]]
    res.blocks.append(md_table(["quantity", "value"], rows))
    if r["fallback_top5pct"]:
        res.blocks.append("Few voxels passed the helix probability 0.7, so the 5 % most helix-like voxels of the "
                          "mask voted; the score is less reliable.")
    if s > FLIPPED:
        res.warnings.append(f"the hand score {s:.3f} is above {FLIPPED:g}: the map is probably mirrored (flipped hand)")
    elif s > UNCERTAIN:
        res.warnings.append(f"the hand score {s:.3f} is above {UNCERTAIN:g}: the hand is uncertain")
    res.key = f"score {s:.3f}"
    res.summary = f"The hand score is {s:.3f}" + ("." if not res.warnings else f"; {res.warnings[0]}.")
    return res
