"""Language-model backends behind one lm-evaluation-harness style protocol.

- :class:`LanguageModel` — ``generate``, ``loglikelihood`` and ``chat``
  (see :mod:`papercraft.core.llm.base`).
- :class:`HFLanguageModel` — a local transformers causal LM (:mod:`papercraft.core.llm.hf`).
- :class:`OpenAICompatibleModel` — any OpenAI-compatible HTTP server such as vLLM, llama.cpp's
  server or OpenAI (:mod:`papercraft.core.llm.openai_compat`; needs the ``openai`` extra,
  i.e. httpx).
- :func:`load_language_model` — either backend from a spec string, ``hf:PATH`` or
  ``openai:URL#MODEL`` (:mod:`papercraft.core.llm.spec`).

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
from papercraft.core.llm.spec import SPEC_FORMS, load_language_model, parse_model_spec

if TYPE_CHECKING:
    from papercraft.core.llm.hf import HFLanguageModel
    from papercraft.core.llm.openai_compat import OpenAICompatibleModel

__all__ = [
    "SPEC_FORMS",
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
    "load_language_model",
    "parse_model_spec",
]


def __getattr__(name: str) -> Any:
    if name == "HFLanguageModel":
        from papercraft.core.llm.hf import HFLanguageModel

        return HFLanguageModel
    if name == "OpenAICompatibleModel":
        from papercraft.core.llm.openai_compat import OpenAICompatibleModel

        return OpenAICompatibleModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
