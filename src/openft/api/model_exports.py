"""GET /v1/fine_tuning/jobs/{job_id}/export: a succeeded job's model as a ``.tar.gz`` download.

The archive is what ``openft models export`` writes (``format`` ``peft``: the LoRA adapter and tokenizer
for vLLM; ``merged``: a standalone safetensors model; ``gguf``: one GGUF file). The command runs as a
child process, as the job's organization, so the API process never imports torch for it; the result is
streamed as it is compressed and deleted afterwards. Only the job's organization can export it (another
organization's job answers 404, as everywhere).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from openft.api.deps import JobsDep, PrincipalDep, SettingsDep
from openft.api.openapi import errors
from openft.errors import InvalidJobState, InvalidRequest
from openft.jobs import status as st
from openft.settings import Settings
from openft.store.rows import JobRow

CHUNK_BYTES = 1024 * 1024
EXPORT_TIMEOUT_SECONDS = 1800

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])


def _export(settings: Settings, job: JobRow, fmt: str, workdir: Path) -> Path:
    """Run ``openft models export`` for the job's model into ``workdir/NAME``; its message on failure."""
    env = {
        **os.environ,
        "OPENFT_HOME": str(settings.home),
        "OPENFT_DATABASE_URL": settings.sqlalchemy_url,
        "OPENFT_ORGANIZATION_ID": job.organization_id,
    }
    if settings.storage_url:
        env["OPENFT_STORAGE_URL"] = settings.storage_url
    target = workdir / job.id
    command = [sys.executable, "-m", "openft", "models", "export", str(job.fine_tuned_model), "-o", str(target)]
    try:
        done = subprocess.run(
            [*command, "--format", fmt], env=env, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired as exc:
        raise InvalidRequest(f"Exporting {job.fine_tuned_model} took over {EXPORT_TIMEOUT_SECONDS} s.") from exc
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or ["the export failed"])[-1]
        raise InvalidRequest(f"Cannot export {job.fine_tuned_model} as {fmt}: {message}", param="format")
    return target


def _tar_stream(directory: Path, workdir: Path) -> Iterator[bytes]:
    """The directory as a gzip'd tar, chunk by chunk; the export is deleted when the stream ends."""
    tar = subprocess.Popen(["tar", "-czf", "-", "-C", str(directory.parent), directory.name], stdout=subprocess.PIPE)
    try:
        assert tar.stdout is not None
        while chunk := tar.stdout.read(CHUNK_BYTES):
            yield chunk
    finally:
        tar.kill()
        tar.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@router.get(
    "/{fine_tuning_job_id}/export",
    responses={**errors(400, 404), 200: {"content": {"application/gzip": {}}, "description": "A .tar.gz archive"}},
)
async def export_job_model(
    principal: PrincipalDep,
    settings: SettingsDep,
    jobs: JobsDep,
    fine_tuning_job_id: str,
    format: Literal["peft", "merged", "gguf"] = "peft",
) -> StreamingResponse:
    """Download the job's fine-tuned model, exported as ``openft models export --format FORMAT`` writes it."""
    job = await anyio.to_thread.run_sync(jobs.get, principal, fine_tuning_job_id)
    if job.status != st.SUCCEEDED or not job.fine_tuned_model:
        raise InvalidJobState(f"Job {job.id} is {job.status}; only a succeeded job's model can be exported.")
    workdir = Path(tempfile.mkdtemp(prefix="openft-export-", dir=settings.home))
    try:
        exported = await anyio.to_thread.run_sync(_export, settings, job, format, workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    name = f"{job.id}-{format}.tar.gz"
    return StreamingResponse(
        _tar_stream(exported, workdir),
        media_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
