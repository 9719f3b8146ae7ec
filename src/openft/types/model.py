"""``model`` objects (``openai.types.Model``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Model(BaseModel):
    id: str
    created: int
    object: Literal["model"] = "model"
    owned_by: str
    parent: str | None = None
    """For a fine-tuned model or checkpoint: the base model (vLLM's convention; not in OpenAI's schema)."""
    root: str | None = None


class ModelDeleted(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]
