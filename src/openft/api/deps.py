"""Collaborators of the route handlers, as ``Annotated`` dependency aliases.

All are ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, a hop per dependency per
request for what is an attribute read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from openft.api.auth import authenticate
from openft.api.reads import ReadThreads
from openft.files.service import FileService
from openft.files.uploads import UploadService
from openft.jobs.service import JobService
from openft.jobs.webhook_endpoints import WebhookEndpoints
from openft.serving.permissions import CheckpointPermissions
from openft.serving.registry import ModelRegistry
from openft.settings import Settings
from openft.tenancy import Principal


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _files(request: Request) -> FileService:
    files: FileService = request.app.state.files
    return files


async def _jobs(request: Request) -> JobService:
    jobs: JobService = request.app.state.jobs
    return jobs


async def _registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


async def _uploads(request: Request) -> UploadService:
    uploads: UploadService = request.app.state.uploads
    return uploads


async def _reads(request: Request) -> ReadThreads:
    reads: ReadThreads = request.app.state.reads
    return reads


async def _permissions(request: Request) -> CheckpointPermissions:
    permissions: CheckpointPermissions = request.app.state.permissions
    return permissions


async def _webhooks(request: Request) -> WebhookEndpoints:
    webhooks: WebhookEndpoints = request.app.state.webhooks
    return webhooks


SettingsDep = Annotated[Settings, Depends(_settings)]
FilesDep = Annotated[FileService, Depends(_files)]
JobsDep = Annotated[JobService, Depends(_jobs)]
RegistryDep = Annotated[ModelRegistry, Depends(_registry)]
PrincipalDep = Annotated[Principal, Depends(authenticate)]
UploadsDep = Annotated[UploadService, Depends(_uploads)]
ReadsDep = Annotated[ReadThreads, Depends(_reads)]
PermissionsDep = Annotated[CheckpointPermissions, Depends(_permissions)]
WebhooksDep = Annotated[WebhookEndpoints, Depends(_webhooks)]
