"""Local commands: ``openft serve``, ``openft worker``, ``openft db upgrade``, ``openft models add``."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from openft.cli import export
from openft.settings import Settings

if TYPE_CHECKING:
    from openft.store.keys import KeyStore

console = Console(stderr=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
models_app = typer.Typer(help="Base models and fine-tuned models.", no_args_is_help=True)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _log_python_graders(settings: Settings) -> None:
    """Say at start how python graders run here (confined, refused, or unconfined by the operator's choice)."""
    from openft.graders.confinement import log_confinement

    log_confinement(logging.getLogger("openft.graders"), allow_unconfined=settings.allow_unconfined_python_graders)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    worker: Annotated[bool, typer.Option("--worker/--no-worker", help="Run an embedded worker.")] = True,
    insecure: Annotated[bool, typer.Option(help="Allow a non-loopback address without API keys.")] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="API processes on the port (one Python process runs on one core at a time). With more than "
            "one, the job worker runs in the supervising process and each API process loads the models it serves.",
        ),
    ] = 1,
) -> None:
    """Run the API (and, by default, a worker) until interrupted."""
    _logging()
    settings = Settings(host=host, port=port)
    _log_python_graders(settings)
    if workers == 1:
        _serve_in_this_process(settings, worker=worker, insecure=insecure)
    else:
        _serve_in_processes(settings, workers, worker=worker, insecure=insecure)


def _serve_in_this_process(settings: Settings, *, worker: bool, insecure: bool) -> None:
    import uvicorn

    from openft.api.app import create_app

    app = create_app(settings, embedded_worker=worker)
    _refuse_open_network_without_keys(settings, insecure, app.state.keys)
    console.print(f"openft serving on http://{settings.host}:{settings.port}/v1 (data in {settings.home})")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


def _serve_in_processes(settings: Settings, count: int, *, worker: bool, insecure: bool) -> None:
    """``count`` API processes (``api/processes.py``), and the job worker in this one."""
    from openft.api.processes import ensure_port_is_free, serve_processes
    from openft.store import open_store
    from openft.store.keys import KeyStore

    host, port = settings.host, settings.port
    settings.ensure_dirs()
    store = open_store(settings.sqlalchemy_url)  # schema upgraded here, before any API process starts
    _refuse_open_network_without_keys(settings, insecure, KeyStore(store))
    try:
        ensure_port_is_free(host, port)
    except OSError as exc:
        console.print(f"[red]Cannot serve on {host}:{port}: {exc.strerror or exc}[/]")
        raise typer.Exit(1) from exc
    # The API processes build their settings from the environment: pass them what this command was given.
    os.environ.update({"OPENFT_HOST": host, "OPENFT_PORT": str(port)})
    stop, job_worker = threading.Event(), None
    if worker:
        from openft.jobs.worker import Worker

        job_worker = threading.Thread(target=Worker(settings, store).run, args=(stop,), name="openft-worker")
        job_worker.start()
    console.print(f"openft serving on http://{host}:{port}/v1 with {count} API processes (data in {settings.home})")
    try:
        serve_processes(host, port, count, stop)
    finally:
        stop.set()
        if job_worker is not None:
            job_worker.join(timeout=30)


def _refuse_open_network_without_keys(settings: Settings, insecure: bool, keys: KeyStore) -> None:
    if not settings.is_loopback and not insecure and not keys.any_configured():
        # Without keys every caller is the local user: exposing that on a network needs consent.
        console.print(
            f"[red]Refusing to listen on {settings.host} without API keys (create one with `openft keys create`); "
            "pass --insecure to do it anyway.[/]"
        )
        raise typer.Exit(2)


def run_worker() -> None:
    """Run a standalone worker against the configured database until interrupted."""
    from openft.jobs.worker import Worker
    from openft.store import open_store

    _logging()
    settings = Settings()
    settings.ensure_dirs()
    _log_python_graders(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    Worker(settings, open_store(settings.sqlalchemy_url)).run(stop)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending schema migrations."""
    from openft.store.database import create_db_engine
    from openft.store.migrate import current_revision, upgrade_database

    settings = Settings()
    settings.ensure_dirs()
    engine = create_db_engine(settings.sqlalchemy_url)
    upgrade_database(engine)
    console.print(f"database at revision {current_revision(engine)}")


@models_app.command("add")
def models_add(name: str, path: Path) -> None:
    """Register a local Hugging Face model directory as base model NAME."""
    from openft.store import open_store

    if not (path / "config.json").exists():
        raise typer.BadParameter(f"{path} has no config.json", param_hint="PATH")
    settings = Settings()
    settings.ensure_dirs()
    open_store(settings.sqlalchemy_url).add_local_model(name, str(path.resolve()))
    console.print(f"registered {name} -> {path.resolve()}")


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command("worker")(run_worker)
    app.add_typer(db_app, name="db")
    export.register(models_app)
    app.add_typer(models_app, name="models")
