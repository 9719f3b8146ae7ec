"""openft: the OpenAI fine-tuning API, self-hosted, on open-weight models."""

from __future__ import annotations

__version__ = "0.1.0"
