"""One module per report section. ``SECTIONS`` lists them in report order.

Each section module exposes ``run(ctx: MapContext) -> SectionResult``; raising
:class:`~gpuvalid.errors.NotMeasurable` makes the section "could not be measured" with that reason.
A ``None`` module means the section is not implemented in this version.
"""

SECTIONS = [
    ("0.a", "Mass analysis", "gpuvalid.analyses.mass"),
    ("0.b", "Mask analysis", "gpuvalid.analyses.mask"),
    ("0.c", "Background analysis", "gpuvalid.analyses.background"),
    ("0.d", "Global B-factor (Guinier)", "gpuvalid.analyses.bfactor"),
    ("0.e", "Local resolution", "gpuvalid.analyses.locres"),
    ("0.f", "Local B-factor (LocBfactor)", "gpuvalid.analyses.locbfactor"),
    ("0.g", "Local occupancy (LocOccupancy)", "gpuvalid.analyses.occupancy"),
    ("0.h", "Hand", "gpuvalid.analyses.hand"),
]
