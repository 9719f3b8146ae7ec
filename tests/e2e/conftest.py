"""Fixtures of the e2e tier (the live server lives in ``e2e_support``)."""

from __future__ import annotations

from e2e_support import live_server

__all__ = ["live_server"]
