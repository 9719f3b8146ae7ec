"""The model registry: which model ids exist for an organization and what each one is.

A model id is a catalog base model, a fine-tuned model (``ft:...``) or one of its checkpoints
(``ft:...:ckpt-step-N``). The registry resolves an id to a :class:`ServedModel` (base + adapter
directory) for the inference backend, and lists them all for ``/v1/models``. No torch here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from openft.errors import InvalidRequest, ModelNotFound
from openft.models.catalog import BaseModel, find_base_model, list_base_models
from openft.serving.backend import ServedModel
from openft.settings import Settings
from openft.store import Store
from openft.store.blobs import BlobStore
from openft.store.permissions import PermissionStore
from openft.tenancy import Principal


@dataclass(frozen=True)
class ModelEntry:
    id: str
    created: int
    owned_by: str
    parent: str | None


def _served(model_id: str, base: BaseModel, weights: Path, full_model: Path | None = None) -> ServedModel:
    """A LoRA adapter on ``base``, or, when the job saved a whole model (``config.json`` and no
    ``adapter_config.json``), that model served as its own base."""
    for directory in (weights, full_model):
        if directory is not None and (directory / "config.json").is_file():
            if not (directory / "adapter_config.json").is_file():
                own = dataclasses.replace(base, id=model_id, source="local", path=str(directory))
                return ServedModel(id=model_id, base=own, adapter_dir=None)
    return ServedModel(id=model_id, base=base, adapter_dir=str(weights))


def _not_found(model_id: str) -> ModelNotFound:
    return ModelNotFound(f"The model `{model_id}` does not exist or you do not have access to it.", param="model")


class ModelRegistry:
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self.permissions = PermissionStore(store)

    def may_use(self, principal: Principal, owner: str, model_id: str) -> bool:
        """The owner's organization uses its models; another organization's project only through a checkpoint
        permission naming that project of that organization."""
        if owner == principal.organization_id:
            return True
        project = principal.project_id
        return project is not None and self.permissions.allows(model_id, principal.organization_id, project)

    def resolve(self, principal: Principal, model_id: str) -> ServedModel:
        """The base and adapter behind ``model_id``.

        Raises:
            ModelNotFound: unknown id, a deleted model, or another organization's model not shared with
                the caller's project.
        """
        registered = self.store.local_models()
        if not model_id.startswith("ft:"):
            base = find_base_model(model_id, registered)
            if base is None:
                raise _not_found(model_id)
            return ServedModel(id=model_id, base=base, adapter_dir=None)
        job = self.store.find_job_by_model(model_id)
        if job is not None and self.may_use(principal, job.organization_id, model_id):
            adapter = BlobStore(self.settings).fetch(f"jobs/{job.id}/adapter")  # from OPENFT_STORAGE_URL if set
            base = find_base_model(job.model, registered)
            if base is None:
                raise _not_found(model_id)
            return _served(model_id, base, adapter, self.settings.jobs_dir / job.id / "model")
        ckpt = self.store.get_checkpoint_by_model(model_id)
        if ckpt is not None and self.may_use(principal, ckpt.organization_id, model_id):
            parent = self.store.get_job(ckpt.job_id)
            base = find_base_model(parent.model, registered)
            if base is None or parent.model_deleted:
                raise _not_found(model_id)
            return _served(model_id, base, BlobStore(self.settings).fetch(ckpt.adapter_path))
        raise _not_found(model_id)

    def list(self, principal: Principal) -> list[ModelEntry]:
        entries = [
            ModelEntry(id=m.id, created=m.created, owned_by=m.owned_by, parent=None)
            for m in list_base_models(self.store.local_models())
        ]
        owner = principal.organization_id
        for job in self.store.list_fine_tuned_jobs(owner):
            assert job.fine_tuned_model is not None
            entries.append(
                ModelEntry(
                    id=job.fine_tuned_model, created=job.finished_at or job.created_at, owned_by=owner, parent=job.model
                )
            )
        for ckpt in self.store.list_organization_checkpoints(owner):
            entries.append(
                ModelEntry(
                    id=ckpt.fine_tuned_model_checkpoint,
                    created=ckpt.created_at,
                    owned_by=owner,
                    parent=ckpt.fine_tuned_model_checkpoint.rsplit(":", 1)[0],
                )
            )
        if principal.project_id is not None:
            entries.extend(self._shared_with(principal))
        return entries

    def _shared_with(self, principal: Principal) -> list[ModelEntry]:
        """Other organizations' models shared with the caller's project (still existing ones)."""
        assert principal.project_id is not None
        entries: list[ModelEntry] = []
        own = principal.organization_id
        for grant in self.permissions.shared_with(own, principal.project_id):
            model = grant.fine_tuned_model_checkpoint
            job = self.store.find_job_by_model(model)
            if job is not None:
                if job.organization_id != own:  # the organization's own models are listed already
                    created = job.finished_at or job.created_at
                    entries.append(
                        ModelEntry(id=model, created=created, owned_by=job.organization_id, parent=job.model)
                    )
                continue
            ckpt = self.store.get_checkpoint_by_model(model)
            if ckpt is not None and ckpt.organization_id != own and not self.store.get_job(ckpt.job_id).model_deleted:
                parent = model.rsplit(":", 1)[0]
                entries.append(
                    ModelEntry(id=model, created=ckpt.created_at, owned_by=ckpt.organization_id, parent=parent)
                )
        return entries

    def get(self, principal: Principal, model_id: str) -> ModelEntry:
        for entry in self.list(principal):
            if entry.id == model_id:
                return entry
        self.resolve(principal, model_id)  # raises ModelNotFound with the right message
        raise _not_found(model_id)

    def delete(self, principal: Principal, model_id: str) -> str:
        """Delete a fine-tuned model (its checkpoints go with it); base models cannot be deleted.

        Raises:
            InvalidRequest: ``model_id`` is a base model.
            ModelNotFound: no such fine-tuned model for this organization.
        """
        if not model_id.startswith("ft:"):
            self.resolve(principal, model_id)
            raise InvalidRequest("Only fine-tuned models can be deleted.", param="model", code="invalid_model")
        job = self.store.find_job_by_model(model_id)
        if job is None or job.organization_id != principal.organization_id:
            ckpt = self.store.get_checkpoint_by_model(model_id)
            if ckpt is not None and ckpt.organization_id == principal.organization_id:
                parent = model_id.rsplit(":", 1)[0]
                raise InvalidRequest(
                    f"`{model_id}` is a checkpoint; checkpoints are deleted with their fine-tuned model `{parent}`.",
                    param="model",
                    code="invalid_model",
                )
            raise _not_found(model_id)
        self.store.update_job(job.id, model_deleted=True)
        return job.model
