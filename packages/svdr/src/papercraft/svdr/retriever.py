"""Search an SVDR index: beta, alpha and parametric modes, late rerank, exact explanations.

| mode | query side | index | score |
|---|---|---|---|
| ``"beta"`` | encoded query weights | bag of tokens (binary) | sum of the query's weights over the tokens the passage contains |
| ``"alpha"`` | the query's bag of tokens | embedding index | sum of the passage's weights over the query's tokens |
| ``"parametric"`` | encoded query weights | embedding index | ``q · p`` |

Search is a scipy sparse product ``Q · Pᵀ`` over batches of queries. With ``rerank=m`` the top
``m`` hits are re-scored parametrically (the passages encoded with the passage tower) and
re-sorted. Every returned score is the exact sum, in float64, of its per-token contributions
``q_i · p_i``, which :attr:`Hit.explanation` lists.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from papercraft.svdr.index import (
    BagOfTokensIndex,
    EmbeddingIndex,
    SparseIndex,
    _check_ids,
    _check_texts,
)
from papercraft.svdr.model import SVDREncoder, bag_of_tokens

__all__ = [
    "MODES",
    "Hit",
    "Retriever",
    "build_embedding_index",
    "encode_queries",
    "encode_texts",
]

MODES = ("beta", "alpha", "parametric")


def encode_texts(
    encoder: SVDREncoder,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    tower: str = "passage",
    max_length: int = 256,
    batch_size: int = 32,
    progress: bool = False,
) -> sp.csr_matrix:
    """Sparse vocabulary embeddings ``[N, V]`` (float32 CSR) of ``texts``, in their order.

    Texts are batched by length (less padding) under ``torch.inference_mode`` on the encoder's
    device; the encoder's own ``topk``/``lexical`` settings sparsify each row.

    Args:
        encoder (SVDREncoder): the encoder.
        tokenizer (PreTrainedTokenizerBase): its tokenizer.
        texts (Sequence[str]): the texts.
        tower (str): ``"passage"`` or ``"query"``. Default: "passage"
        max_length (int): truncation in tokens. Default: 256
        batch_size (int): texts per forward pass. Default: 32
        progress (bool): show a progress bar. Default: False

    Returns:
        sp.csr_matrix: one row per text.
    """
    items = _check_texts(texts)
    for name, value in (("max_length", max_length), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    from tqdm.auto import tqdm

    lengths = [
        len(ids) for ids in tokenizer(items, truncation=True, max_length=max_length)["input_ids"]
    ]
    order = np.argsort(lengths, kind="stable")
    device = next(encoder.parameters()).device
    rows: list[sp.csr_matrix] = []
    was_training = encoder.training
    encoder.eval()
    with torch.inference_mode(), tqdm(total=len(items), disable=not progress, unit="text") as bar:
        for start in range(0, len(items), batch_size):
            chunk = [items[i] for i in order[start : start + batch_size]]
            batch = tokenizer(
                chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            weights = encoder(
                batch["input_ids"].to(device), batch["attention_mask"].to(device), tower=tower
            )
            rows.append(sp.csr_matrix(weights.float().cpu().numpy()))
            bar.update(len(chunk))
    encoder.train(was_training)
    stacked = sp.vstack(rows, format="csr", dtype=np.float32)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return stacked[inverse]


def encode_queries(
    encoder: SVDREncoder, tokenizer: Any, queries: list[str], *, mode: str, max_length: int
) -> np.ndarray:
    """Query vectors ``[Q, V]`` (float32 numpy) as a search mode wants them.

    ``"alpha"`` gives the queries' bags of tokens; ``"beta"`` and ``"parametric"`` the query
    tower's sparsified weights. A query over ``max_length`` tokens is refused, not cut.

    Raises:
        ValueError: naming the queries that are too long.
    """
    lengths = [len(ids) for ids in tokenizer(queries)["input_ids"]]
    too_long = [i for i, n in enumerate(lengths) if n > max_length]
    if too_long:
        raise ValueError(
            f"queries {too_long[:5]} exceed query_max_length={max_length} tokens (the longest has "
            f"{max(lengths)}); shorten them or raise query_max_length"
        )
    device = next(encoder.parameters()).device
    batch = {
        k: v.to(device) for k, v in tokenizer(queries, padding=True, return_tensors="pt").items()
    }
    with torch.inference_mode():
        if mode == "alpha":
            weights = bag_of_tokens(batch["input_ids"], batch["attention_mask"], encoder.space)
        else:
            weights = encoder(batch["input_ids"], batch["attention_mask"], tower="query")
    return np.asarray(weights.float().cpu().numpy(), dtype=np.float32)


def build_embedding_index(
    encoder: SVDREncoder,
    tokenizer: Any,
    texts: Sequence[str],
    ids: Sequence[str],
    *,
    max_length: int = 256,
    batch_size: int = 32,
    progress: bool = False,
) -> EmbeddingIndex:
    """Encode ``texts`` with the passage tower into an :class:`EmbeddingIndex` (see
    :func:`encode_texts` for the arguments)."""
    items = _check_texts(texts)
    checked = _check_ids(ids, len(items), rows="texts")  # before the expensive part
    matrix = encode_texts(
        encoder, tokenizer, items, max_length=max_length, batch_size=batch_size, progress=progress
    )
    return EmbeddingIndex.from_matrix(matrix, checked, encoder.space)


@dataclass(frozen=True)
class Hit:
    """One retrieved document.

    Args:
        doc_id (str): the document id.
        score (float): the exact sum of the contributions (float64).
        explanation (tuple[tuple[str, float], ...]): ``(token, q_i · p_i)`` for every shared
            dimension, largest first; empty unless asked for.
    """

    doc_id: str
    score: float
    explanation: tuple[tuple[str, float], ...] = field(default=())


class Retriever:
    """Search one index with an SVDR encoder and its tokenizer.

    Args:
        encoder (SVDREncoder): the encoder (eval mode is set).
        tokenizer (PreTrainedTokenizerBase): its tokenizer.
        index (SparseIndex): a :class:`BagOfTokensIndex` or an :class:`EmbeddingIndex`.
        texts (Mapping[str, str] | Callable[[str], str] | None): passage text by id, needed to
            rerank a bag-of-tokens search. Default: None
        query_max_length (int): query truncation (128 as the paper). Default: 128
        passage_max_length (int): passage truncation for reranking (256). Default: 256
        batch_size (int): queries per sparse product. Default: 64
        cache_size (int): reranked passages whose encodings are kept (least recently used go
            first), so passages that recur across queries are encoded once. Default: 4096
    """

    def __init__(
        self,
        encoder: SVDREncoder,
        tokenizer: Any,
        index: SparseIndex,
        *,
        texts: Mapping[str, str] | Callable[[str], str] | None = None,
        query_max_length: int = 128,
        passage_max_length: int = 256,
        batch_size: int = 64,
        cache_size: int = 4096,
    ) -> None:
        if index.space != encoder.space:
            raise ValueError(
                "index and encoder use different vocabulary spaces (built with another tokenizer?): "
                f"{index.space.to_dict()} vs {encoder.space.to_dict()}"
            )
        for name, value in (
            ("query_max_length", query_max_length),
            ("passage_max_length", passage_max_length),
            ("batch_size", batch_size),
            ("cache_size", cache_size + 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.encoder = encoder.eval()
        self.tokenizer = tokenizer
        self.index = index
        self.texts = texts
        self.query_max_length = query_max_length
        self.passage_max_length = passage_max_length
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._cache: OrderedDict[str, sp.csr_matrix] = OrderedDict()

    # --------------------------------------------------------------------------------------------

    def _queries(self, queries: list[str], mode: str) -> sp.csr_matrix:
        weights = encode_queries(
            self.encoder, self.tokenizer, queries, mode=mode, max_length=self.query_max_length
        )
        return sp.csr_matrix(weights)

    def clear_cache(self) -> None:
        """Forget the cached passage encodings (after changing the encoder or the texts)."""
        self._cache.clear()

    def _passage_rows(self, doc_ids: list[str]) -> sp.csr_matrix:
        if self.texts is None:
            raise ValueError("rerank over a bag-of-tokens index needs texts= (passage text by id)")
        lookup = self.texts if callable(self.texts) else self.texts.__getitem__
        missing = list(dict.fromkeys(d for d in doc_ids if d not in self._cache))
        if missing:
            rows = encode_texts(
                self.encoder,
                self.tokenizer,
                [lookup(d) for d in missing],
                max_length=self.passage_max_length,
                batch_size=max(len(missing), 1),
            )
            for j, doc_id in enumerate(missing):
                self._cache[doc_id] = rows[j]
        for doc_id in doc_ids:
            self._cache.move_to_end(doc_id)
        found = sp.vstack([self._cache[d] for d in doc_ids], format="csr")
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return found

    def _explain(
        self, q: sp.csr_matrix, p: sp.csr_matrix, explain: bool
    ) -> Hit | tuple[float, Any]:
        product = q.multiply(p).tocoo()
        values = product.data.astype(np.float64)
        order = np.argsort(-values, kind="stable")
        score = float(values[order].sum()) if values.size else 0.0
        if not explain:
            return score, ()
        tokens = self.tokenizer.convert_ids_to_tokens(
            (product.col[order] + self.encoder.space.shift).tolist()
        )
        return score, tuple(zip(tokens, values[order].tolist(), strict=True))

    def search(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        mode: str = "beta",
        rerank: int | None = None,
        explain: bool = False,
    ) -> list[list[Hit]]:
        """The top ``k`` documents of each query.

        Args:
            queries (Sequence[str]): query texts.
            k (int): hits per query. Default: 10
            mode (str): ``"beta"`` (bag-of-tokens index), ``"alpha"`` or ``"parametric"``
                (embedding index). Default: "beta"
            rerank (int | None): re-score the top ``rerank`` hits parametrically (needs ``texts``
                for a bag-of-tokens index). Default: None
            explain (bool): attach per-token contributions. Default: False

        Returns:
            list[list[Hit]]: per query, hits by decreasing score (ties: index order).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        if mode == "beta" and not isinstance(self.index, BagOfTokensIndex):
            raise ValueError("mode='beta' searches a BagOfTokensIndex")
        if mode in ("alpha", "parametric") and not isinstance(self.index, EmbeddingIndex):
            raise ValueError(f"mode={mode!r} searches an EmbeddingIndex")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if rerank is not None and (not isinstance(rerank, int) or rerank < k):
            raise ValueError(f"rerank must be an int >= k ({k}), got {rerank!r}")
        texts = list(queries)
        if not texts or not all(isinstance(q, str) and q.strip() for q in texts):
            raise ValueError("queries must be a non-empty list of non-empty strings")
        matrix = self.index.matrix
        depth = min(rerank or k, matrix.shape[0])
        results: list[list[Hit]] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            q_rows = self._queries(chunk, mode)
            scores = (q_rows @ matrix.T).toarray()  # [b, N]
            for row in range(len(chunk)):
                order = np.argsort(-scores[row], kind="stable")[:depth]
                doc_ids = [self.index.ids[i] for i in order]
                q = q_rows[row]
                if rerank is not None:
                    if isinstance(self.index, BagOfTokensIndex):
                        rows = self._passage_rows(doc_ids)
                    else:
                        rows = matrix[order]
                    if mode == "alpha":  # rerank parametrically: the encoded query
                        q = self._queries([chunk[row]], "parametric")
                    pairs = [(d, rows[j]) for j, d in enumerate(doc_ids)]
                else:
                    pairs = [(d, matrix[i]) for d, i in zip(doc_ids, order, strict=True)]
                hits = []
                for doc_id, p in pairs:
                    score, explanation = self._explain(q, p, explain)  # type: ignore[misc]
                    hits.append(Hit(doc_id, score, explanation))
                hits.sort(key=lambda h: -h.score)  # stable: ties keep the retrieval order
                results.append(hits[:k])
        return results
