"""FileService: create, list, read and delete files; shared by the API and the worker.

Bytes go to disk in bounded chunks and are never held whole in memory. The file's id, never
its user-supplied name, is its path on disk.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from openft import ids
from openft.errors import FileNotFound, FileTooLarge, InsufficientStorage, InvalidFileFormat, InvalidRequest
from openft.files.expiry import check_expires_after
from openft.settings import Settings
from openft.store import Store
from openft.store.blobs import BlobStore
from openft.store.rows import FileRow
from openft.tenancy import Principal
from openft.types.file_object import UPLOADABLE_PURPOSES

if TYPE_CHECKING:
    from _typeshed import SupportsRead

CHUNK = 1024 * 1024
MAX_JSONL_LINE = 64 * 1024 * 1024


def _first_jsonl_problem(path: Path) -> str | None:
    """OpenAI's upload-time check: every non-blank line is a JSON object. Returns the message or None."""
    with path.open("rb") as fh:
        number = 0
        while True:
            line = fh.readline(MAX_JSONL_LINE + 1)
            if not line:
                return None
            number += 1
            if len(line) > MAX_JSONL_LINE:
                return f"Line {number} is longer than {MAX_JSONL_LINE} bytes."
            if not line.strip():
                continue
            hint = "".join(c if c.isprintable() else "?" for c in line[:40].decode("utf-8", "replace").strip())
            try:
                value = json.loads(line)
            except (ValueError, RecursionError):
                return f'Line {number} is not valid JSON (HINT: line starts with: "{hint}").'
            if not isinstance(value, dict):
                return f'Line {number} is not a dictionary (HINT: line starts with: "{hint}").'


def clean_filename(name: str) -> str:
    """A display name only: no directories, no control characters (NUL included), at most 255 characters."""
    name = "".join(c for c in os.path.basename(name.replace("\\", "/")) if c.isprintable())
    return name[-255:] or "file"


class FileService:
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self.blobs = BlobStore(settings)

    def blob_path(self, file_id: str) -> Path:
        return self.settings.files_dir / file_id

    def create(
        self,
        principal: Principal,
        *,
        filename: str,
        purpose: str,
        content: SupportsRead[bytes],
        expires_after_seconds: int | None = None,
        expires_after_param: str = "expires_after[seconds]",
    ) -> FileRow:
        """Store ``content`` as a new file uploaded by a user; with ``expires_after_seconds`` it is gone
        that long after its creation (see ``files/expiry.py``).

        Raises:
            InvalidRequest: unknown purpose, an expiry out of range (named by ``expires_after_param``), or
                a fine-tune file that is not ``.jsonl``.
            FileTooLarge: more than ``settings.max_file_bytes``.
            InvalidFileFormat: a ``fine-tune`` file whose lines are not JSON objects (names the line).
        """
        if purpose not in UPLOADABLE_PURPOSES:
            raise InvalidRequest(
                f"Invalid purpose '{purpose}'. Expected one of: {', '.join(UPLOADABLE_PURPOSES)}.",
                param="purpose",
                code="invalid_value",
            )
        if purpose == "fine-tune" and not filename.lower().endswith(".jsonl"):
            raise InvalidRequest(
                f"Invalid file format for Fine-Tuning API. Must be .jsonl (got '{filename}').",
                param="file",
                code="invalid_file_format",
            )
        check_expires_after(self.settings, expires_after_seconds, param=expires_after_param)
        return self._store(
            principal, filename=filename, purpose=purpose, content=content, expires_after_seconds=expires_after_seconds
        )

    def create_from_path(self, organization_id: str, source: Path, *, filename: str, purpose: str) -> FileRow:
        """Register a file the server produced itself (a results CSV, purpose ``fine-tune-results``)."""
        with source.open("rb") as fh:
            return self._store(Principal(organization_id), filename=filename, purpose=purpose, content=fh)

    def _store(
        self,
        principal: Principal,
        *,
        filename: str,
        purpose: str,
        content: SupportsRead[bytes],
        expires_after_seconds: int | None = None,
    ) -> FileRow:
        file_id = ids.new_file_id()
        path = self.blob_path(file_id)
        try:
            size = self._write_blob(path, content)  # its finally removes the partial blob
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise InsufficientStorage() from exc
            raise
        if purpose == "fine-tune" and (problem := _first_jsonl_problem(path)) is not None:
            path.unlink(missing_ok=True)
            raise InvalidFileFormat(
                "Expected file to have JSONL format, where every line is a JSON dictionary. " + problem,
                param="file",
            )
        now = int(time.time())
        row = FileRow(
            id=file_id,
            organization_id=principal.organization_id,
            project_id=principal.project_id,
            filename=clean_filename(filename),
            purpose=purpose,
            bytes=size,
            created_at=now,
            blob_path=str(path.relative_to(self.settings.home)),
            expires_at=now + expires_after_seconds if expires_after_seconds else None,
        )
        try:
            self.blobs.publish(row.blob_path)
            self.store.insert_file(row)
        except BaseException as exc:
            # A blob without a file object is unreachable: never leave one behind.
            path.unlink(missing_ok=True)
            with contextlib.suppress(Exception):
                self.blobs.delete(row.blob_path)
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise InsufficientStorage() from exc
            raise
        return row

    def _write_blob(self, path: Path, content: SupportsRead[bytes]) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        size = 0
        try:
            with tmp.open("wb") as out:
                while chunk := content.read(CHUNK):
                    size += len(chunk)
                    if size > self.settings.max_file_bytes:
                        raise FileTooLarge(
                            f"File is larger than the {self.settings.max_file_bytes} bytes this server accepts.",
                            param="file",
                        )
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return size

    def get(self, principal: Principal, file_id: str) -> FileRow:
        if not ids.is_valid_id("file", file_id):
            raise FileNotFound(f"No such File object: {file_id[:100]}", param="id")
        return self.store.get_file(file_id, principal.organization_id)

    def content(self, principal: Principal, file_id: str) -> tuple[FileRow, Path]:
        """The file and its bytes on this machine.

        Raises:
            FileNotFound: no such file for this organization, or its bytes are gone (expired and swept).
        """
        row = self.get(principal, file_id)
        try:
            path = self.local_path(row)
        except FileNotFoundError:
            path = None
        if path is None or not path.exists():
            raise FileNotFound(f"No such File object: {file_id}", param="id")
        return row, path

    def local_path(self, row: FileRow) -> Path:
        """The file's bytes on this machine (fetched from ``OPENFT_STORAGE_URL`` when set)."""
        return self.blobs.local_path(row.blob_path)

    def list(
        self, principal: Principal, *, purpose: str | None, limit: int, order: str, after: str | None
    ) -> tuple[list[FileRow], bool]:
        return self.store.list_files(principal.organization_id, purpose=purpose, limit=limit, order=order, after=after)

    def delete(self, principal: Principal, file_id: str) -> FileRow:
        row = self.store.delete_file(file_id, principal.organization_id)
        self.blobs.delete(row.blob_path)
        return row
