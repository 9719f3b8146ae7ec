"""Minting of object ids and fine-tuned model names, in OpenAI's formats."""

from __future__ import annotations

import re
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def new_job_id() -> str:
    return f"ftjob-{_random(24)}"


def new_file_id() -> str:
    return f"file-{_random(24)}"


def new_event_id() -> str:
    return f"ftevent-{_random(24)}"


def new_checkpoint_id() -> str:
    return f"ftckpt-{_random(24)}"


def new_upload_id() -> str:
    return f"upload_{_random(24)}"


def new_upload_part_id() -> str:
    return f"part_{_random(24)}"


def new_permission_id() -> str:
    return f"cp_{_random(24)}"


def new_api_key_id() -> str:
    return f"key_{_random(24)}"


def new_completion_id() -> str:
    return f"chatcmpl-{_random(29)}"


def new_model_short_id() -> str:
    """The 8-character id at the end of a fine-tuned model name."""
    return _random(8)


def fine_tuned_model_name(base_model: str, organization: str, suffix: str | None, short_id: str) -> str:
    """``ft:{base}:{org}:{suffix}:{id}``; an empty suffix gives ``::`` as in OpenAI's names."""
    return f"ft:{base_model}:{organization}:{suffix or ''}:{short_id}"


def checkpoint_model_name(fine_tuned_model: str, step: int) -> str:
    return f"{fine_tuned_model}:ckpt-step-{step}"


def organization_slug(organization_id: str) -> str:
    """The organization part of a model name: ``org-personal`` -> ``personal``."""
    return organization_id.removeprefix("org-")


_ID_PATTERNS = {
    "job": re.compile(r"^ftjob-[A-Za-z0-9]{1,64}$"),
    "file": re.compile(r"^file-[A-Za-z0-9]{1,64}$"),
    "event": re.compile(r"^ftevent-[A-Za-z0-9]{1,64}$"),
    "checkpoint": re.compile(r"^ftckpt-[A-Za-z0-9]{1,64}$"),
    "upload": re.compile(r"^upload_[A-Za-z0-9]{1,64}$"),
    "upload_part": re.compile(r"^part_[A-Za-z0-9]{1,64}$"),
    "permission": re.compile(r"^cp_[A-Za-z0-9]{1,64}$"),
    "api_key": re.compile(r"^key_[A-Za-z0-9]{1,64}$"),
}


def is_valid_id(kind: str, value: str) -> bool:
    """Whether ``value`` has the shape of an id of ``kind`` (job, file, event, checkpoint)."""
    return bool(_ID_PATTERNS[kind].match(value))
