"""Build a language-model backend from a one-line spec (for command lines and configs).

- ``hf:PATH`` — a local transformers causal LM (:class:`~papercraft.core.llm.HFLanguageModel`,
  local files only, never remote code);
- ``openai:URL#MODEL`` — a model behind an OpenAI-compatible server
  (:class:`~papercraft.core.llm.OpenAICompatibleModel`), e.g.
  ``openai:http://localhost:8000/v1#meta-llama/Meta-Llama-3-70B-Instruct``.
"""

from __future__ import annotations

from typing import Any

from papercraft.core.llm.base import LanguageModel

__all__ = ["SPEC_FORMS", "load_language_model", "parse_model_spec"]

#: the accepted forms, for help texts.
SPEC_FORMS = "hf:PATH | openai:URL#MODEL"


def parse_model_spec(spec: str) -> tuple[str, str, str | None]:
    """Split a spec into (kind, location, model name).

    Args:
        spec (str): ``hf:PATH`` or ``openai:URL#MODEL``.

    Returns:
        tuple[str, str, str | None]: ``("hf", PATH, None)`` or ``("openai", URL, MODEL)``.

    Raises:
        ValueError: naming ``spec`` and the expected forms.
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"spec must look like {SPEC_FORMS}, got {spec!r}")
    kind, _, rest = spec.partition(":")
    if kind == "hf":
        if not rest:
            raise ValueError(f"spec {spec!r}: hf: needs a model directory, e.g. hf:./my-model")
        return "hf", rest, None
    if kind == "openai":
        url, sep, model = rest.rpartition("#")
        if not sep or not url or not model:
            raise ValueError(
                f"spec {spec!r}: openai: needs URL#MODEL, e.g. openai:http://localhost:8000/v1#llama"
            )
        return "openai", url, model
    raise ValueError(f"spec must start with 'hf:' or 'openai:' ({SPEC_FORMS}), got {spec!r}")


def load_language_model(spec: str, **kwargs: Any) -> LanguageModel:
    """Build the backend a spec names.

    Args:
        spec (str): ``hf:PATH`` or ``openai:URL#MODEL``.
        **kwargs (Any): passed to ``HFLanguageModel.from_pretrained`` (``device``, ``dtype``,
            ``batch_size``, ...) or to ``OpenAICompatibleModel`` (``endpoint``, ``api_key``,
            ``max_concurrency``, ...).

    Returns:
        LanguageModel: the backend.
    """
    kind, location, model = parse_model_spec(spec)
    if kind == "hf":
        from papercraft.core.llm.hf import HFLanguageModel

        return HFLanguageModel.from_pretrained(location, **kwargs)
    from papercraft.core.llm.openai_compat import OpenAICompatibleModel

    assert model is not None
    return OpenAICompatibleModel(location, model, **kwargs)
