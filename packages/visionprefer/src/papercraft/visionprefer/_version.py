"""Version of papercraft-visionprefer (hatchling reads it when building)."""

from __future__ import annotations

__version__ = "0.1.0"
