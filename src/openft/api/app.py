"""create_app(settings): the FastAPI application, with an embedded worker unless told otherwise."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from openft import __version__
from openft.api import checkpoint_permissions, dashboard, files, fine_tuning, inference, models, uploads
from openft.api import estimates as estimate_routes
from openft.api import evals as eval_routes
from openft.api import graders as grader_routes
from openft.api import model_exports as model_export_routes
from openft.api import responses as response_routes
from openft.api import stored_completions as stored_completion_routes
from openft.api import webhooks as webhook_routes
from openft.api.auth import AuthMiddleware
from openft.api.errors import install_error_handlers
from openft.api.generations import GenerationThreads
from openft.api.limits import BodySizeLimit, RateLimiter, RejectControlCharacters, body_limit_for
from openft.api.openapi import install_openapi
from openft.api.reads import ReadThreads
from openft.completions.service import CompletionService
from openft.evals.service import EvalService
from openft.files.expiry import FileSweeper
from openft.files.service import FileService
from openft.files.uploads import UploadService
from openft.jobs.estimate import JobEstimator
from openft.jobs.service import JobService
from openft.jobs.webhook_endpoints import WebhookEndpoints
from openft.responses.service import ResponseService
from openft.serving.permissions import CheckpointPermissions
from openft.serving.registry import ModelRegistry
from openft.settings import Settings
from openft.store import open_store
from openft.store.keys import KeyStore

log = logging.getLogger(__name__)


class _LazyBackend:
    """Creates the inference backend (and imports torch) on the first inference request."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._backend: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            if self._backend is None:
                from openft.serving.hf import HFBackend

                settings = self._settings
                self._backend = HFBackend(
                    settings.models_dir,
                    threads=settings.serving_threads,
                    adapter_budget_mb=settings.serving_adapter_budget_mb,
                    max_adapters=settings.serving_max_adapters,
                    batch_window_ms=settings.serving_batch_window_ms,
                    max_batch_rows=settings.serving_max_batch_rows,
                    background_rows_with_live=settings.serving_background_rows_with_live,
                    model_budget_mb=settings.serving_model_budget_mb,
                    decode=settings.serving_decode,
                    home=settings.home,
                )
            return self._backend

    def if_loaded(self) -> Any:
        return self._backend


def create_app(settings: Settings, *, embedded_worker: bool = True) -> FastAPI:
    settings.ensure_dirs()
    store = open_store(settings.sqlalchemy_url)
    file_service = FileService(settings, store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The ~110k objects of the loaded app (FastAPI, pydantic, SQLAlchemy, routes) never die, yet a
        # full collection visits them all: 34 ms, every few dozen list requests, which was the API's
        # p99. Frozen, they are left out of every collection (a full one takes microseconds).
        gc.collect()
        gc.freeze()
        stop = threading.Event()
        # Every API process sweeps expired files (files/expiry.py says why here and why that is safe).
        sweeper = FileSweeper(settings, store)
        threading.Thread(target=sweeper.run, args=(stop,), name="openft-file-sweep", daemon=True).start()
        if settings.eval_executor:  # every API process runs eval runs on its own serving engine
            from openft.evals.executor import RunExecutor

            runs = RunExecutor(settings, store, file_service, app.state.registry.resolve, app.state.backend)
            threading.Thread(target=runs.run, args=(stop,), name="openft-eval-runs", daemon=True).start()
        from openft.models.catalog import find_base_model
        from openft.serving import warmup  # the models this home served last, loaded before they are asked for

        warmup.start(
            warmup.preload_ids(settings.serving_preload, settings.home),
            lazy_backend,
            lambda model_id: find_base_model(model_id, store.local_models()),
        )
        thread = None
        if embedded_worker:
            from openft.jobs.worker import Worker

            worker = Worker(settings, store)
            thread = threading.Thread(target=worker.run, args=(stop,), name="openft-worker", daemon=True)
            thread.start()
        try:
            yield
        finally:
            stop.set()
            if thread is not None:
                thread.join(timeout=30)

    app = FastAPI(title="openft", version=__version__, lifespan=lifespan)
    lazy_backend = _LazyBackend(settings)
    app.state.settings = settings
    app.state.store = store
    app.state.files = file_service
    app.state.jobs = JobService(store, file_service)
    app.state.reads = ReadThreads(settings.api_read_threads)
    app.state.generations = GenerationThreads(settings.serving_generation_threads)
    app.state.registry = ModelRegistry(settings, store)
    app.state.backend = lazy_backend
    app.state.backend_if_loaded = lazy_backend.if_loaded
    app.state.keys = KeyStore(store)
    app.state.uploads = UploadService(settings, store, file_service)
    app.state.uploads.sweep_expired(force=True)
    app.state.permissions = CheckpointPermissions(store)
    app.state.estimates = JobEstimator(settings, file_service, app.state.jobs)
    app.state.responses = ResponseService(store.responses)
    app.state.evals = EvalService(settings, store, file_service, app.state.registry.resolve)
    app.state.completions = CompletionService(store.completions)
    app.state.webhooks = WebhookEndpoints(settings, store)
    install_error_handlers(app)
    for module in (files, fine_tuning, models, inference):
        app.include_router(module.router)
    app.include_router(estimate_routes.router)
    app.include_router(model_export_routes.router)
    app.include_router(webhook_routes.router)
    app.include_router(uploads.router)
    app.include_router(checkpoint_permissions.router)
    app.include_router(grader_routes.router)
    app.include_router(response_routes.router)
    app.include_router(eval_routes.router)
    app.include_router(stored_completion_routes.router)
    # The last added runs first: authenticate before reading any of the body.
    app.add_middleware(BodySizeLimit, limit_for=body_limit_for(settings))
    app.add_middleware(RejectControlCharacters)
    limiter = RateLimiter.from_settings(settings, store.engine)
    app.add_middleware(AuthMiddleware, keys=app.state.keys, settings=settings, limiter=limiter)
    install_openapi(app)
    app.include_router(dashboard.router)  # last: its pages live at the root

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app


def create_app_from_environment() -> FastAPI:
    """One API process of ``openft serve --workers N``: settings from the environment and no embedded
    worker (the supervising process runs the one job worker)."""
    return create_app(Settings(), embedded_worker=False)
