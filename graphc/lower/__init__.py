"""Lowering: an optimised Graph -> a typed plan every backend emits code from.

`schedule` groups nodes into kernel records (`plan`), folding into gemm records the epilogues the
backend's `Target` takes; `plan_memory` decides where each value lives. Backends consume the
records and never look at fusion decisions again.
"""

from .memory import MemoryPlan, plan_memory
from .plan import ElementwiseKernel, GemmKernel, Kernel, LoopKernel, OpKernel, ReduceKernel, Schedule, data_inputs
from .schedule import MAX_FUSED, max_fused_nodes, schedule
from .target import DEFAULT_TARGET, Target

__all__ = ["DEFAULT_TARGET", "MAX_FUSED", "ElementwiseKernel", "GemmKernel", "Kernel", "LoopKernel", "MemoryPlan",
           "OpKernel", "ReduceKernel", "Schedule", "Target", "data_inputs", "max_fused_nodes", "plan_memory",
           "schedule"]
