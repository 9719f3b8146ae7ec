"""/v1/uploads: create an Upload, add parts (multipart ``data``), complete it into a file, or cancel it."""

from __future__ import annotations

from fastapi import APIRouter, UploadFile
from starlette.concurrency import run_in_threadpool

from openft.api.deps import PrincipalDep, UploadsDep
from openft.api.files import file_to_wire
from openft.api.openapi import errors
from openft.store.rows import FileRow
from openft.store.uploads import UploadPartRow, UploadRow
from openft.types.upload import Upload, UploadCompleteParams, UploadCreateParams, UploadPart

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])


def upload_to_wire(row: UploadRow, file: FileRow | None = None) -> Upload:
    # The store keeps the status as a plain string; validation checks it against the wire's literal.
    return Upload.model_validate(
        {
            "id": row.id,
            "bytes": row.bytes,
            "created_at": row.created_at,
            "expires_at": row.expires_at,
            "filename": row.filename,
            "purpose": row.purpose,
            "status": row.status,
            "file": file_to_wire(file) if file is not None else None,
        }
    )


def part_to_wire(row: UploadPartRow) -> UploadPart:
    return UploadPart(id=row.id, created_at=row.created_at, upload_id=row.upload_id)


@router.post("", response_model=Upload, responses=errors(400))
def create_upload(principal: PrincipalDep, uploads: UploadsDep, params: UploadCreateParams) -> Upload:
    return upload_to_wire(uploads.create(principal, params))


@router.post("/{upload_id}/parts", response_model=UploadPart, responses=errors(400, 404))
async def add_upload_part(principal: PrincipalDep, uploads: UploadsDep, upload_id: str, data: UploadFile) -> UploadPart:
    return part_to_wire(await run_in_threadpool(uploads.add_part, principal, upload_id, data.file))


@router.post("/{upload_id}/complete", response_model=Upload, responses=errors(400, 404))
def complete_upload(
    principal: PrincipalDep, uploads: UploadsDep, upload_id: str, params: UploadCompleteParams
) -> Upload:
    upload, file = uploads.complete(principal, upload_id, params.part_ids, params.md5)
    return upload_to_wire(upload, file)


@router.post("/{upload_id}/cancel", response_model=Upload, responses=errors(400, 404))
def cancel_upload(principal: PrincipalDep, uploads: UploadsDep, upload_id: str) -> Upload:
    return upload_to_wire(uploads.cancel(principal, upload_id))
