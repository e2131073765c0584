"""Language-model backends behind one lm-evaluation-harness style protocol.

- :class:`LanguageModel` — ``generate``, ``loglikelihood`` and ``chat``
  (see :mod:`papercraft.core.llm.base`).
- :class:`HFLanguageModel` — a local transformers causal LM (:mod:`papercraft.core.llm.hf`).
- :class:`OpenAICompatibleModel` — any OpenAI-compatible HTTP server such as vLLM, llama.cpp's
  server or OpenAI (:mod:`papercraft.core.llm.openai_compat`; needs the ``openai`` extra,
  i.e. httpx).

The backends are imported lazily, so ``import papercraft.core.llm`` stays light: torch and
transformers load on first use of ``HFLanguageModel``, httpx when an ``OpenAICompatibleModel`` is
built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from papercraft.core.llm.base import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    LanguageModel,
    LanguageModelError,
    LoglikelihoodResult,
    LogprobsNotSupportedError,
    Message,
    ResponseFormatError,
)

if TYPE_CHECKING:
    from papercraft.core.llm.hf import HFLanguageModel
    from papercraft.core.llm.openai_compat import OpenAICompatibleModel

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "HFLanguageModel",
    "LanguageModel",
    "LanguageModelError",
    "LoglikelihoodResult",
    "LogprobsNotSupportedError",
    "Message",
    "OpenAICompatibleModel",
    "ResponseFormatError",
]


def __getattr__(name: str) -> Any:
    if name == "HFLanguageModel":
        from papercraft.core.llm.hf import HFLanguageModel

        return HFLanguageModel
    if name == "OpenAICompatibleModel":
        from papercraft.core.llm.openai_compat import OpenAICompatibleModel

        return OpenAICompatibleModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
