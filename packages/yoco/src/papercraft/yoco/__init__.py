"""papercraft.yoco — YOCO decoder-decoder language model that caches KV once

Paper: You Only Cache Once: Decoder-Decoder Architectures for Language Models (arXiv 2405.05254, https://arxiv.org/abs/2405.05254).

Importing the package registers ``YocoConfig`` (``model_type="yoco"``) with ``AutoConfig`` and
``YocoForCausalLM`` with ``AutoModelForCausalLM`` / ``AutoModel`` (``YocoModel``), so
``AutoModelForCausalLM.from_pretrained(path)`` loads a saved YOCO checkpoint without
``trust_remote_code``.
"""

from __future__ import annotations

from papercraft.yoco._version import __version__
from papercraft.yoco.cache import YocoCache
from papercraft.yoco.configuration_yoco import YocoConfig
from papercraft.yoco.modeling_yoco import (
    YocoCrossDecoderLayer,
    YocoForCausalLM,
    YocoModel,
    YocoPreTrainedModel,
    YocoSelfDecoderLayer,
)

__all__ = [
    "YocoCache",
    "YocoConfig",
    "YocoCrossDecoderLayer",
    "YocoForCausalLM",
    "YocoModel",
    "YocoPreTrainedModel",
    "YocoSelfDecoderLayer",
    "__version__",
    "register_auto_classes",
]


def register_auto_classes() -> None:
    """Register the YOCO classes with the transformers Auto factories (idempotent)."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    # exist_ok: a re-import or reload registers the same classes again
    AutoConfig.register(YocoConfig.model_type, YocoConfig, exist_ok=True)
    for factory, model_class in (
        (AutoModel, YocoModel),
        (AutoModelForCausalLM, YocoForCausalLM),
    ):
        factory.register(YocoConfig, model_class, exist_ok=True)


register_auto_classes()
