"""papercraft.core — the shared core every papercraft method package stands on.

Sub-modules (import them directly; this top-level module stays light so that
``import papercraft.core`` does not pull in torch):

- :mod:`papercraft.core.attention` — one ``attention`` function over a registry of kernel
  backends (eager reference, torch SDPA, flash-attn, xformers, blockwise windows on CPU).
- :mod:`papercraft.core.rope` — rotary position embeddings, both layouts, with scaling.
- :mod:`papercraft.core.norm`, :mod:`papercraft.core.ffn` — RMSNorm and SwiGLU.
- :mod:`papercraft.core.llm` — the ``LanguageModel`` protocol with a local transformers
  backend and an OpenAI-compatible HTTP backend.
- :mod:`papercraft.core.data` — corpus reading, tokenize-and-pack, atomic JSONL.
- :mod:`papercraft.core.io` — atomic writes and versioned safetensors checkpoints.
- :mod:`papercraft.core.bench` — timing, peak memory and benchmark reports.
- :mod:`papercraft.core.testing` — tiny models and tokenizers for tests.
- :mod:`papercraft.core.cli` — the ``papercraft`` command.
"""

from papercraft.core._version import __version__

__all__ = ["__version__"]
