"""gpuvalid — GPU-first Level 0 validation of cryo-EM density maps."""

__version__ = "0.1.0"
