"""UploadService: large files sent in parts (OpenAI's Uploads API), assembled into a normal file.

An Upload is ``pending`` until completed, cancelled or expired (``settings.upload_expiry_seconds``
after creation). Parts are written under ``$OPENFT_HOME/uploads/{upload_id}/{part_id}``, named by id
only. Completing streams the listed parts, in order, through :class:`FileService` (so the file gets
the same checks as ``POST /v1/files``) and deletes the parts; cancelling and expiring delete them too.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from openft import ids
from openft.errors import InvalidRequest, NotFound
from openft.files.expiry import check_expires_after
from openft.files.service import CHUNK, FileService, clean_filename
from openft.settings import Settings
from openft.store import Store
from openft.store.rows import FileRow
from openft.store.uploads import UploadPartRow, UploadRow
from openft.tenancy import Principal
from openft.types.upload import UploadCreateParams

SWEEP_EVERY_SECONDS = 60
EXPIRES_AFTER_PARAM = "expires_after.seconds"


class _Concatenated:
    """A read-only stream over several files, one after the other (never more than a chunk in memory)."""

    def __init__(self, paths: list[Path]):
        self._paths: Iterator[Path] = iter(paths)
        self._current: BinaryIO | None = None

    def read(self, size: int = -1) -> bytes:
        while True:
            if self._current is None:
                path = next(self._paths, None)
                if path is None:
                    return b""
                self._current = path.open("rb")
            data = self._current.read(size if size > 0 else CHUNK)
            if data:
                return data
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()


class UploadService:
    """Uploads over any :class:`~openft.store.base.Store` (its ``uploads`` records)."""

    def __init__(self, settings: Settings, store: Store, files: FileService):
        self.settings = settings
        self.rows = store.uploads
        # A completed Upload may be up to max_upload_bytes, beyond the limit of a single POST /v1/files.
        big = settings.model_copy(update={"max_file_bytes": settings.max_upload_bytes})
        self.files = FileService(big, files.store)
        self._last_sweep = 0.0

    def _dir(self, upload_id: str) -> Path:
        return self.settings.home / "uploads" / upload_id

    def create(self, principal: Principal, params: UploadCreateParams) -> UploadRow:
        """Start an Upload of ``params.bytes`` bytes.

        Raises:
            InvalidRequest: too many bytes, a fine-tune file whose name does not end in ``.jsonl``, or an
                ``expires_after`` for the file out of range.
        """
        self.sweep_expired()
        if params.bytes > self.settings.max_upload_bytes:
            raise InvalidRequest(
                f"bytes must be at most {self.settings.max_upload_bytes} for an Upload.", param="bytes"
            )
        if params.purpose == "fine-tune" and not params.filename.lower().endswith(".jsonl"):
            raise InvalidRequest(
                f"Invalid file format for Fine-Tuning API. Must be .jsonl (got '{params.filename[:200]}').",
                param="filename",
                code="invalid_file_format",
            )
        if not params.mime_type.isprintable():
            raise InvalidRequest("mime_type must be printable text.", param="mime_type")
        expires_after = params.expires_after.seconds if params.expires_after else None
        check_expires_after(self.settings, expires_after, param=EXPIRES_AFTER_PARAM)
        now = int(time.time())
        row = UploadRow(
            id=ids.new_upload_id(),
            organization_id=principal.organization_id,
            project_id=principal.project_id,
            filename=clean_filename(params.filename),
            purpose=params.purpose,
            bytes=params.bytes,
            mime_type=params.mime_type,
            status="pending",
            created_at=now,
            expires_at=now + self.settings.upload_expiry_seconds,
            file_expires_after_seconds=expires_after,
        )
        self.rows.insert(row)
        return row

    def get(self, principal: Principal, upload_id: str) -> UploadRow:
        """The Upload, with ``status`` ``expired`` once past its expiry even before the sweeper ran.

        Raises:
            NotFound: a malformed id, or no such Upload for this organization.
        """
        self.sweep_expired()
        if not ids.is_valid_id("upload", upload_id):
            raise NotFound(f"No such Upload object: {upload_id[:100]}", param="upload_id", code="upload_not_found")
        row = self.rows.get(upload_id, principal.organization_id)
        if row.status == "pending" and row.expires_at <= time.time():
            row.status = "expired"
        return row

    def _pending(self, principal: Principal, upload_id: str) -> UploadRow:
        row = self.get(principal, upload_id)
        if row.status != "pending":
            raise InvalidRequest(
                f"Upload {upload_id} is {row.status}; only a pending Upload accepts this.",
                param="upload_id",
                code="invalid_upload_state",
            )
        return row

    def add_part(self, principal: Principal, upload_id: str, content: BinaryIO) -> UploadPartRow:
        """Store one part (at most ``settings.max_upload_part_bytes``).

        Raises:
            NotFound: no such Upload.
            InvalidRequest: the Upload is not pending, the part is too big, or the parts pass ``bytes``.
        """
        upload = self._pending(principal, upload_id)
        part_id = ids.new_upload_part_id()
        path = self._dir(upload_id) / part_id
        path.parent.mkdir(parents=True, exist_ok=True)
        limit = self.settings.max_upload_part_bytes
        size = 0
        try:
            with path.open("wb") as out:
                while chunk := content.read(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise InvalidRequest(
                            f"A part can be at most {limit} bytes.", param="data", code="part_too_large"
                        )
                    out.write(chunk)
            if self.rows.bytes_received(upload_id) + size > upload.bytes:
                raise InvalidRequest(
                    f"The parts of Upload {upload_id} would exceed the {upload.bytes} bytes it was created with.",
                    param="data",
                    code="upload_too_large",
                )
            row = UploadPartRow(
                id=part_id,
                upload_id=upload_id,
                created_at=int(time.time()),
                bytes=size,
                blob_path=str(path.relative_to(self.settings.home)),
            )
            self.rows.add_part(row)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return row

    def complete(
        self, principal: Principal, upload_id: str, part_ids: list[str], md5: str | None
    ) -> tuple[UploadRow, FileRow]:
        """Assemble the listed parts, in order, into a file; the Upload becomes ``completed``.

        Raises:
            NotFound: no such Upload.
            InvalidRequest: not pending; unknown or repeated part ids; byte count or md5 mismatch; or the
                file's own checks (purpose, format) fail.
        """
        upload = self._pending(principal, upload_id)
        parts = {p.id: p for p in self.rows.parts(upload_id)}
        if len(set(part_ids)) != len(part_ids):
            raise InvalidRequest("part_ids lists a part more than once.", param="part_ids")
        unknown = [p for p in part_ids if p not in parts]
        if unknown:
            raise InvalidRequest(
                f"Part {unknown[0][:100]} is not a part of Upload {upload_id}.", param="part_ids", code="invalid_part"
            )
        ordered = [parts[p] for p in part_ids]
        total = sum(p.bytes for p in ordered)
        if total != upload.bytes:
            raise InvalidRequest(
                f"The parts add up to {total} bytes, but the Upload was created with bytes={upload.bytes}.",
                param="part_ids",
                code="upload_size_mismatch",
            )
        paths = [self.settings.home / p.blob_path for p in ordered]
        if md5 is not None and _md5(paths) != md5.lower():
            raise InvalidRequest(
                "The md5 checksum does not match the uploaded bytes.", param="md5", code="checksum_mismatch"
            )
        stream = _Concatenated(paths)
        try:
            file = self.files.create(
                principal,
                filename=upload.filename,
                purpose=upload.purpose,
                content=stream,
                expires_after_seconds=upload.file_expires_after_seconds,
                expires_after_param=EXPIRES_AFTER_PARAM,
            )
        finally:
            stream.close()
        if not self.rows.set_status(upload_id, "pending", "completed", file_id=file.id):
            self.files.delete(principal, file.id)  # cancelled or expired meanwhile: the file must not appear
            return self._pending(principal, upload_id), file  # raises: no longer pending
        self._discard_parts(upload_id)
        upload.status, upload.file_id = "completed", file.id
        return upload, file

    def cancel(self, principal: Principal, upload_id: str) -> UploadRow:
        """Cancel a pending Upload and delete its parts.

        Raises:
            NotFound: no such Upload.
            InvalidRequest: the Upload is not pending.
        """
        upload = self._pending(principal, upload_id)
        if not self.rows.set_status(upload_id, "pending", "cancelled"):
            self._pending(principal, upload_id)
        self._discard_parts(upload_id)
        upload.status = "cancelled"
        return upload

    def sweep_expired(self, *, force: bool = False) -> int:
        """Expire pending Uploads past their time and delete their parts (at most once a minute unless forced).

        Runs when the server starts and, at most once a minute, on the Uploads API's own calls.

        Returns:
            How many Uploads were expired.
        """
        now = time.time()
        if not force and now - self._last_sweep < SWEEP_EVERY_SECONDS:
            return 0
        self._last_sweep = now
        count = 0
        for upload in self.rows.pending_expired(int(now)):
            if self.rows.set_status(upload.id, "pending", "expired"):
                self._discard_parts(upload.id)
                count += 1
        return count

    def _discard_parts(self, upload_id: str) -> None:
        self.rows.delete_parts(upload_id)
        shutil.rmtree(self._dir(upload_id), ignore_errors=True)


def _md5(paths: list[Path]) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    for path in paths:
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()
