"""Hostile training files against a live server: each is either refused at upload with the exact
message (naming the line), or accepted and then fails the job's ``validating_files`` phase with the
exact error the worker gives it (code and message, naming the line) — or, when it is in fact valid,
passes. Nothing crashes, hangs or reaches a 5xx, and the server keeps answering its neighbour."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hostile_support import HostileServer, expect_error

from openft.jobs.worker import Worker
from openft.store import open_store

pytestmark = pytest.mark.integration

GOOD = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
FORMAT = "The job failed due to a file format error in the training file. Invalid file format."
NOT_JSONL = "Expected file to have JSONL format, where every line is a JSON dictionary."


def lines(*bad: tuple[int, bytes], total: int = 12, sep: bytes = b"\n") -> bytes:
    """``total`` good examples with the given (1-based line, bytes) replaced."""
    rows = [GOOD.encode()] * total
    for number, raw in bad:
        rows[number - 1] = raw
    return sep.join(rows) + sep


def example(content: str) -> bytes:
    """One chat example; ``json.dumps`` writes a lone surrogate as its ``\\udXXX`` escape."""
    messages = [{"role": "user", "content": content}, {"role": "assistant", "content": "x"}]
    return json.dumps({"messages": messages}).encode()


def refused(line: int, what: str, starts: str) -> str:
    """The upload-time message for a line that is not a JSON object."""
    return f'{NOT_JSONL} Line {line} is {what} (HINT: line starts with: "{starts}").'


@dataclass(frozen=True)
class HostileFile:
    name: str
    content: Callable[[], bytes]
    upload_error: str | None = None
    """The exact 400 message at upload; None: accepted."""
    job_error: tuple[str, str] | None = None
    """(code, exact message) the job fails validation with; None with an accepted upload: it validates."""


# fmt: off
FILES = [
    HostileFile("invalid UTF-8 on line 3", lambda: lines((3, b'{"messages": "\xff\xfe"}')),
                upload_error=refused(3, "not valid JSON", '{"messages": "\ufffd\ufffd"}')),
    HostileFile("NUL byte after the JSON on line 2", lambda: lines((2, b'{"messages": []}\x00')),
                upload_error=refused(2, "not valid JSON", '{"messages": []}?')),
    HostileFile("NUL byte inside a string on line 5", lambda: lines((5, b'{"messages": "a\x00b"}')),
                upload_error=refused(5, "not valid JSON", '{"messages": "a?b"}')),
    HostileFile("100,000 nested arrays on line 4", lambda: lines((4, b"[" * 100_000 + b"]" * 100_000)),
                upload_error=refused(4, "not valid JSON", "[" * 40)),
    HostileFile("50,000 nested objects on line 4", lambda: lines((4, b'{"a":' * 50_000 + b"1" + b"}" * 50_000)),
                upload_error=refused(4, "not valid JSON", '{"a":' * 8)),
    HostileFile("a 5000-digit integer on line 4", lambda: lines((4, b'{"n": ' + b"9" * 5000 + b"}")),
                upload_error=refused(4, "not valid JSON", '{"n": ' + "9" * 34)),
    HostileFile("a JSON array as line 2", lambda: lines((2, b"[1, 2, 3]")),
                upload_error=refused(2, "not a dictionary", "[1, 2, 3]")),
    HostileFile("UTF-16 instead of UTF-8", lambda: ("\n".join([GOOD] * 12)).encode("utf-16"),
                upload_error=refused(1, "not valid JSON", '\ufffd\ufffd{?"?m?e?s?s?a?g?e?s?"?:? ?[?{?"?r?o?l?')),
    HostileFile("old Mac line endings (CR only)", lambda: lines(sep=b"\r"),
                upload_error=refused(1, "not valid JSON", GOOD[:40])),
    HostileFile("a 5 MB line (one 5-million-character token)", lambda: lines((4, example("a" * 5 * 1024 * 1024))),
                job_error=("line_too_long", f"{FORMAT} Line 4 is longer than 4194304 bytes.")),
    HostileFile("65 levels of nesting on line 3", lambda: lines((3, b'{"messages": ' + b"[" * 70 + b"]" * 70 + b"}")),
                job_error=("nesting_too_deep", f"{FORMAT} Line 3 nests JSON deeper than 64 levels.")),
    HostileFile("NaN on line 6", lambda: lines((6, b'{"messages": NaN}')),
                job_error=("invalid_json", f"{FORMAT} Line 6 is not valid JSON: NaN is not valid JSON.")),
    HostileFile("an unpaired surrogate escape on line 6", lambda: lines((6, example("\ud800"))),
                job_error=("invalid_utf8", f"{FORMAT} Line 6 contains an unpaired surrogate escape ('\\ud800').")),
    HostileFile("an empty file", lambda: b"",
                job_error=("empty_file", f"{FORMAT} Training file is empty; it has no examples.")),
    HostileFile("only blank lines", lambda: b"\n  \n\t\n\r\n",
                job_error=("empty_file", f"{FORMAT} Training file is empty; it has no examples.")),
    HostileFile("too few examples", lambda: lines(total=3),
                job_error=("invalid_n_examples", "Training file has 3 example(s), but must have at least 10 examples")),
    HostileFile("an unknown role on line 9", lambda: lines((9, b'{"messages": [{"role": "root", "content": "x"}]}')),
                job_error=("unrecognized_role", f"{FORMAT} Line 9: message 1 has unknown role 'root'; expected one "
                                                "of system, developer, user, assistant, tool, function.")),
    HostileFile("over the examples limit", lambda: lines(total=1001),
                job_error=("too_many_examples",
                           "Training file has 1001 examples, but this server accepts at most 1000")),
    HostileFile("a byte-order mark", lambda: b"\xef\xbb\xbf" + lines()),
    HostileFile("Windows line endings (CRLF)", lambda: lines(sep=b"\r\n")),
    HostileFile("a 100,000-character single token", lambda: lines((5, example("x" * 100_000)))),
]
# fmt: on


@pytest.mark.parametrize("case", FILES, ids=[f.name for f in FILES])
def test_hostile_file(hostile_server: HostileServer, case: HostileFile) -> None:
    with hostile_server.client() as http:
        uploaded = http.post(
            "/v1/files", files={"file": ("hostile.jsonl", case.content())}, data={"purpose": "fine-tune"}
        )
        if case.upload_error is not None:
            expect_error(uploaded, 400, "invalid_file_format", case.upload_error, "file")
            return
        assert uploaded.status_code == 200, uploaded.text
        created = http.post(
            "/v1/fine_tuning/jobs", json={"model": "openft/tiny-chat", "training_file": uploaded.json()["id"]}
        )
        assert created.status_code == 200, created.text
        job_id = created.json()["id"]
        worker = Worker(hostile_server.settings, open_store(hostile_server.settings.sqlalchemy_url, upgrade=False))
        assert worker.validate_next_job()
        job = http.get(f"/v1/fine_tuning/jobs/{job_id}").json()
    if case.job_error is None:
        assert job["status"] == "queued" and job["error"] is None, job
        return
    code, message = case.job_error
    assert job["status"] == "failed", job
    assert job["error"] == {"code": code, "message": message, "param": "training_file"}
