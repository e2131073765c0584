"""papercraft.vot — Visualization-of-Thought: spatial-reasoning tasks, prompts, parsers and evaluation.

Paper: Mind's Eye of LLMs: Visualization-of-Thought Elicits Spatial Reasoning in Large Language Models (arXiv 2404.03622, https://arxiv.org/abs/2404.03622).
"""

from __future__ import annotations

from papercraft.vot._version import __version__
from papercraft.vot.navigation import (
    NavigationMap,
    all_maps,
    build_map,
    direction_sequences,
    next_step_questions,
    route_scores,
    simulate,
)
from papercraft.vot.tiling import TTLII, Tiling, solve_tilings, variations

__all__ = [
    "TTLII",
    "NavigationMap",
    "Tiling",
    "__version__",
    "all_maps",
    "build_map",
    "direction_sequences",
    "next_step_questions",
    "route_scores",
    "simulate",
    "solve_tilings",
    "variations",
]
