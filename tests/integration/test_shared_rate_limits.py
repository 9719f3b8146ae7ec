"""One rate limit per API key for a whole deployment: two real ``openft serve`` processes on one database
count a key's requests together, in the database (SQLite and PostgreSQL) or in Redis; and the database
counter itself is atomic under concurrent writers and starts its window over when it ends."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import redis
from openai import OpenAI
from sqlalchemy import inspect, select, text

from e2e.e2e_support import LiveServer, start_live_server, stop_live_server
from openft.store import open_store
from openft.store import schema as s
from openft.store.keys import KeyStore
from openft.store.rate_limits import DatabaseStorage

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LIMIT = 6
REDIS_URL = os.environ.get("OPENFT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> str:
    if os.environ.get("OPENFT_TEST_REDIS") == "skip":
        pytest.skip("Redis tests disabled by OPENFT_TEST_REDIS=skip")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis is not reachable at {REDIS_URL} ({exc.__class__.__name__}). These tests need it; "
            "set OPENFT_TEST_REDIS_URL, or OPENFT_TEST_REDIS=skip to skip them explicitly."
        )
    return REDIS_URL


@pytest.fixture
def start_servers(tmp_path: Path) -> Iterator[Callable[..., list[str]]]:
    """Starts two ``openft serve --no-worker`` processes on one database (``env`` adds settings); returns
    their base URLs."""
    servers: list[LiveServer] = []

    def start(database_url: str, **env: str) -> list[str]:
        settings = {"OPENFT_DATABASE_URL": database_url, "OPENFT_REQUESTS_PER_MINUTE": str(LIMIT), **env}
        homes = [tmp_path / f"home{i}" for i in range(2)]
        for home in homes:
            home.mkdir()
        with ThreadPoolExecutor(2) as pool:  # both import the server at once
            started = list(pool.map(lambda home: start_live_server(home, "--no-worker", env=settings), homes))
        servers.extend(started)
        return [server.base_url for server in started]

    yield start
    for server in servers:
        stop_live_server(server)


def _keys(database_url: str) -> tuple[str, str, str]:
    """Two keys of one organization (created before the servers start); the first key's id."""
    keys = KeyStore(open_store(database_url))
    first, key = keys.create("org-a")
    return key, keys.create("org-a")[1], first.id


def _requests_spread_over_both_share_one_limit(urls: list[str], key: str, other_key: str, key_id: str) -> None:
    clients = [OpenAI(base_url=url, api_key=key, max_retries=0) for url in urls]
    for i in range(LIMIT):  # half on each process: each alone would allow LIMIT
        clients[i % 2].files.list()
    for client in clients:
        with pytest.raises(openai.RateLimitError) as err:
            client.files.list()
        assert err.value.code == "rate_limit_exceeded" and err.value.type == "requests"
        retry_after = int(err.value.response.headers["retry-after"])
        assert 1 <= retry_after <= 60
        assert err.value.response.json()["error"]["message"] == (
            f"Rate limit reached for requests per min (RPM) on API key {key_id}: Limit {LIMIT}. "
            f"Please try again in {retry_after}s."
        )
    with pytest.raises(openai.RateLimitError):  # refused again, from the process's memory of the refusal
        clients[0].files.list()
    # Each key has its own budget.
    assert OpenAI(base_url=urls[1], api_key=other_key, max_retries=0).files.list().data == []


def test_two_api_processes_share_the_limit_in_the_database(
    database_url: str, start_servers: Callable[..., list[str]]
) -> None:
    key, other_key, key_id = _keys(database_url)
    urls = start_servers(database_url)
    _requests_spread_over_both_share_one_limit(urls, key, other_key, key_id)
    store = open_store(database_url, upgrade=False)
    with store.engine.connect() as conn:
        counts = dict(conn.execute(select(s.rate_limit_counters.c.key, s.rate_limit_counters.c["count"])).all())
    # Each process counted the first request it refused; the later refusal did not reach the storage.
    assert counts[f"openft/{key_id}/{LIMIT}/1/minute"] == LIMIT + 2


def test_two_api_processes_share_the_limit_in_redis(
    tmp_path: Path, redis_url: str, start_servers: Callable[..., list[str]]
) -> None:
    database_url = f"sqlite:///{tmp_path / 'openft.db'}"
    key, other_key, key_id = _keys(database_url)
    urls = start_servers(database_url, OPENFT_RATE_LIMIT_STORAGE_URL=redis_url)
    _requests_spread_over_both_share_one_limit(urls, key, other_key, key_id)
    counter = redis.Redis.from_url(redis_url).get(f"LIMITS:openft/{key_id}/{LIMIT}/1/minute")
    assert counter is not None and int(counter) == LIMIT + 2
    with open_store(database_url, upgrade=False).engine.connect() as conn:
        assert conn.execute(select(s.rate_limit_counters)).first() is None  # nothing counted in the database


def test_database_counter_is_atomic_across_engines(database_url: str) -> None:
    engines = [open_store(database_url).engine, open_store(database_url).engine]
    assert "ix_files_expires_at" in {i["name"] for i in inspect(engines[0]).get_indexes("files")}
    if engines[0].dialect.name == "postgresql":  # no WAL, so no flush per request (migration 0005)
        with engines[0].connect() as conn:
            query = "SELECT relpersistence FROM pg_class WHERE relname = 'rate_limit_counters'"
            assert conn.execute(text(query)).scalar_one() == "u"
    storages = [DatabaseStorage(engine) for engine in engines]
    seen: list[int] = []

    def hit(storage: DatabaseStorage) -> None:
        for _ in range(25):
            seen.append(storage.incr("k", 60))

    threads = [threading.Thread(target=hit, args=(storages[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(seen) == list(range(1, 201))  # every increment saw its own count: none lost, none repeated
    assert storages[1].get("k") == 200 and storages[0].get("other") == 0


def test_database_counter_window_starts_over(database_url: str) -> None:
    storage = DatabaseStorage(open_store(database_url).engine)
    started = time.time()
    assert [storage.incr("k", 1) for _ in range(3)] == [1, 2, 3]
    assert started + 1 <= storage.get_expiry("k") <= time.time() + 1
    time.sleep(max(0.0, started + 1.05 - time.time()))
    assert storage.get("k") == 0  # the window is over
    assert storage.incr("k", 1, amount=2) == 2  # a new one, counted from this hit
    assert storage.get_expiry("k") > time.time() + 0.5
    storage.incr("j", 60)
    storage.clear("k")
    assert storage.get("k") == 0 and storage.get("j") == 1
    assert storage.check() and storage.reset() == 1 and storage.get("j") == 0


def test_database_counter_outlives_its_connections(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to drop a connection")
    storage = DatabaseStorage(open_store(database_url).engine)
    assert storage.incr("k", 60) == 1
    with open_store(database_url, upgrade=False).engine.connect() as conn:  # as a server restart would
        dropped = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    assert dropped >= 1
    assert storage.incr("k", 60) == 2  # a dead pooled connection is replaced, not a failed request
