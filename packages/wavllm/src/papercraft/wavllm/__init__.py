"""papercraft.wavllm — WavLLM: a dual-encoder speech LLM with a prompt-aware LoRA weight adapter.

Paper: WavLLM: Towards Robust and Adaptive Speech Large Language Model (arXiv 2404.00656, https://arxiv.org/abs/2404.00656).
"""

from __future__ import annotations

from papercraft.wavllm._version import __version__

__all__ = ["__version__"]
