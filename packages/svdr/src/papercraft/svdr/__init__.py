"""papercraft.svdr — Semi-parametric vocabulary-disentangled retrieval (SVDR/SiDR) with a binary bag-of-tokens index

Paper: Semi-parametric Vocabulary Disentangled Retrieval (arXiv 2405.01924, https://arxiv.org/abs/2405.01924).
"""

from __future__ import annotations

from papercraft.svdr._version import __version__

__all__ = ["__version__"]
