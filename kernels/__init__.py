"""Hand-written C and CUDA sources that generated code includes (installed as graphc.kernels)."""
