"""Map input: MRC/CCP4 files and EMDB metadata."""

from .load import load_map_input

__all__ = ["load_map_input"]
