"""Two organizations, each with its own API key, through the official client: each sees only its own
objects, another's ids are 404 (never 403), and requests need a valid key once keys exist."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest
from fastapi import FastAPI
from openai import OpenAI
from starlette.testclient import TestClient

from openft.jobs import status as st
from openft.jobs.transitions import transition
from openft.store.keys import KeyStore
from openft.store.rows import CheckpointRow, JobRow

pytestmark = pytest.mark.integration
ASSETS = Path(__file__).parents[1] / "assets"


def _client(http: TestClient, key: str) -> OpenAI:
    return OpenAI(base_url="http://testserver/v1", api_key=key, http_client=http, max_retries=0)


@pytest.fixture
def keys(app: FastAPI) -> KeyStore:
    return app.state.keys  # type: ignore[no-any-return]


@pytest.fixture
def acme(http: TestClient, keys: KeyStore) -> OpenAI:
    return _client(http, keys.create("org-acme", "proj_acme", "acme ci")[1])


@pytest.fixture
def globex(http: TestClient, keys: KeyStore) -> OpenAI:
    return _client(http, keys.create("org-globex", "proj_globex")[1])


def _train_file(client: OpenAI) -> str:
    return client.files.create(file=("t.jsonl", (ASSETS / "tiny_train.jsonl").read_bytes()), purpose="fine-tune").id


def _succeed(app: FastAPI, job_id: str, steps: tuple[int, ...] = (3, 6)) -> JobRow:
    """Give a job the end a worker would give it: succeeded, with its model and checkpoints."""
    store = app.state.store
    job = store.get_job(job_id)
    transition(store, job_id, st.QUEUED, expect=st.VALIDATING)
    transition(store, job_id, st.RUNNING, expect=st.QUEUED)
    transition(
        store, job_id, st.SUCCEEDED, expect=st.RUNNING, fine_tuned_model=job.model_name, finished_at=int(time.time())
    )
    for step in steps:
        store.add_checkpoint(
            CheckpointRow(
                id=f"ftckpt-{job_id[-8:]}{step}",
                job_id=job_id,
                organization_id=job.organization_id,
                created_at=int(time.time()),
                step_number=step,
                fine_tuned_model_checkpoint=f"{job.model_name}:ckpt-step-{step}",
                metrics={"step": step},
                adapter_path=f"jobs/{job_id}/checkpoints/step-{step}",
            )
        )
    return store.get_job(job_id)  # type: ignore[no-any-return]


def test_keys_are_required_once_one_exists(http: TestClient, keys: KeyStore) -> None:
    anyone = _client(http, "whatever")
    assert list(anyone.files.list()) == []  # no keys yet: the local single-user default
    row, key = keys.create("org-acme")
    assert key.startswith("sk-") and len(key) > 40 and row.key_hash != key and key not in row.redacted
    with pytest.raises(openai.AuthenticationError) as err:
        anyone.files.list()
    assert err.value.status_code == 401 and err.value.code == "invalid_api_key"
    assert err.value.type == "invalid_request_error" and "Incorrect API key provided" in err.value.message
    missing = http.get("/v1/files")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    assert "didn't provide an API key" in missing.json()["error"]["message"]
    assert list(_client(http, key).files.list()) == []
    keys.revoke(row.id)
    with pytest.raises(openai.AuthenticationError):
        _client(http, key).files.list()
    assert http.get("/health").status_code == 200  # outside /v1: no key needed


def test_files_are_invisible_across_organizations(acme: OpenAI, globex: OpenAI) -> None:
    mine = acme.files.create(file=("a.jsonl", b'{"a": 1}\n'), purpose="fine-tune")
    theirs = globex.files.create(file=("g.jsonl", b'{"g": 1}\n'), purpose="fine-tune")
    assert [f.id for f in acme.files.list()] == [mine.id]
    assert [f.id for f in globex.files.list()] == [theirs.id]
    for call in (globex.files.retrieve, globex.files.content, globex.files.delete):
        with pytest.raises(openai.NotFoundError) as err:
            call(mine.id)
        assert err.value.code == "file_not_found"
    assert acme.files.retrieve(mine.id).id == mine.id  # still there after the other's delete attempt


def test_jobs_events_checkpoints_and_models_are_invisible_across_organizations(
    app: FastAPI, acme: OpenAI, globex: OpenAI
) -> None:
    job = acme.fine_tuning.jobs.create(model="openft/tiny-chat", training_file=_train_file(acme), suffix="a")
    assert job.organization_id == "org-acme" and ":acme:a:" in (_succeed(app, job.id).fine_tuned_model or "")
    model = acme.fine_tuning.jobs.retrieve(job.id).fine_tuned_model
    assert model is not None
    assert [j.id for j in acme.fine_tuning.jobs.list()] == [job.id]
    assert list(globex.fine_tuning.jobs.list()) == []
    for call in (
        globex.fine_tuning.jobs.retrieve,
        globex.fine_tuning.jobs.cancel,
        globex.fine_tuning.jobs.list_events,
        globex.fine_tuning.jobs.checkpoints.list,
    ):
        with pytest.raises(openai.NotFoundError) as err:
            call(job.id)
        assert err.value.code == "fine_tuning_job_not_found"
    assert len(list(acme.fine_tuning.jobs.checkpoints.list(job.id))) == 2
    assert len(list(acme.fine_tuning.jobs.list_events(job.id))) >= 2

    acme_models = {m.id for m in acme.models.list()}
    globex_models = {m.id for m in globex.models.list()}
    assert {model, f"{model}:ckpt-step-3"} <= acme_models and not any(m.startswith("ft:") for m in globex_models)
    for call in (globex.models.retrieve, globex.models.delete):
        with pytest.raises(openai.NotFoundError) as err:
            call(model)
        assert err.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        globex.chat.completions.create(model=f"{model}:ckpt-step-3", messages=[{"role": "user", "content": "hi"}])
    # Another organization's file cannot train a job either (it does not exist for them).
    with pytest.raises(openai.BadRequestError) as err2:
        globex.fine_tuning.jobs.create(model="openft/tiny-chat", training_file=job.training_file)
    assert err2.value.param == "training_file"


def test_checkpoint_permission_round_trip(app: FastAPI, acme: OpenAI, globex: OpenAI) -> None:
    job = acme.fine_tuning.jobs.create(model="openft/tiny-chat", training_file=_train_file(acme))
    ckpt = f"{_succeed(app, job.id).fine_tuned_model}:ckpt-step-3"
    permissions = acme.fine_tuning.checkpoints.permissions

    with pytest.raises(openai.NotFoundError):  # only the owner manages permissions
        globex.fine_tuning.checkpoints.permissions.create(ckpt, project_ids=["proj_globex"])
    globex_project = "org-globex/proj_globex"  # another organization's project is named with it
    created = permissions.create(ckpt, project_ids=[globex_project, "proj_other"])
    assert [p.project_id for p in created.data] == [globex_project, "proj_other"]
    assert all(p.id.startswith("cp_") and p.object == "checkpoint.permission" for p in created.data)
    listed = permissions.list(ckpt)
    assert [p.project_id for p in listed.data] == ["proj_other", globex_project] and not listed.has_more
    assert [p.project_id for p in permissions.list(ckpt, project_id=globex_project).data] == [globex_project]
    assert [p.project_id for p in permissions.list(ckpt, order="ascending", limit=1).data] == [globex_project]
    assert [p.project_id for p in permissions.list(ckpt, order="ascending", limit=1)] == [globex_project, "proj_other"]

    shared = globex.models.retrieve(ckpt)
    assert shared.id == ckpt and shared.owned_by == "org-acme"
    assert ckpt in {m.id for m in globex.models.list()}
    assert app.state.registry.resolve(_principal(app, globex), ckpt).adapter_dir  # usable for chat
    with pytest.raises(openai.NotFoundError):  # the model itself was not shared, only this checkpoint
        globex.models.retrieve(ckpt.rsplit(":", 1)[0])
    with pytest.raises(openai.NotFoundError):  # a shared model is used, not owned
        globex.models.delete(ckpt)

    grant = next(p for p in created.data if p.project_id == globex_project)
    deleted = permissions.delete(grant.id, fine_tuned_model_checkpoint=ckpt)
    assert deleted.deleted and deleted.id == grant.id and deleted.object == "checkpoint.permission"
    with pytest.raises(openai.NotFoundError):
        globex.models.retrieve(ckpt)
    assert ckpt not in {m.id for m in globex.models.list()}
    with pytest.raises(openai.NotFoundError):
        permissions.delete(grant.id, fine_tuned_model_checkpoint=ckpt)


def _principal(app: FastAPI, client: OpenAI):  # type: ignore[no-untyped-def]
    from openft.api.auth import resolve_principal

    return resolve_principal(app.state.keys, app.state.settings, f"Bearer {client.api_key}")
