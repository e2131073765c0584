"""papercraft.svdr — Semi-parametric vocabulary-disentangled retrieval (SVDR/SiDR) with a binary bag-of-tokens index

Paper: Semi-parametric Vocabulary Disentangled Retrieval (arXiv 2405.01924, https://arxiv.org/abs/2405.01924).
"""

from __future__ import annotations

from papercraft.svdr._version import __version__
from papercraft.svdr.index import BagOfTokensIndex, EmbeddingIndex, SparseIndex
from papercraft.svdr.loss import semi_parametric_loss
from papercraft.svdr.model import SVDREncoder
from papercraft.svdr.retriever import Hit, Retriever
from papercraft.svdr.vocab import VocabularySpace

__all__ = [
    "BagOfTokensIndex",
    "EmbeddingIndex",
    "Hit",
    "Retriever",
    "SVDREncoder",
    "SparseIndex",
    "VocabularySpace",
    "__version__",
    "semi_parametric_loss",
]
