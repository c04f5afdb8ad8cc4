"""Graph -> Graph rewrites, one module per pass, ordered by pipeline.py."""

from .pipeline import STAGE_NAMES, STAGES, optimize
from .rewrite import RuleSet, graph_pass, rewrite_vars

__all__ = ["STAGES", "STAGE_NAMES", "RuleSet", "graph_pass", "optimize", "rewrite_vars"]
