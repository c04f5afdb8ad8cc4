"""The CUDA backend: the scheduled program as CUDA kernels and cuBLAS calls, run through CuPy.

- emit.py, emit_ops.py, emit_conv.py: Schedule + MemoryPlan -> one CUDA translation unit and a
  launch plan (no CuPy or GPU needed; the scalar bodies are cexpr.py's, shared with C);
- nvrtc.py: compile with NVRTC (the ``nvidia-cuda-nvrtc`` wheel, or CuPy's) or ``nvcc``, through
  graphc's disk cache;
- device.py: CuPy's memory, streams, RawModule and cuBLAS; emulate.py: the same interface on the
  CPU (``GRAPHC_CUDA_EMULATE=1``), for testing without a GPU;
- program.py: CudaProgram, what ``gc.function(..., backend="cuda")`` runs.

Importing this package imports no CuPy; only building a CudaProgram needs it.
"""
