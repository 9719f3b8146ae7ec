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
from openft.store import Store
from openft.tenancy import Principal


async def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def _store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


async def _files(request: Request) -> FileService:
    return request.app.state.files  # type: ignore[no-any-return]


async def _jobs(request: Request) -> JobService:
    return request.app.state.jobs  # type: ignore[no-any-return]


async def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry  # type: ignore[no-any-return]


async def _uploads(request: Request) -> UploadService:
    return request.app.state.uploads  # type: ignore[no-any-return]


async def _reads(request: Request) -> ReadThreads:
    return request.app.state.reads  # type: ignore[no-any-return]


async def _permissions(request: Request) -> CheckpointPermissions:
    return request.app.state.permissions  # type: ignore[no-any-return]


async def _webhooks(request: Request) -> WebhookEndpoints:
    return request.app.state.webhooks  # type: ignore[no-any-return]  # app.state holds untyped attributes


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[Store, Depends(_store)]
FilesDep = Annotated[FileService, Depends(_files)]
JobsDep = Annotated[JobService, Depends(_jobs)]
RegistryDep = Annotated[ModelRegistry, Depends(_registry)]
PrincipalDep = Annotated[Principal, Depends(authenticate)]
UploadsDep = Annotated[UploadService, Depends(_uploads)]
ReadsDep = Annotated[ReadThreads, Depends(_reads)]
PermissionsDep = Annotated[CheckpointPermissions, Depends(_permissions)]
WebhooksDep = Annotated[WebhookEndpoints, Depends(_webhooks)]
