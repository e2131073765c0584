"""papercraft.vot — Visualization-of-Thought: spatial-reasoning tasks, prompts, parsers and evaluation.

Paper: Mind's Eye of LLMs: Visualization-of-Thought Elicits Spatial Reasoning in Large Language
Models (arXiv 2404.03622, https://arxiv.org/abs/2404.03622).

- Tasks as data, with exact solvers: :mod:`~papercraft.vot.navigation` (route planning and
  next-step prediction), :mod:`~papercraft.vot.tiling` (visual tiling),
  :mod:`~papercraft.vot.nlnav` (natural-language navigation); :mod:`~papercraft.vot.dataset`
  builds instances in the official JSONL schema, :mod:`~papercraft.vot.benchmark` writes and
  loads the whole benchmark, :mod:`~papercraft.vot.render` draws maps and boards to PNG.
- Prompts: :mod:`~papercraft.vot.prompts` (the official templates, byte-exact; settings
  ``cot``, ``no-viz``, ``vot``, ``multimodal-cot``).
- Scoring: :mod:`~papercraft.vot.parsing` (the official parsers and metrics, state tracking),
  :func:`evaluate` over any core ``LanguageModel``, and the reference responders of
  :mod:`~papercraft.vot.responders`.
"""

from __future__ import annotations

from papercraft.vot._version import __version__
from papercraft.vot.benchmark import load_benchmark, write_benchmark
from papercraft.vot.dataset import Instance, build_task, load_instances, save_instances
from papercraft.vot.evaluate import EvalResult, evaluate, score_response
from papercraft.vot.navigation import (
    NavigationMap,
    all_maps,
    build_map,
    direction_sequences,
    next_step_questions,
    route_scores,
    simulate,
)
from papercraft.vot.nlnav import NLNavInstance, generate_nl_navigation
from papercraft.vot.prompts import SETTINGS, TASKS, multimodal_messages, text_prompt
from papercraft.vot.responders import OracleModel, PerpendicularModel, RandomModel
from papercraft.vot.tiling import (
    TTLII,
    Tiling,
    TilingQuestion,
    solve_tilings,
    tiling_configurations,
    tiling_questions,
    variations,
)

__all__ = [
    "SETTINGS",
    "TASKS",
    "TTLII",
    "EvalResult",
    "Instance",
    "NLNavInstance",
    "NavigationMap",
    "OracleModel",
    "PerpendicularModel",
    "RandomModel",
    "Tiling",
    "TilingQuestion",
    "__version__",
    "all_maps",
    "build_map",
    "build_task",
    "direction_sequences",
    "evaluate",
    "generate_nl_navigation",
    "load_benchmark",
    "load_instances",
    "multimodal_messages",
    "next_step_questions",
    "route_scores",
    "save_instances",
    "score_response",
    "simulate",
    "solve_tilings",
    "text_prompt",
    "tiling_configurations",
    "tiling_questions",
    "variations",
    "write_benchmark",
]
