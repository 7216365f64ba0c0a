"""Raw CUDA sources (``*.cu``), shipped inside the installed package as ``gpuvalid.kernels``."""
