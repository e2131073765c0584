"""papercraft.longembed — training-free context extension for embedding models, and the LongEmbed
benchmark.

Paper: LongEmbed: Extending Embedding Models for Long Context Retrieval (arXiv 2404.12096,
https://arxiv.org/abs/2404.12096).

- :func:`extend` — PCW, GP, RP, PI for absolute-position encoders (BERT family); NTK, SelfExtend,
  PI for RoPE encoders; attention scaling as the paper applies it.
- :class:`LongEmbedder` — pooling, prefixes, normalisation, length-sorted batching, PCW chunking;
  sentence-transformers and mteb adapters.
- :func:`make_passkey_task`, :func:`make_needle_task`, :func:`load_real_task` — the benchmark
  data in the LongEmbed/mteb schema; :func:`evaluate` — Acc@1 / nDCG@10 per length.
- :func:`compare_methods` — several methods side by side with throughput.
- :func:`tune_positions` — APE further tuning with PoSE-style position skipping (Trainer).

Submodules import transformers lazily where they can; the names below are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from papercraft.longembed._version import __version__

__all__ = [
    "APE_METHODS",
    "ROPE_METHODS",
    "Comparison",
    "EvaluationResult",
    "ExtensionInfo",
    "LongEmbedder",
    "MTEBEncoder",
    "PoSECollator",
    "RetrievalTask",
    "__version__",
    "compare_methods",
    "evaluate",
    "extend",
    "extension_info",
    "load_extended",
    "load_real_task",
    "load_task",
    "make_needle_task",
    "make_passkey_task",
    "tune_positions",
    "write_task",
]

_WHERE = {
    "APE_METHODS": "extension",
    "ROPE_METHODS": "extension",
    "ExtensionInfo": "extension",
    "extend": "extension",
    "extension_info": "extension",
    "load_extended": "extension",
    "LongEmbedder": "embedder",
    "MTEBEncoder": "adapters",
    "RetrievalTask": "tasks",
    "load_real_task": "taskio",
    "load_task": "taskio",
    "make_needle_task": "tasks",
    "make_passkey_task": "tasks",
    "write_task": "taskio",
    "EvaluationResult": "evaluate",
    "evaluate": "evaluate",
    "Comparison": "compare",
    "compare_methods": "compare",
    "PoSECollator": "tuning",
    "tune_positions": "tuning",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'papercraft.longembed' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"papercraft.longembed.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
