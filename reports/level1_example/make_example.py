"""Regenerate this example: simulated half maps of PDB 5ME2 with a known answer, validated at Levels 0 and 1.

    python reports/level1_example/make_example.py          # writes the maps to /tmp/gpuvalid_l1_example

Signal: Gaussian atoms of ``shared/data/models/5me2.pdb`` at Ts = 1.0 Å in a 112³ box, B = 200 Å².  Noise: two
independent realisations of Gaussian noise with σ = 0.3 × the signal's σ, whose power is 1 + 30·u_z² times
larger along Z than in the X–Y plane (u_z the Z component of the frequency's direction): a strong preferred
orientation, so the directional analyses (1.g, 1.h) have something to find.  The primary map is
``(h1 + h2)/2``; the contour keeps 1.3 × the molecular volume (17 Å³ per atom); the "reported" resolution
is 3.3 Å.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MODEL = REPO.parent / "shared" / "data" / "models" / "5me2.pdb"
TMP = Path("/tmp/gpuvalid_l1_example")


def main() -> None:
    from gpuvalid.io.mrc import write_mrc
    from gpuvalid.level1.simhalves import simulate_halves
    from gpuvalid.simulate.filters import threshold_for_volume
    from gpuvalid.simulate.structure import read_atoms

    TMP.mkdir(parents=True, exist_ok=True)
    ts = 1.0
    sim = simulate_halves(MODEL, ts, 112, bfactor_A2=200.0, noise_rel=0.3, aniso=30.0, seed=11)
    n_atoms = len(read_atoms(MODEL))
    thr = threshold_for_volume(sim.primary, int(1.3 * 17.0 * n_atoms / ts ** 3))
    paths = {k: write_mrc(TMP / f"sim5me2_{k}.mrc", v, ts) for k, v in
             (("map", sim.primary), ("half_map_1", sim.h1), ("half_map_2", sim.h2))}
    cmd = ["gpuvalid", "run", str(paths["map"]), "--threshold", f"{thr:.4f}", "--resolution", "3.3",
           "--half1", str(paths["half_map_1"]), "--half2", str(paths["half_map_2"]), "--device", "cpu",
           "--out", str(HERE / "report"), "--force", "--format", "md,json"]
    print(" ".join(cmd))
    sys.exit(subprocess.call(cmd))


if __name__ == "__main__":
    main()
