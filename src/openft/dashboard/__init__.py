"""The web dashboard: static HTML, JavaScript and CSS that call the /v1 API with the user's key."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).with_name("static")
