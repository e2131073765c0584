"""The ``papercraft wavllm`` sub-command.

The core's ``papercraft`` command finds this module through the ``papercraft.commands`` entry
point and calls ``command.register(subparsers)``. Each action stores its handler as ``func``
(``handler(args) -> int``, the exit status) on the parsed namespace.
"""

from __future__ import annotations

import argparse

from papercraft.wavllm._version import __version__

__all__ = ["Command", "command"]

_DIST = "papercraft-wavllm"
_SUMMARY = "WavLLM: a dual-encoder speech LLM with a prompt-aware LoRA weight adapter."
_PAPER = "WavLLM: Towards Robust and Adaptive Speech Large Language Model (arXiv 2404.00656, https://arxiv.org/abs/2404.00656)"


def _info(args: argparse.Namespace) -> int:
    """Print the distribution name, version and paper, like ``--version`` does."""
    print(f"{_DIST} {__version__}")
    print(_SUMMARY)
    if _PAPER:
        print(f"paper: {_PAPER}")
    return 0


class Command:
    """Registers ``papercraft wavllm`` and its actions on the core's argument parser."""

    name = "wavllm"

    def register(self, subparsers: argparse._SubParsersAction) -> None:
        """Add the ``wavllm`` sub-parser.

        Args:
            subparsers (argparse._SubParsersAction): the core parser's sub-command group.
        """
        parser = subparsers.add_parser(self.name, help=_SUMMARY, description=_SUMMARY)

        def show_help(args: argparse.Namespace) -> int:
            parser.print_help()
            return 0

        parser.set_defaults(func=show_help)
        actions = parser.add_subparsers(dest="wavllm_action", metavar="ACTION")
        info = actions.add_parser("info", help="print the package, its version and its paper")
        info.set_defaults(func=_info)


command = Command()
