"""Shared fixtures: settings on a temporary home, databases (SQLite and PostgreSQL), the app, and
the official openai client talking to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from openft.settings import Settings
from postgres_databases import postgres_database

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the whole run, so tiny-chat is built once."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'openft.db'}"
    else:
        yield from postgres_database()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, models_dir: Path) -> Settings:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(models_dir)
    return Settings(home=home, database_url=database_url, worker_poll_seconds=0.05)
