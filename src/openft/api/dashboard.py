"""The dashboard's pages (``/``, ``/jobs/{job_id}``, ``/playground``, ``/files``, ``/evals``,
``/evals/{eval_id}/runs/{run_id}``) and its assets.

Every page is the same single-page app; it reads its data from the /v1 API with the API key the
user typed (kept in the browser's localStorage), so it has no access the API does not give.
Everything is served from the package, so it works without internet access.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from openft.dashboard import STATIC_DIR
from openft.errors import NotFound

router = APIRouter(include_in_schema=False)

_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}


def _index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"cache-control": "no-cache"})


@router.get("/")
def jobs_page() -> FileResponse:
    return _index()


@router.get("/jobs/{job_id}")
def job_page(job_id: str) -> FileResponse:
    return _index()


@router.get("/playground")
def playground_page() -> FileResponse:
    return _index()


@router.get("/files")
def files_page() -> FileResponse:
    return _index()


@router.get("/evals")
def evals_page() -> FileResponse:
    return _index()


@router.get("/evals/{eval_id}/runs/{run_id}")
def eval_run_page(eval_id: str, run_id: str) -> FileResponse:
    return _index()


@router.get("/static/{name}")
def asset(name: str) -> FileResponse:
    path = STATIC_DIR / name
    # Only plain names of files in the folder: no path tricks.
    if "/" in name or name.startswith(".") or path.suffix not in _TYPES or not path.is_file():
        raise NotFound(f"No dashboard asset named '{name}'.")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers={"cache-control": "no-cache"})
