"""The per-key rate limiter on ``limits``' own in-memory storage and on unreachable storages, the body-size
rules per route, and the file-name rule, without a server."""

from __future__ import annotations

import logging
import time

import pytest
from limits.storage import MemoryStorage
from sqlalchemy import create_engine

from openft.api.limits import MULTIPART_OVERHEAD, RateLimiter, body_limit_for, rate_limit_storage
from openft.errors import ServiceUnavailable
from openft.files.service import clean_filename
from openft.settings import Settings
from openft.store.rate_limits import DatabaseStorage

UNREACHABLE_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"


def test_a_minute_of_requests_then_a_wait_until_the_window_ends() -> None:
    limiter = RateLimiter(3, MemoryStorage())
    started = time.time()
    assert [limiter.hit("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.hit("k")
    assert 60 - (time.time() - started) - 0.1 <= wait <= 60  # the window began with the first request
    assert limiter.hit("other") == 0.0  # per key
    # A refused key is answered from the refusal it already got, without counting it again.
    counted = limiter.strategy.storage.get(limiter.item.key_for("k"))
    assert 0 < limiter.hit("k") <= wait
    assert limiter.strategy.storage.get(limiter.item.key_for("k")) == counted
    error, headers = limiter.error("key_x", 0.2)
    assert headers == {"Retry-After": "1"} and error.http_status == 429 and error.code == "rate_limit_exceeded"
    assert error.message == (
        "Rate limit reached for requests per min (RPM) on API key key_x: Limit 3. Please try again in 1s."
    )


def test_zero_turns_the_limit_off() -> None:
    limiter = RateLimiter(0, DatabaseStorage(create_engine(UNREACHABLE_POSTGRES)))
    assert all(limiter.hit("k") == 0.0 for _ in range(10_000))  # and never asks the storage


@pytest.mark.parametrize("url", [None, "redis://127.0.0.1:1/0"])
def test_an_unreachable_storage_refuses_unless_told_to_fail_open(
    url: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(requests_per_minute=5, rate_limit_storage_url=url)
    engine = create_engine(UNREACHABLE_POSTGRES)
    closed = RateLimiter.from_settings(settings, engine)
    with pytest.raises(ServiceUnavailable) as err:
        closed.hit("k")
    assert err.value.http_status == 503 and "could not be checked" in err.value.message
    with caplog.at_level(logging.WARNING, logger="openft.api.limits"):
        opened = RateLimiter.from_settings(settings.model_copy(update={"rate_limit_fail_open": True}), engine)
        assert "OPENFT_RATE_LIMIT_FAIL_OPEN" in caplog.text
        assert all(opened.hit("k") == 0.0 for _ in range(3))
    assert caplog.text.count("rate limit not applied") == 1  # once a minute, not once a request


def test_storage_urls() -> None:
    engine = create_engine("sqlite://")
    assert isinstance(rate_limit_storage(Settings(), engine), DatabaseStorage)
    assert isinstance(rate_limit_storage(Settings(rate_limit_storage_url="memory://"), engine), MemoryStorage)
    with pytest.raises(ValueError, match="OPENFT_RATE_LIMIT_STORAGE_URL"):
        rate_limit_storage(Settings(rate_limit_storage_url="nosuch://x"), engine)


def test_body_limits_per_route() -> None:
    settings = Settings(max_request_bytes=10, max_file_bytes=100, max_upload_part_bytes=1000)
    limit = body_limit_for(settings)
    assert limit("POST", "/v1/fine_tuning/jobs") == 10
    assert limit("POST", "/v1/files") == 100 + MULTIPART_OVERHEAD
    assert limit("GET", "/v1/files") == 10
    assert limit("POST", "/v1/uploads/upload_abc/parts") == 1000 + MULTIPART_OVERHEAD
    assert limit("POST", "/v1/uploads/upload_abc/complete") == 10


def test_file_names_are_display_names_only() -> None:
    assert clean_filename("../../etc/passwd") == "passwd"
    assert clean_filename("..\\..\\boot.ini") == "boot.ini"
    assert clean_filename("a\x00b\nc.jsonl") == "abc.jsonl"
    assert clean_filename("\ud800x.jsonl") == "x.jsonl"
    assert clean_filename("/") == "file"
    long = clean_filename("y" * 1000 + ".jsonl")
    assert len(long) == 255 and long.endswith(".jsonl")
