"""Headless isosurface renderer on the array backend (NumPy or CuPy), no ChimeraX needed.

An orthographic ray caster finds the first contour crossing of the trilinear map along each pixel ray
(:mod:`.raycast`; a raw CUDA kernel on GPU), shades it with gradient normals and two lights
(:mod:`.shading`), optionally paints it with a local map (:mod:`.colour`), in views defined by
ChimeraX-style ``(X, Y, Z)`` screen rotations (:mod:`.camera`).  See ``docs/rendering.md``.
"""

from .camera import SPEC_VIEWS, angles_text, describe_view, rotation_matrix
from .scene import Rendering, render_views

__all__ = ["SPEC_VIEWS", "Rendering", "render_views", "rotation_matrix", "describe_view", "angles_text"]
