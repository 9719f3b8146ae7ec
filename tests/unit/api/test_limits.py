"""The per-key token bucket, the body-size rules per route, and the file-name rule, without a server."""

from __future__ import annotations

from openft.api.limits import MULTIPART_OVERHEAD, RateLimiter, body_limit_for
from openft.files.service import clean_filename
from openft.settings import Settings


def test_bucket_allows_a_minute_of_requests_then_asks_to_wait() -> None:
    limiter = RateLimiter(per_minute=3)
    assert [limiter.hit("k", now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.hit("k", now=100.0)
    assert wait == 20.0  # one request comes back every 60/3 seconds
    assert limiter.hit("other", now=100.0) == 0.0  # per key
    assert limiter.hit("k", now=110.0) == 10.0  # half refilled: 10 s to go
    assert limiter.hit("k", now=120.0) == 0.0
    error, headers = limiter.error("key_x", 0.2)
    assert headers == {"Retry-After": "1"} and error.http_status == 429 and error.code == "rate_limit_exceeded"


def test_zero_turns_the_limit_off() -> None:
    limiter = RateLimiter(per_minute=0)
    assert all(limiter.hit("k", now=1.0) == 0.0 for _ in range(10_000))


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
