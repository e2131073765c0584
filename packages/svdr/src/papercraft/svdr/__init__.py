"""papercraft.svdr — Semi-parametric vocabulary-disentangled retrieval (SVDR/SiDR) with a binary bag-of-tokens index

Paper: Semi-parametric Vocabulary Disentangled Retrieval (arXiv 2405.01924, https://arxiv.org/abs/2405.01924).
"""

from __future__ import annotations

from papercraft.svdr._version import __version__
from papercraft.svdr.baselines import BM25Index, DenseIndex
from papercraft.svdr.data import BeirData, DprExample, Passage, passage_text, read_beir, read_dpr
from papercraft.svdr.evaluate import EvaluationReport, evaluate_systems, score_run, svdr_searcher
from papercraft.svdr.index import BagOfTokensIndex, EmbeddingIndex, SparseIndex
from papercraft.svdr.loss import semi_parametric_loss
from papercraft.svdr.lucene import LuceneRetriever, export_lucene
from papercraft.svdr.model import SVDREncoder
from papercraft.svdr.retriever import Hit, Retriever
from papercraft.svdr.vocab import VocabularySpace

__all__ = [
    "BM25Index",
    "BagOfTokensIndex",
    "BeirData",
    "DenseIndex",
    "DprExample",
    "EmbeddingIndex",
    "EvaluationReport",
    "Hit",
    "LuceneRetriever",
    "Passage",
    "Retriever",
    "SVDREncoder",
    "SparseIndex",
    "VocabularySpace",
    "__version__",
    "evaluate_systems",
    "export_lucene",
    "passage_text",
    "read_beir",
    "read_dpr",
    "score_run",
    "semi_parametric_loss",
    "svdr_searcher",
]
