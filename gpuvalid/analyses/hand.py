"""0.h Hand: is the map mirrored?  A score in [0, 1] (0 = correct hand, 1 = mirrored).

Applies for R ≤ 5 Å and needs the contour threshold.  On the map resampled to 1 Å/voxel, inside the
contour mask, gpuvalid measures the helical twist of tube-like density (:mod:`gpuvalid.models.chirality`:
rotation-invariant, and exactly sign-reversed by a mirror) at nine scale pairs; a linear classifier
without bias, trained here on simulated maps (:mod:`gpuvalid.models.hand_model`), turns them into the
probability that the map is mirrored.  When the evidence is weak (the block-jackknife error of the
log-odds is large against it: a small segment, little helical density) or nucleic acid dominates (strong
coarse-scale twist of double helices), the section says "could not be measured" with that reason.
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
    "Along a tube of helical density the density gradient turns around the tube axis, one way for a "
    "right-handed groove and the other way for its mirror image. gpuvalid measures that twist inside the "
    "contour mask at several scales (each measure changes sign exactly under a mirror and not under a "
    "rotation) and a classifier trained here on simulated maps turns them into log-odds that the map is "
    "mirrored. The mask is cut into 12 Å blocks and the log-odds is recomputed leaving out one block at a "
    "time (a jackknife), which gives its sampling error; the score is the probability, given that error, "
    "that the evidence points to a mirror image (0: correct hand, 1: mirrored). The call is only made when "
    "the evidence is strong: if the log-odds is small against its error (a small or segmented map, little "
    "helical density, mostly beta sheet) the hand is not called. Nor is it when nucleic acid dominates: the "
    "double helices of RNA and DNA read as mirrored protein in this measure, and they are recognised by their "
    "strong twist at a coarse scale (20 Å-wide helices).")

CRITERIA = (f"Warn when the score is above {FLIPPED:g} (the map is probably mirrored) or above {UNCERTAIN:g} "
            "(the hand is uncertain). Not measured when the evidence is too weak (the log-odds within the "
            "calibrated multiple of its jackknife error, or too few blocks) or nucleic acid dominates "
            "(docs/models.md).")

DIFFERENCES = [
    "The reference runs DeepHand (two 3-D CNNs: helix voxels, then their hand), whose weights are downloaded "
    "from its model server and are not redistributable; gpuvalid uses its own model of helical-twist "
    "features, trained on simulated maps (docs/models.md gives the held-out accuracy), so the score is not "
    "the reference's. By construction the score of the mirrored map is 1 − score.",
    "gpuvalid gives no score when the evidence is weak or nucleic acid dominates (calibrated rules, "
    "docs/models.md): the section is then 'could not be measured' with the reason.",
]


def applicability(ctx) -> SectionResult | None:
    """Return the "does not apply" result without a resolution or for R > 5 Å, else None (nothing allocated).

    Raises
    ------
    NotMeasurable
        When the model weights are missing.
    """
    if ctx.resolution is None:
        return not_applicable(SID, TITLE, "no resolution reported", EXPLANATION)
    if ctx.resolution > R_MAX:
        return not_applicable(SID, TITLE, f"the resolution {ctx.resolution:g} Å is worse than {R_MAX:g} Å",
                              EXPLANATION)
    if not models.weights_path("hand").is_file():
        raise NotMeasurable(f"the model weights are missing ({models.weights_path('hand').name})")
    return None


def run(ctx) -> SectionResult:
    """Compute section 0.h (hand) of the report: the score that the map is mirrored.

    ``values`` holds the score Φ(z) in [0, 1], the log-odds and its block-jackknife error, z, the number of
    12 Å blocks, the coarse duplex twist, the nine twist features and the mask size on the 1 Å grid.  Not
    applicable without a resolution or for R > 5 Å.

    Raises
    ------
    NotMeasurable
        When the model weights are missing, the map cannot be scored, or the classifier abstains (weak
        evidence or nucleic acid dominates).
    """
    skip = applicability(ctx)
    if skip is not None:
        return skip
    ctx.require_mask()
    from ..models.hand_model import hand_score

    try:
        r = hand_score(ctx.be, ctx.V, ctx.voxel_size, ctx.threshold)   # resampled on the map's device
    except ValueError as exc:
        raise NotMeasurable(str(exc)) from None
    if r["abstain"]:
        raise NotMeasurable(r["abstain"])
    s = r["score"]
    res = SectionResult(SID, TITLE, explanation=EXPLANATION, criteria=CRITERIA, differences=list(DIFFERENCES))
    res.values = {"score": s, "logit": r["logit"], "logit_se": r["se"], "z": r["z"], "n_blocks": r["n_blocks"],
                  "duplex_twist": r["duplex"], "twist_features": r["features"],
                  "mask_voxels_1A": r["n_voxels"], "tube_fraction": r["tube_fraction"]}
    rows = [["hand score Φ(z) (0 correct, 1 mirrored)", f"{s:.3f}"],
            ["log-odds of 'mirrored' ± block-jackknife error", f"{r['logit']:+.2f} ± {r['se']:.2f}"],
            ["evidence z = log-odds / error (blocks of 12 Å)", f"{r['z']:+.1f} ({r['n_blocks']} blocks)"],
            ["coarse twist T(2.5 Å, 6 Å), absolute value (nucleic-acid indicator)", f"{r['duplex']:.4f}"],
            ["contour-mask voxels used (1 Å grid)", str(r["n_voxels"])],
            ["fraction of them in tube-like density", f"{r['tube_fraction']:.3f}"],
            ["twist features (×1000; < 0: right-handed)", ", ".join(f"{1000 * v:+.1f}" for v in r["features"])]]
    res.blocks.append(md_table(["quantity", "value"], rows))
    if s > FLIPPED:
        res.warnings.append(f"the hand score {s:.3f} is above {FLIPPED:g}: the map is probably mirrored (flipped hand)")
    elif s > UNCERTAIN:
        res.warnings.append(f"the hand score {s:.3f} is above {UNCERTAIN:g}: the hand is uncertain")
    res.key = f"score {s:.3f}"
    res.summary = f"The hand score is {s:.3f}" + ("." if not res.warnings else f"; {res.warnings[0]}.")
    return res
