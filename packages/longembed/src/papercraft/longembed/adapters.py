"""Adapters: a LongEmbedder as a sentence-transformers model, and behind mteb 2.x's encoder protocol.

- :func:`to_sentence_transformer` (``LongEmbedder.to_sentence_transformer()``): a
  ``SentenceTransformer`` whose ``Transformer`` module wraps the *same* model object, so an extended
  model keeps its extension; same embeddings as the embedder (PCW excepted: chunking is not a
  module stack).
- :class:`MTEBEncoder` (``LongEmbedder.to_mteb()``): ``mteb.evaluate(MTEBEncoder(embedder), tasks)``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from papercraft.longembed.embedder import ST_POOLING, LongEmbedder

__all__ = ["MTEBEncoder", "to_sentence_transformer"]

_ST_EXTRA = "papercraft-longembed[sentence-transformers]"
_MTEB_EXTRA = "papercraft-longembed[mteb]"


def to_sentence_transformer(embedder: LongEmbedder) -> Any:
    """See :meth:`papercraft.longembed.embedder.LongEmbedder.to_sentence_transformer`."""
    if embedder.chunking == "pcw":
        raise ValueError(
            "PCW chunking cannot be expressed as a SentenceTransformer module stack (one "
            "document becomes several model inputs whose embeddings are averaged); use "
            "LongEmbedder.encode / encode_corpus, or build the embedder with chunking='none'"
        )
    try:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.models import Normalize, Pooling, Transformer
    except ImportError as error:
        raise ImportError(
            f"to_sentence_transformer needs sentence-transformers: pip install '{_ST_EXTRA}'"
        ) from error

    transformer = _shared_transformer(Transformer, embedder.model, embedder.tokenizer)
    modules: list[nn.Module] = [
        transformer,
        Pooling(embedder.embedding_dim, pooling_mode=ST_POOLING[embedder.pooling]),
    ]
    if embedder.normalize:
        modules.append(Normalize())
    prompts = {
        key: value
        for key, value in (("query", embedder.query_prefix), ("document", embedder.document_prefix))
        if value
    }
    st_model = SentenceTransformer(
        modules=modules, device=str(embedder.device), prompts=prompts or None
    )
    st_model.max_seq_length = embedder.max_length
    return st_model


def _shared_transformer(transformer_cls: type, model: Any, tokenizer: Any) -> Any:
    """A sentence-transformers ``Transformer`` module around an existing model and tokenizer.

    ``Transformer.__init__`` loads everything from a path. A throw-away subclass hands it the
    existing config and model instead (``_load_config`` / ``_load_model``); the processor is read
    from a temporary copy of the tokenizer files and then replaced by the tokenizer object itself.
    The instance's class is then set back to ``Transformer``, so it saves and loads as a plain one.
    """

    class _Shared(transformer_cls):
        def _load_config(self, *args: Any, **kwargs: Any) -> tuple[Any, bool]:
            return model.config, False

        def _load_model(self, *args: Any, **kwargs: Any) -> nn.Module:
            return model

    with tempfile.TemporaryDirectory(prefix="papercraft-longembed-st-") as folder:
        tokenizer.save_pretrained(folder)
        model.config.save_pretrained(folder)
        # ST caps the copy's model_max_length; our own is set through max_seq_length later.
        module = _Shared(folder, processor_kwargs={"local_files_only": True})
    module.processor = tokenizer
    formatter = getattr(module, "input_formatter", None)
    if formatter is not None and hasattr(formatter, "processor"):
        formatter.processor = tokenizer
    module.__class__ = transformer_cls
    return module


# ------------------------------------------------------------------------------------------------
# mteb


class MTEBEncoder:
    """mteb 2.x encoder protocol (``EncoderProtocol``) around a :class:`LongEmbedder`.

    ``mteb.evaluate(MTEBEncoder(embedder), tasks)`` runs mteb's own evaluation: ``encode``
    receives a DataLoader of batches (``batch["text"]``: a query, or a document's
    ``title + " " + text``) and the prompt type; queries are encoded with ``kind="query"``,
    everything else as documents (PCW chunking applies). Scores are cosine similarities (the
    dot product of the normalised rows).

    Args:
        embedder (LongEmbedder): the embedder.
        model_name (str | None): the name mteb records (``"org/name"``); None:
            ``"papercraft-longembed/<embedder.name>"``. Default: None
        revision (str | None): the revision mteb records. Default: None (``"local"``)
    """

    def __init__(
        self,
        embedder: LongEmbedder,
        *,
        model_name: str | None = None,
        revision: str | None = None,
    ) -> None:
        if not isinstance(embedder, LongEmbedder):
            raise ValueError(f"embedder must be a LongEmbedder, got {type(embedder).__name__}")
        name = model_name if model_name is not None else embedder.name
        if "/" not in name:
            name = f"papercraft-longembed/{name}"
        self.embedder = embedder
        self.model_name = name
        self.revision = revision if revision is not None else "local"
        self._meta: Any = None

    @property
    def mteb_model_meta(self) -> Any:
        """An ``mteb.models.ModelMeta`` describing the embedder (cosine similarity)."""
        if self._meta is None:
            try:
                from mteb.models.model_meta import ModelMeta, ScoringFunction
            except ImportError as error:
                raise ImportError(f"MTEBEncoder needs mteb: pip install '{_MTEB_EXTRA}'") from error
            self._meta = ModelMeta.create_empty(
                overwrites={
                    "name": self.model_name,
                    "revision": self.revision,
                    "max_tokens": self.embedder.max_length,
                    "embed_dim": self.embedder.embedding_dim,
                    "similarity_fn_name": ScoringFunction.COSINE,
                    "framework": ["PyTorch"],
                    "n_parameters": sum(p.numel() for p in self.embedder.model.parameters()),
                }
            )
        return self._meta

    def encode(
        self,
        inputs: Any,
        *,
        task_metadata: Any = None,
        hf_split: str | None = None,
        hf_subset: str | None = None,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embed every text of a DataLoader of ``{"text": [...]}`` batches.

        Args:
            inputs (DataLoader | Iterable[Mapping]): batches with a ``"text"`` list.
            task_metadata (TaskMetadata | None): unused (prefixes come from the embedder).
            hf_split (str | None): unused.
            hf_subset (str | None): unused.
            prompt_type (PromptType | str | None): ``query`` → queries, else documents.
            **kwargs (Any): ``batch_size`` is honoured; the rest (e.g. ``show_progress_bar``)
                ignored.

        Returns:
            np.ndarray: ``[N, d]`` float32.

        Raises:
            ValueError: on a batch without a ``"text"`` list.
        """
        texts: list[str] = []
        for batch in inputs:
            values = batch.get("text") if isinstance(batch, Mapping) else None
            if values is None:
                raise ValueError(
                    "MTEBEncoder encodes text only: each batch must hold a 'text' list, got keys "
                    f"{sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__}"
                )
            texts.extend(values)
        kind = "query" if str(getattr(prompt_type, "value", prompt_type)) == "query" else "document"
        return self.embedder.encode(texts, kind=kind, batch_size=kwargs.get("batch_size"))

    @staticmethod
    def _as_matrix(values: Any) -> Tensor:
        tensor = torch.as_tensor(np.asarray(values) if not isinstance(values, Tensor) else values)
        tensor = tensor.to(torch.float32)
        return tensor.unsqueeze(0) if tensor.dim() == 1 else tensor

    def similarity(self, embeddings1: Any, embeddings2: Any) -> Tensor:
        """Cosine similarities ``[N1, N2]`` between two sets of embeddings."""
        a = torch.nn.functional.normalize(self._as_matrix(embeddings1), dim=-1)
        b = torch.nn.functional.normalize(self._as_matrix(embeddings2), dim=-1)
        return a @ b.T

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> Tensor:
        """Cosine similarity ``[N]`` of each row of ``embeddings1`` with the same row of ``embeddings2``."""
        a = torch.nn.functional.normalize(self._as_matrix(embeddings1), dim=-1)
        b = torch.nn.functional.normalize(self._as_matrix(embeddings2), dim=-1)
        return (a * b).sum(dim=-1)
