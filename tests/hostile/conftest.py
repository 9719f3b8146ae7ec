"""Fixtures of the hostile corpus (the live server lives in ``hostile_support``)."""

from __future__ import annotations

from hostile_support import hostile_server

__all__ = ["hostile_server"]
