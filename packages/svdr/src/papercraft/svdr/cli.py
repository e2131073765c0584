"""The ``papercraft svdr`` sub-command.

The core's ``papercraft`` command finds this module through the ``papercraft.commands`` entry
point and calls ``command.register(subparsers)``. Each action stores its handler as ``func``
(``handler(args) -> int``, the exit status) on the parsed namespace.
"""

from __future__ import annotations

import argparse

from papercraft.svdr._version import __version__

__all__ = ["Command", "command"]

_DIST = "papercraft-svdr"
_SUMMARY = "Semi-parametric vocabulary-disentangled retrieval (SVDR/SiDR) with a binary bag-of-tokens index"
_PAPER = "Semi-parametric Vocabulary Disentangled Retrieval (arXiv 2405.01924, https://arxiv.org/abs/2405.01924)"


def _info(args: argparse.Namespace) -> int:
    """Print the distribution name, version and paper, like ``--version`` does."""
    print(f"{_DIST} {__version__}")
    print(_SUMMARY)
    if _PAPER:
        print(f"paper: {_PAPER}")
    return 0


class Command:
    """Registers ``papercraft svdr`` and its actions on the core's argument parser."""

    name = "svdr"

    def register(self, subparsers: argparse._SubParsersAction) -> None:
        """Add the ``svdr`` sub-parser.

        Args:
            subparsers (argparse._SubParsersAction): the core parser's sub-command group.
        """
        parser = subparsers.add_parser(self.name, help=_SUMMARY, description=_SUMMARY)

        def show_help(args: argparse.Namespace) -> int:
            parser.print_help()
            return 0

        parser.set_defaults(func=show_help)
        actions = parser.add_subparsers(dest="svdr_action", metavar="ACTION")
        info = actions.add_parser("info", help="print the package, its version and its paper")
        info.set_defaults(func=_info)


command = Command()
