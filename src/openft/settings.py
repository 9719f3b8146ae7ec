"""One settings object, read from the environment (prefix ``OPENFT_``) at the entry points.

This is the only module that reads ``os.environ`` for openft's own configuration; everything
else receives a :class:`Settings` (or the few values it needs) as an argument.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration of a server, a worker or a CLI command."""

    model_config = SettingsConfigDict(env_prefix="OPENFT_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".openft")
    """Where data lives: the SQLite database, uploaded files, adapters, results, model cache."""

    database_url: str | None = None
    """SQLAlchemy URL; default ``sqlite:///{home}/openft.db``. PostgreSQL: ``postgresql+psycopg://...``."""

    host: str = "127.0.0.1"
    port: int = 8000

    max_file_bytes: int = 512 * 1024 * 1024
    """Largest file accepted by ``POST /v1/files`` (OpenAI's limit)."""

    worker_poll_seconds: float = 0.25
    """How often an idle worker looks for work and a busy one checks for cancellation."""

    heartbeat_timeout_seconds: float = 30.0
    """A job whose worker has not been heard from for this long is taken back from it."""

    max_job_attempts: int = 3
    """A job whose worker died is re-queued this many times before it fails."""

    training_threads: int | None = None
    """torch threads in the training process; default: all cores."""

    serving_threads: int | None = None
    """torch threads for inference in the server process; default: all cores."""

    organization_id: str = "org-personal"
    """Owner of everything on a single-user install (no API keys configured)."""

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'openft.db'}"

    @property
    def files_dir(self) -> Path:
        return self.home / "files"

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    def ensure_dirs(self) -> None:
        for path in (self.home, self.files_dir, self.jobs_dir, self.models_dir):
            path.mkdir(parents=True, exist_ok=True)

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
