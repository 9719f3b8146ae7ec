"""The model registry: which model ids exist for an organization and what each one is.

A model id is a catalog base model, a fine-tuned model (``ft:...``) or one of its checkpoints
(``ft:...:ckpt-step-N``). The registry resolves an id to a :class:`ServedModel` (base + adapter
directory) for the inference backend, and lists them all for ``/v1/models``. No torch here.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass

from openft.errors import InvalidRequest, ModelNotFound
from openft.jobs import lineage
from openft.models.catalog import find_base_model, list_base_models
from openft.serving.backend import ServedModel
from openft.settings import Settings
from openft.store import Store
from openft.store.permissions import PermissionStore
from openft.tenancy import Principal


@dataclass(frozen=True)
class ModelEntry:
    id: str
    created: int
    owned_by: str
    parent: str | None
    root: str | None = None
    """The root base model of a fine-tuned model's chain (``jobs/lineage.py``); None: ``parent`` or itself."""


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
        return lineage.may_use(self.permissions, principal, owner, model_id)

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
        # A model made from a fine-tuned model rests on that model's foundation (jobs/lineage.py).
        job = self.store.find_job_by_model(model_id)
        if job is None:
            ckpt = self.store.get_checkpoint_by_model(model_id)
            job = self.store.get_job(ckpt.job_id) if ckpt is not None else None
        if job is None or job.model_deleted or not self.may_use(principal, job.organization_id, model_id):
            raise _not_found(model_id)
        served = lineage.weights_of(self.store, self.settings, job, model_id, registered)
        if served is None:
            raise _not_found(model_id)
        return served

    def list(self, principal: Principal) -> list[ModelEntry]:
        entries = [
            ModelEntry(id=m.id, created=m.created, owned_by=m.owned_by, parent=None)
            for m in list_base_models(self.store.local_models())
        ]
        owner = principal.organization_id
        roots: dict[str, str] = {}
        for job in self.store.list_fine_tuned_jobs(owner):
            assert job.fine_tuned_model is not None
            roots[job.id] = job.base_model or job.model
            created = job.finished_at or job.created_at
            entries.append(
                ModelEntry(
                    id=job.fine_tuned_model, created=created, owned_by=owner, parent=job.model, root=roots[job.id]
                )
            )
        for ckpt in self.store.list_organization_checkpoints(owner):
            entries.append(
                ModelEntry(
                    id=ckpt.fine_tuned_model_checkpoint,
                    created=ckpt.created_at,
                    owned_by=owner,
                    parent=ckpt.fine_tuned_model_checkpoint.rsplit(":", 1)[0],
                    root=roots.get(ckpt.job_id),
                )
            )
        if principal.project_id is not None:
            entries.extend(self._shared_with(principal))
        return entries

    def _shared_with(self, principal: Principal) -> builtins.list[ModelEntry]:
        """Other organizations' models shared with the caller's project (still existing ones)."""
        assert principal.project_id is not None
        entries: builtins.list[ModelEntry] = []
        own = principal.organization_id
        for grant in self.permissions.shared_with(own, principal.project_id):
            model = grant.fine_tuned_model_checkpoint
            job = self.store.find_job_by_model(model)
            if job is not None:
                if job.organization_id != own:  # the organization's own models are listed already
                    created = job.finished_at or job.created_at
                    root = job.base_model or job.model
                    entries.append(
                        ModelEntry(id=model, created=created, owned_by=job.organization_id, parent=job.model, root=root)
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

        The model is hidden, its files stay: models fine-tuned from it may rest on them (``jobs/lineage.py``).

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
