"""The one exception tree of openft, rendered once (in ``api/errors.py``) as OpenAI's error envelope.

::

    OpenFTError                         500 server_error
    ├── InsufficientStorage             507 server_error / insufficient_storage (disk full)
    ├── ServiceUnavailable              503 server_error / service_unavailable (a shared dependency is down)
    ├── InvalidRequest                  400 invalid_request_error
    │   ├── InvalidFileFormat           400 (upload is not JSONL; names the line)
    │   ├── InvalidJobState             400 (e.g. cancelling a finished job)
    │   ├── FileTooLarge                400
    │   └── RequestTooLarge             413 (body over the endpoint's limit, refused before it is read)
    ├── AuthenticationFailed            401 invalid_request_error / invalid_api_key
    ├── RateLimitExceeded               429 requests / rate_limit_exceeded (with Retry-After)
    └── NotFound                        404 invalid_request_error
        ├── FileNotFound
        ├── JobNotFound
        └── ModelNotFound               code model_not_found

A subclass's docstring is its default message. Statuses never use 409 or 5xx for a user's mistake:
the official clients retry those.
"""

from __future__ import annotations

from typing import ClassVar


class OpenFTError(Exception):
    """The server could not complete the request."""

    http_status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(self, message: str | None = None, *, param: str | None = None, code: str | None = None):
        self.message = message or (self.__doc__ or "").strip()
        self.param = param
        self.code = code if code is not None else self.default_code
        super().__init__(self.message)

    def to_envelope(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}


class InvalidRequest(OpenFTError):
    """The request is invalid."""

    http_status = 400
    error_type = "invalid_request_error"


class InvalidFileFormat(InvalidRequest):
    """Expected file to have JSONL format, where every line is a JSON dictionary."""

    default_code = "invalid_file_format"


class FileTooLarge(InvalidRequest):
    """The file is larger than this server accepts."""

    default_code = "file_too_large"


class InvalidJobState(InvalidRequest):
    """The job is not in a state that allows this operation."""

    default_code = "invalid_job_state"


class RequestTooLarge(InvalidRequest):
    """The request body is larger than this endpoint accepts."""

    http_status = 413
    default_code = "request_too_large"


class RateLimitExceeded(OpenFTError):
    """Rate limit reached; please try again later."""

    http_status = 429
    error_type = "requests"
    default_code = "rate_limit_exceeded"


class InsufficientStorage(OpenFTError):
    """The server is out of disk space; nothing was stored. Retry later."""

    http_status = 507
    default_code = "insufficient_storage"


class ServiceUnavailable(OpenFTError):
    """The server cannot check this request right now (a storage it depends on is unreachable). Retry later."""

    http_status = 503
    default_code = "service_unavailable"


class AuthenticationFailed(OpenFTError):
    """Incorrect API key provided."""

    http_status = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class NotFound(OpenFTError):
    """The requested object does not exist."""

    http_status = 404
    error_type = "invalid_request_error"


class FileNotFound(NotFound):
    """No such File object."""

    default_code = "file_not_found"


class JobNotFound(NotFound):
    """No such fine-tuning job."""

    default_code = "fine_tuning_job_not_found"


class ModelNotFound(NotFound):
    """The model does not exist or you do not have access to it."""

    default_code = "model_not_found"
