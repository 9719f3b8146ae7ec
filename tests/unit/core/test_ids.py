"""Id and model-name formats."""

from __future__ import annotations

import re

from openft import ids


def test_object_ids_have_openai_prefixes_and_are_unique() -> None:
    for make, prefix, kind in [
        (ids.new_job_id, "ftjob-", "job"),
        (ids.new_file_id, "file-", "file"),
        (ids.new_event_id, "ftevent-", "event"),
        (ids.new_checkpoint_id, "ftckpt-", "checkpoint"),
    ]:
        values = {make() for _ in range(200)}
        assert len(values) == 200
        assert all(v.startswith(prefix) and ids.is_valid_id(kind, v) for v in values)
    assert not ids.is_valid_id("job", "ftjob-../../etc")
    assert not ids.is_valid_id("file", "ftjob-abc")


def test_fine_tuned_model_names() -> None:
    short = ids.new_model_short_id()
    assert re.fullmatch(r"[A-Za-z0-9]{8}", short)
    name = ids.fine_tuned_model_name("openft/tiny-chat", "personal", "support", short)
    assert name == f"ft:openft/tiny-chat:personal:support:{short}"
    assert ids.fine_tuned_model_name("m", "org", None, "abcdefgh") == "ft:m:org::abcdefgh"
    assert ids.checkpoint_model_name(name, 12) == f"{name}:ckpt-step-12"
    assert ids.organization_slug("org-personal") == "personal"
