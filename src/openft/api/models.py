"""/v1/models: base models, fine-tuned models and their checkpoints (ids contain colons and slashes)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from openft.api.deps import PrincipalDep, RegistryDep
from openft.serving.registry import ModelEntry
from openft.types.model import Model, ModelDeleted, ModelList

router = APIRouter(prefix="/v1/models", tags=["models"])


def model_to_wire(entry: ModelEntry) -> Model:
    root = entry.root or entry.parent or entry.id
    return Model(id=entry.id, created=entry.created, owned_by=entry.owned_by, parent=entry.parent, root=root)


@router.get("", response_model=ModelList)
def list_models(principal: PrincipalDep, registry: RegistryDep) -> ModelList:
    return ModelList(data=[model_to_wire(e) for e in registry.list(principal)])


@router.get("/{model:path}", response_model=Model)
def retrieve_model(principal: PrincipalDep, registry: RegistryDep, model: str) -> Model:
    return model_to_wire(registry.get(principal, model))


@router.delete("/{model:path}", response_model=ModelDeleted)
def delete_model(request: Request, principal: PrincipalDep, registry: RegistryDep, model: str) -> ModelDeleted:
    registry.delete(principal, model)
    backend = request.app.state.backend_if_loaded()
    if backend is not None:
        backend.unload(model)
    return ModelDeleted(id=model, deleted=True)
