"""Checkpoint permissions name a project of an organization: three organizations each have a project
called ``default``, and a checkpoint shared with one of them is seen, listed and served for that one
only. Through the official client; a bare project id is the owner's own organization's."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest
from fastapi import FastAPI
from openai import OpenAI
from starlette.testclient import TestClient

from openft.store.keys import KeyStore
from openft.store.rows import CheckpointRow

pytestmark = pytest.mark.integration
ASSETS = Path(__file__).parents[1] / "assets"


def _client(http: TestClient, keys: KeyStore, organization: str) -> OpenAI:
    key = keys.create(organization, "default")[1]
    return OpenAI(base_url="http://testserver/v1", api_key=key, http_client=http, max_retries=0)


def _checkpoint(app: FastAPI, owner: OpenAI) -> str:
    """A checkpoint of a job of ``owner``'s organization, as a worker records it."""
    train = owner.files.create(file=("t.jsonl", (ASSETS / "tiny_train.jsonl").read_bytes()), purpose="fine-tune")
    job = app.state.store.get_job(owner.fine_tuning.jobs.create(model="openft/tiny-chat", training_file=train.id).id)
    name = f"{job.model_name}:ckpt-step-3"
    app.state.store.add_checkpoint(
        CheckpointRow(
            id=f"ftckpt-{job.id[-8:]}3",
            job_id=job.id,
            organization_id=job.organization_id,
            created_at=int(time.time()),
            step_number=3,
            fine_tuned_model_checkpoint=name,
            metrics={"step": 3},
            adapter_path=f"jobs/{job.id}/checkpoints/step-3",
        )
    )
    return name


def _can_use(client: OpenAI, model: str) -> bool:
    """Whether ``model`` is listed and retrieved (both or neither); one it cannot use, chat refuses too."""
    listed = model in {m.id for m in client.models.list()}
    try:
        retrieved = client.models.retrieve(model).id == model
    except openai.NotFoundError as exc:
        assert exc.code == "model_not_found"
        retrieved = False
    if not retrieved:
        with pytest.raises(openai.NotFoundError) as refused:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
        assert refused.value.code == "model_not_found"
    assert listed == retrieved
    return retrieved


def test_a_project_id_names_a_project_of_one_organization(app: FastAPI, http: TestClient) -> None:
    keys: KeyStore = app.state.keys
    acme, globex, initech = (_client(http, keys, org) for org in ("org-acme", "org-globex", "org-initech"))
    ckpt = _checkpoint(app, acme)
    permissions = acme.fine_tuning.checkpoints.permissions

    own = permissions.create(ckpt, project_ids=["default"]).data
    assert [(p.project_id, p.organization_id) for p in own] == [("default", "org-acme")]  # type: ignore[attr-defined]
    assert not _can_use(globex, ckpt) and not _can_use(initech, ckpt)
    for call in (
        lambda: globex.fine_tuning.checkpoints.permissions.list(ckpt),
        lambda: globex.fine_tuning.checkpoints.permissions.create(ckpt, project_ids=["default"]),
        lambda: globex.fine_tuning.checkpoints.permissions.delete(own[0].id, fine_tuned_model_checkpoint=ckpt),
    ):
        with pytest.raises(openai.NotFoundError):
            call()

    shared = permissions.create(ckpt, project_ids=["org-globex/default", "org-acme/default"]).data
    assert [p.project_id for p in shared] == ["org-globex/default", "default"]
    assert [p.organization_id for p in shared] == ["org-globex", "org-acme"]  # type: ignore[attr-defined]
    assert shared[1].id == own[0].id  # the same project, named the long way: the same permission
    assert _can_use(globex, ckpt) and globex.models.retrieve(ckpt).owned_by == "org-acme"
    assert not _can_use(initech, ckpt)  # its `default` is another project

    assert [p.project_id for p in permissions.list(ckpt).data] == ["org-globex/default", "default"]
    assert [p.id for p in permissions.list(ckpt, project_id="default").data] == [own[0].id]
    assert [p.id for p in permissions.list(ckpt, project_id="org-globex/default").data] == [shared[0].id]
    assert permissions.list(ckpt, project_id="org-initech/default").data == []

    permissions.delete(shared[0].id, fine_tuned_model_checkpoint=ckpt)
    assert not _can_use(globex, ckpt)


def test_malformed_project_names_are_400s(app: FastAPI, http: TestClient) -> None:
    acme = _client(http, app.state.keys, "org-acme")
    ckpt = _checkpoint(app, acme)
    for project in ("a/b/c", "org-globex/", "/default", "org globex/default", "x" * 65, ""):
        with pytest.raises(openai.BadRequestError) as refused:
            acme.fine_tuning.checkpoints.permissions.create(ckpt, project_ids=[project])
        assert refused.value.param == "project_ids" and "organization_id/project_id" in refused.value.message
        with pytest.raises(openai.BadRequestError) as filtered:
            acme.fine_tuning.checkpoints.permissions.list(ckpt, project_id=project)
        assert filtered.value.param == "project_id", project
    assert acme.fine_tuning.checkpoints.permissions.list(ckpt).data == []
