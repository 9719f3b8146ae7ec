"""Shared fixtures: settings on a temporary home, databases (SQLite and PostgreSQL), the app, and
the official openai client talking to it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from openft.settings import Settings

ASSETS = Path(__file__).parent / "assets"
POSTGRES_ADMIN_URL = os.environ.get("OPENFT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the whole run, so tiny-chat is built once."""
    return tmp_path_factory.mktemp("models")


def _postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text

    if os.environ.get("OPENFT_TEST_POSTGRES") == "skip":
        pytest.skip("PostgreSQL tests disabled by OPENFT_TEST_POSTGRES=skip")
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"openft_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({exc.__class__.__name__}). These tests need it; "
            "set OPENFT_TEST_POSTGRES_URL, or OPENFT_TEST_POSTGRES=skip to skip them explicitly."
        )
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'openft.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, models_dir: Path) -> Settings:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(models_dir)
    return Settings(home=home, database_url=database_url, worker_poll_seconds=0.05)
