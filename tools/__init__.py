"""Developer scripts of the papercraft monorepo (not installed, not published).

Run them from the repository root, either as files (``python tools/check_layout.py``) or as
modules (``python -m tools.check_layout``).
"""

from __future__ import annotations
