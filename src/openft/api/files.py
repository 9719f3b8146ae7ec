"""/v1/files: upload (multipart, spooled to disk), list, retrieve, delete, download."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, UploadFile
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from openft.api.deps import FilesDep, PrincipalDep, ReadsDep
from openft.errors import InvalidRequest
from openft.store.rows import FileRow
from openft.types.file_object import FileDeleted, FileObject
from openft.types.shared import CursorPage, page_of

router = APIRouter(prefix="/v1/files", tags=["files"])


def file_to_wire(row: FileRow) -> FileObject:
    return FileObject(
        id=row.id,
        bytes=row.bytes,
        created_at=row.created_at,
        filename=row.filename,
        purpose=row.purpose,
        expires_at=row.expires_at,
    )


@router.post("", response_model=FileObject)
async def create_file(
    principal: PrincipalDep,
    files: FilesDep,
    file: UploadFile,
    purpose: Annotated[str, Form()],
    expires_after_anchor: Annotated[Literal["created_at"] | None, Form(alias="expires_after[anchor]")] = None,
    expires_after_seconds: Annotated[int | None, Form(alias="expires_after[seconds]")] = None,
) -> FileObject:
    if expires_after_seconds is not None and expires_after_anchor is None:
        raise InvalidRequest("expires_after[anchor] must be 'created_at'.", param="expires_after[anchor]")
    row = await run_in_threadpool(
        files.create,
        principal,
        filename=file.filename or "file",
        purpose=purpose,
        content=file.file,
        expires_after_seconds=expires_after_seconds,
    )
    return file_to_wire(row)


@router.get("", response_model=CursorPage[FileObject])
async def list_files(
    principal: PrincipalDep,
    files: FilesDep,
    reads: ReadsDep,
    purpose: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> CursorPage[FileObject]:
    rows, has_more = await reads.run(files.list, principal, purpose=purpose, limit=limit, order=order, after=after)
    data = [file_to_wire(r) for r in rows]
    return page_of(data, has_more)


@router.get("/{file_id}", response_model=FileObject)
async def retrieve_file(principal: PrincipalDep, files: FilesDep, reads: ReadsDep, file_id: str) -> FileObject:
    return file_to_wire(await reads.run(files.get, principal, file_id))


@router.delete("/{file_id}", response_model=FileDeleted)
def delete_file(principal: PrincipalDep, files: FilesDep, file_id: str) -> FileDeleted:
    return FileDeleted(id=files.delete(principal, file_id).id, deleted=True)


@router.get(
    "/{file_id}/content",
    response_class=FileResponse,
    responses={200: {"description": "The file's bytes", "content": {"application/octet-stream": {}, "text/csv": {}}}},
)
def download_file(principal: PrincipalDep, files: FilesDep, file_id: str) -> FileResponse:
    row, path = files.content(principal, file_id)
    media = "text/csv" if row.filename.endswith(".csv") else "application/octet-stream"
    return FileResponse(path, media_type=media, filename=row.filename)
