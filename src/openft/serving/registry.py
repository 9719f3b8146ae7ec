"""The model registry: which model ids exist for an organization and what each one is.

A model id is a catalog base model, a fine-tuned model (``ft:...``) or one of its checkpoints
(``ft:...:ckpt-step-N``). The registry resolves an id to a :class:`ServedModel` (base + adapter
directory) for the inference backend, and lists them all for ``/v1/models``. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

from openft.errors import InvalidRequest, ModelNotFound
from openft.models.catalog import find_base_model, list_base_models
from openft.serving.backend import ServedModel
from openft.settings import Settings
from openft.store import Store
from openft.tenancy import Principal


@dataclass(frozen=True)
class ModelEntry:
    id: str
    created: int
    owned_by: str
    parent: str | None


def _not_found(model_id: str) -> ModelNotFound:
    return ModelNotFound(f"The model `{model_id}` does not exist or you do not have access to it.", param="model")


class ModelRegistry:
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store

    def resolve(self, principal: Principal, model_id: str) -> ServedModel:
        """The base and adapter behind ``model_id``.

        Raises:
            ModelNotFound: unknown id, another organization's model, or a deleted one.
        """
        registered = self.store.local_models()
        if not model_id.startswith("ft:"):
            base = find_base_model(model_id, registered)
            if base is None:
                raise _not_found(model_id)
            return ServedModel(id=model_id, base=base, adapter_dir=None)
        job = self.store.find_job_by_model(model_id)
        if job is not None and job.organization_id == principal.organization_id:
            adapter = self.settings.jobs_dir / job.id / "adapter"
            base = find_base_model(job.model, registered)
            if base is None:
                raise _not_found(model_id)
            return ServedModel(id=model_id, base=base, adapter_dir=str(adapter))
        ckpt = self.store.get_checkpoint_by_model(model_id)
        if ckpt is not None and ckpt.organization_id == principal.organization_id:
            parent = self.store.get_job(ckpt.job_id)
            base = find_base_model(parent.model, registered)
            if base is None or parent.model_deleted:
                raise _not_found(model_id)
            return ServedModel(id=model_id, base=base, adapter_dir=str(self.settings.home / ckpt.adapter_path))
        raise _not_found(model_id)

    def list(self, principal: Principal) -> list[ModelEntry]:
        entries = [
            ModelEntry(id=m.id, created=m.created, owned_by=m.owned_by, parent=None)
            for m in list_base_models(self.store.local_models())
        ]
        owner = principal.organization_id
        for job in self.store.list_fine_tuned_jobs(owner):
            assert job.fine_tuned_model is not None
            entries.append(ModelEntry(id=job.fine_tuned_model, created=job.finished_at or job.created_at,
                                      owned_by=owner, parent=job.model))
        for ckpt in self.store.list_organization_checkpoints(owner):
            entries.append(ModelEntry(id=ckpt.fine_tuned_model_checkpoint, created=ckpt.created_at,
                                      owned_by=owner, parent=ckpt.fine_tuned_model_checkpoint.rsplit(":", 1)[0]))
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
            raise _not_found(model_id)
        self.store.update_job(job.id, model_deleted=True)
        return job.model
