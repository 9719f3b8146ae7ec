"""``upload`` and ``upload.part`` objects (``openai.types.Upload``, ``openai.types.uploads.UploadPart``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from openft.types.file_object import FileObject

UploadStatus = Literal["pending", "completed", "cancelled", "expired"]
UPLOAD_PURPOSES: tuple[str, ...] = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


class Upload(BaseModel):
    """A file being sent in parts; completing it yields a normal ``file``."""

    id: str
    """``upload_…``."""
    bytes: int
    """The intended size of the file; the parts must add up to exactly this."""
    created_at: int
    expires_at: int
    """An Upload not completed by then expires and its parts are deleted."""
    filename: str
    object: Literal["upload"] = "upload"
    purpose: str
    status: UploadStatus
    file: FileObject | None = None
    """The file made from the parts; None until the Upload is completed."""


class UploadPart(BaseModel):
    id: str
    """``part_…``."""
    created_at: int
    upload_id: str
    object: Literal["upload.part"] = "upload.part"


class ExpiresAfter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    anchor: Literal["created_at"]
    seconds: int = Field(ge=1, le=2_592_000)
    """At least ``OPENFT_FILE_EXPIRES_AFTER_MIN_SECONDS`` (an hour, as OpenAI), checked by the Upload service."""


class UploadCreateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bytes: int = Field(ge=0)
    """The size of the whole file in bytes."""
    filename: str = Field(min_length=1, max_length=512)
    mime_type: str = Field(min_length=1, max_length=256)
    purpose: Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]
    expires_after: ExpiresAfter | None = None
    """When the resulting file expires; None: never."""


class UploadCompleteParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    part_ids: list[str] = Field(max_length=10_000)
    """The parts, in the order their bytes make up the file."""
    md5: str | None = Field(default=None, max_length=64)
    """Optional MD5 (hex) of the whole file, checked before the file is made."""
