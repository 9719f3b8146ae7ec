"""Hostile requests against a live server: each gets exactly the error written beside it (status, type,
code, param, message), never a 5xx, and the server keeps answering its neighbour throughout."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hostile_support import HostileServer, expect_error

pytestmark = pytest.mark.integration

INVALID = "invalid_request_error"
JOB = {"model": "openft/tiny-chat", "training_file": "file-doesnotexist"}
# FastAPI's own answer when the JSON parser itself gives up (recursion, digit limits).
PARSE_ERROR = "There was an error parsing the body"
UNSTORABLE_METADATA = "metadata cannot contain NUL characters or unpaired surrogates."


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    status: int
    code: str | None
    message: str
    """The exact message, or with a leading ``~`` a part of it."""
    param: str | None = None
    request: dict[str, Any] = field(default_factory=dict)
    """Extra arguments of ``httpx.Client.request`` (json, content, files, data, headers, params)."""


def _json(body: Any) -> dict[str, Any]:
    return {"content": json.dumps(body), "headers": {"content-type": "application/json"}}


def _raw(body: bytes) -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": "application/json"}}


def _chunked(body: bytes, size: int = 16 * 1024) -> dict[str, Any]:
    # A list, not a generator, so the case can run once per database; httpx sends any iterable chunked.
    pieces = [body[k : k + size] for k in range(0, len(body), size)]
    return {"content": pieces, "headers": {"content-type": "application/json"}}


# fmt: off
CASES = [
    # -- bodies that are not what they claim -------------------------------------------------------
    Case("malformed json", "POST", "/v1/fine_tuning/jobs", 400, "invalid_request",
         "We could not parse the JSON body of your request.", request=_raw(b'{"model": ')),
    Case("json deeper than the parser allows", "POST", "/v1/fine_tuning/jobs", 400, None, PARSE_ERROR,
         request=_raw(b"[" * 30_000 + b"]" * 30_000)),
    Case("json array instead of object", "POST", "/v1/fine_tuning/jobs", 400, "invalid_request",
         "~Invalid value", request=_json([JOB])),
    Case("body that is not json at all", "POST", "/v1/fine_tuning/jobs", 400, "invalid_request",
         "We could not parse the JSON body of your request.", request=_raw(b"\xff\xfe\x00garbage")),
    Case("integer with 5000 digits", "POST", "/v1/fine_tuning/jobs", 400, None, PARSE_ERROR,
         request=_raw(b'{"model": "m", "training_file": "f", "seed": ' + b"9" * 5000 + b"}")),
    Case("NaN seed", "POST", "/v1/fine_tuning/jobs", 400, "invalid_request", "~Invalid value for 'seed'",
         param="seed", request=_raw(b'{"model": "openft/tiny-chat", "training_file": "f", "seed": NaN}')),
    Case("seed of the wrong type", "POST", "/v1/fine_tuning/jobs", 400, "invalid_request",
         "~Invalid value for 'seed'", param="seed", request=_json({**JOB, "seed": "seven"})),
    Case("seed out of range", "POST", "/v1/fine_tuning/jobs", 400, "invalid_request",
         "~Invalid value for 'seed'", param="seed", request=_json({**JOB, "seed": 2**40})),
    Case("unknown field", "POST", "/v1/fine_tuning/jobs", 400, "invalid_request",
         "Unrecognized request argument supplied: model_path", param="model_path",
         request=_json({**JOB, "model_path": "/etc/passwd"})),
    Case("missing required field", "POST", "/v1/fine_tuning/jobs", 400, "invalid_request",
         "Missing required parameter: 'training_file'.", param="training_file",
         request=_json({"model": "openft/tiny-chat"})),
    Case("body as text/plain", "POST", "/v1/fine_tuning/jobs", 400, "invalid_request", "~Invalid value",
         request={"content": json.dumps(JOB), "headers": {"content-type": "text/plain"}}),
    # -- sizes ------------------------------------------------------------------------------------
    Case("json body over the limit", "POST", "/v1/fine_tuning/jobs", 413, "request_too_large",
         "The request body is larger than the 65536 bytes this endpoint accepts.",
         request=_json({**JOB, "suffix": "x" * 70_000})),
    Case("chunked json body over the limit", "POST", "/v1/fine_tuning/jobs", 413, "request_too_large",
         "The request body is larger than the 65536 bytes this endpoint accepts.",
         request=_chunked(json.dumps({**JOB, "suffix": "x" * 200_000}).encode())),
    Case("multipart over the file limit", "POST", "/v1/files", 413, "request_too_large",
         f"The request body is larger than the {9 * 1024 * 1024} bytes this endpoint accepts.",
         request={"files": {"file": ("big.jsonl", b"x" * (10 * 1024 * 1024))}, "data": {"purpose": "fine-tune"}}),
    Case("giant metadata: 17 keys", "POST", "/v1/fine_tuning/jobs", 400, None,
         "metadata can have at most 16 key-value pairs.", param="metadata",
         request=_json({**JOB, "metadata": {f"k{i}": "v" for i in range(17)}})),
    Case("giant metadata: 600-character value", "POST", "/v1/fine_tuning/jobs", 400, None,
         "metadata value for 'k' is longer than 512 characters.", param="metadata",
         request=_json({**JOB, "metadata": {"k": "v" * 600}})),
    Case("suffix of 65 characters", "POST", "/v1/fine_tuning/jobs", 400, "invalid_request",
         "~Invalid value for 'suffix'", param="suffix", request=_json({**JOB, "suffix": "s" * 65})),
    Case("limit of 10^30", "GET", "/v1/files", 400, "invalid_request", "~Invalid value for 'limit'",
         param="limit", request={"params": {"limit": "1" + "0" * 30}}),
    Case("negative limit", "GET", "/v1/fine_tuning/jobs", 400, "invalid_request", "~Invalid value for 'limit'",
         param="limit", request={"params": {"limit": "-1"}}),
    Case("limit that is not a number", "GET", "/v1/fine_tuning/jobs", 400, "invalid_request",
         "~Invalid value for 'limit'", param="limit", request={"params": {"limit": "ten"}}),
    Case("order outside its enum", "GET", "/v1/files", 400, "invalid_request", "~Invalid value for 'order'",
         param="order", request={"params": {"order": "sideways"}}),
    Case("upload of negative bytes", "POST", "/v1/uploads", 400, "invalid_request", "~Invalid value for 'bytes'",
         param="bytes",
         request=_json({"bytes": -1, "filename": "a.jsonl", "mime_type": "text/jsonl", "purpose": "fine-tune"})),
    Case("upload completed with 10,001 part ids", "POST", "/v1/uploads/upload_x/complete", 400, "invalid_request",
         "~Invalid value for 'part_ids'", param="part_ids", request=_json({"part_ids": ["p"] * 10_001})),
    # -- text a database cannot store -------------------------------------------------------------
    Case("NUL in metadata", "POST", "/v1/fine_tuning/jobs", 400, None, UNSTORABLE_METADATA, param="metadata",
         request=_json({**JOB, "metadata": {"k": "a\u0000b"}})),
    Case("unpaired surrogate in metadata", "POST", "/v1/fine_tuning/jobs", 400, None, UNSTORABLE_METADATA,
         param="metadata", request=_raw(b'{"model": "openft/tiny-chat", "training_file": "f", '
                                         b'"metadata": {"k": "\\ud800"}}')),
    Case("NUL in suffix", "POST", "/v1/fine_tuning/jobs", 400, None,
         "suffix cannot contain NUL characters or unpaired surrogates.", param="suffix",
         request=_json({**JOB, "suffix": "a\u0000"})),
    Case("NUL in a file id in the body", "POST", "/v1/fine_tuning/jobs", 400, "invalid_file",
         "File file-\u0000 does not exist.", param="training_file",
         request=_json({"model": "openft/tiny-chat", "training_file": "file-\u0000"})),
    # -- ids and paths ----------------------------------------------------------------------------
    Case("path traversal in a file id", "GET", "/v1/files/..%2F..%2F..%2Fetc%2Fpasswd", 404, None,
         "Unknown request URL. Please check the URL and method."),
    Case("dot-dot as a file id", "GET", "/v1/files/..%2E", 404, "file_not_found", "No such File object: ...",
         param="id"),
    Case("NUL in a file id", "GET", "/v1/files/file-abc%00def", 404, None,
         "No such object: the path contains control characters."),
    Case("NUL in a job id", "GET", "/v1/fine_tuning/jobs/ftjob-%00/events", 404, None,
         "No such object: the path contains control characters."),
    Case("NUL in a cursor", "GET", "/v1/files", 400, None, "The query string contains control characters.",
         request={"params": {"after": "file-\u0000"}}),
    Case("malformed job id", "POST", "/v1/fine_tuning/jobs/'%20OR%201=1--/cancel", 404,
         "fine_tuning_job_not_found", "No such fine-tuning job: ' OR 1=1--", param="fine_tuning_job_id"),
    Case("2 KB file id", "GET", "/v1/files/file-" + "A" * 2000, 404, "file_not_found",
         "No such File object: file-" + "A" * 95, param="id"),
    Case("model id that is a path", "GET", "/v1/models/..%2F..%2Fetc%2Fpasswd", 404, "model_not_found",
         "The model `../../etc/passwd` does not exist or you do not have access to it.", param="model"),
    Case("chat with a model id that is a path", "POST", "/v1/chat/completions", 404, "model_not_found",
         "The model `/etc/passwd` does not exist or you do not have access to it.", param="model",
         request=_json({"model": "/etc/passwd", "messages": [{"role": "user", "content": "hi"}]})),
    Case("chat with no messages", "POST", "/v1/chat/completions", 400, "invalid_request",
         "~Invalid value for 'messages'", param="messages", request=_json({"model": "m", "messages": []})),
    Case("upload id that is a path", "POST", "/v1/uploads/..%2E/cancel", 404, "upload_not_found",
         "No such Upload object: ...", param="upload_id"),
    Case("permissions of a model that is not there", "POST",
         "/v1/fine_tuning/checkpoints/ft:x:y::z:ckpt-step-1/permissions", 404, "model_not_found",
         "The model `ft:x:y::z:ckpt-step-1` does not exist or you do not have access to it.",
         param="fine_tuned_model_checkpoint", request=_json({"project_ids": ["proj_hostile"]})),
    Case("method the route does not have", "PUT", "/v1/files", 405, None,
         "Unknown request URL. Please check the URL and method."),
    # -- multipart --------------------------------------------------------------------------------
    Case("multipart without the file", "POST", "/v1/files", 400, "invalid_request",
         "Missing required parameter: 'file'.", param="file",
         request={"data": {"purpose": "fine-tune"}, "files": {"other": ("a", b"b")}}),
    Case("multipart with an unknown purpose", "POST", "/v1/files", 400, "invalid_value",
         "~Invalid purpose 'steal'", param="purpose",
         request={"files": {"file": ("a.jsonl", b'{"a": 1}\n')}, "data": {"purpose": "steal"}}),
    Case("upload part over the part limit", "POST", "/v1/uploads/upload_x/parts", 413, "request_too_large",
         f"The request body is larger than the {128 * 1024 + 1024 * 1024} bytes this endpoint accepts.",
         request={"files": {"data": ("p", b"x" * (2 * 1024 * 1024))}}),
    # -- keys -------------------------------------------------------------------------------------
    Case("no key", "GET", "/v1/files", 401, "invalid_api_key", "~You didn't provide an API key",
         request={"headers": {"authorization": ""}}),
    Case("8 KB of garbage as the key", "GET", "/v1/files", 401, "invalid_api_key",
         "Incorrect API key provided: sk-***xxxx.", request={"headers": {"authorization": "Bearer sk-" + "x" * 8000}}),
    Case("basic auth instead of bearer", "GET", "/v1/files", 401, "invalid_api_key",
         "~You didn't provide an API key", request={"headers": {"authorization": "Basic dXNlcjpwYXNz"}}),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request(hostile_server: HostileServer, case: Case) -> None:
    with hostile_server.client() as http:
        response = http.request(case.method, case.path, **case.request)
    expect_error(response, case.status, case.code, case.message, case.param)


def _multipart(filename: bytes, content: bytes) -> dict[str, Any]:
    """A multipart upload with the file name's bytes exactly as given (clients would escape a NUL)."""
    boundary = b"hostileboundary"
    body = b"".join(
        [
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n',
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n',
            b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n--" + boundary + b"--\r\n",
        ]
    )
    return {"content": body, "headers": {"content-type": "multipart/form-data; boundary=hostileboundary"}}


def test_file_names_never_become_paths(hostile_server: HostileServer) -> None:
    names = {
        b"../../../etc/passwd.jsonl": "passwd.jsonl",
        b"..\\..\\windows\\win.ini.jsonl": "win.ini.jsonl",
        b"a\x00b.jsonl": "ab.jsonl",
        b"/dev/null\x00.jsonl": "null.jsonl",
        b"x" * 1000 + b".jsonl": "x" * 249 + ".jsonl",
    }
    with hostile_server.client() as http:
        for sent, stored in names.items():
            response = http.post("/v1/files", **_multipart(sent, b'{"a": 1}\n'))
            assert response.status_code == 200, (sent[:30], response.text)
            assert response.json()["filename"] == stored
        # A multipart header longer than the parser takes is refused as a whole.
        too_long = http.post("/v1/files", **_multipart(b"x" * 5000 + b".jsonl", b'{"a": 1}\n'))
        expect_error(too_long, 400, None, "Invalid multipart data.", None)
    files_dir = hostile_server.settings.files_dir
    assert all(p.name.startswith("file-") for p in files_dir.iterdir())
    assert not (hostile_server.settings.home / "etc").exists()


def test_the_server_kept_serving_its_neighbour(hostile_server: HostileServer) -> None:
    """Runs after the corpus (same module, same server): every neighbour call during it succeeded."""
    neighbour = hostile_server.neighbour
    assert neighbour.failures == []
    assert len(neighbour.statuses) >= 10 and set(neighbour.statuses) == {200}
    with hostile_server.client() as http:
        assert http.get("/health").status_code == 200
        assert http.get("/v1/files").status_code == 200
