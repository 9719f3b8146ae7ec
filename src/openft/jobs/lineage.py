"""Model lineage: a job may start from a fine-tuned model or one of its checkpoints (no torch here).

A job's ``model`` is what the caller passed: a base model, ``ft:...`` or ``ft:...:ckpt-step-N``. When it
is a fine-tuned model, the job row records the job that made it (``parent_job_id``) and the root base
of the chain (``base_model``), which names the new model (``ft:{root}:{org}:{suffix}:{id}``, as OpenAI
names a model fine-tuned from a fine-tuned model).

What the weights of a model are, and what a child trains over:

* a LoRA model is an adapter over its *foundation*: the root base, or the whole model of the nearest
  full fine-tune up the chain. A LoRA child copies its LoRA parent's adapter as its initial adapter
  (same rank, alpha and target modules) and trains it on, so the child is again one adapter over the
  same foundation: served and exported like any other, batched with its siblings, and independent of
  the parent's files;
* a full fine-tune is a whole model; a full child of a LoRA parent starts from the parent merged into
  its foundation, a LoRA child of a full parent trains a fresh adapter over the parent's whole model.

Deleting a model only hides it (``model_deleted``): its files stay, so a child whose foundation is a
deleted full fine-tune keeps answering, and ``parent_job_id`` still finds that parent.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from openft.errors import InvalidRequest, ModelNotFound
from openft.models.catalog import BaseModel, find_base_model
from openft.serving.backend import ServedModel
from openft.settings import Settings
from openft.store import Store
from openft.store.blobs import BlobStore
from openft.store.permissions import PermissionStore
from openft.store.rows import CheckpointRow, JobRow
from openft.tenancy import Principal

LORA_SHAPE = (("lora_rank", "r"), ("lora_alpha", "lora_alpha"), ("target_modules", "target_modules"))
"""LoRA options a child continuing an adapter inherits: (``method.<type>.openft`` name, adapter_config key)."""


@dataclass(frozen=True)
class Parent:
    """The fine-tuned model (or checkpoint) a new job starts from."""

    job: JobRow
    """The job that made the model."""
    checkpoint: CheckpointRow | None
    """The checkpoint, when ``model`` names one."""
    root: str
    """The root base model of the chain."""
    weights: ServedModel
    """Its weights: an adapter over its foundation, or a whole model."""


def not_found(model_id: str) -> ModelNotFound:
    return ModelNotFound(f"The model `{model_id}` does not exist or you do not have access to it.", param="model")


def may_use(permissions: PermissionStore, principal: Principal, owner: str, model_id: str) -> bool:
    """The owner's organization uses its models; another organization's project only through a checkpoint
    permission naming that project of that organization."""
    if owner == principal.organization_id:
        return True
    project = principal.project_id
    return project is not None and permissions.allows(model_id, principal.organization_id, project)


def served_model(model_id: str, base: BaseModel, weights: Path, full_model: Path | None = None) -> ServedModel:
    """A LoRA adapter on ``base``, or, when the job saved a whole model (``config.json`` and no
    ``adapter_config.json``), that model served as its own base."""
    for directory in (weights, full_model):
        if directory is not None and (directory / "config.json").is_file():
            if not (directory / "adapter_config.json").is_file():
                own = dataclasses.replace(base, id=model_id, source="local", path=str(directory))
                return ServedModel(id=model_id, base=own, adapter_dir=None)
    return ServedModel(id=model_id, base=base, adapter_dir=str(weights))


def starting_point(store: Store, settings: Settings, principal: Principal, model_id: str) -> Parent | None:
    """The fine-tuned model or checkpoint a job create request's ``model`` names; None for anything else.

    Raises:
        ModelNotFound: ``ft:...`` that is unknown, deleted, another organization's and not shared with the
            caller's project, or whose weights are gone.
    """
    if not model_id.startswith("ft:"):
        return None
    job = store.find_job_by_model(model_id)  # succeeded and not deleted
    checkpoint = None
    if job is None:
        checkpoint = store.get_checkpoint_by_model(model_id)
        if checkpoint is not None:
            job = store.get_job(checkpoint.job_id)
            if job.model_deleted:
                job = None
    if job is None or not may_use(PermissionStore(store), principal, job.organization_id, model_id):
        raise not_found(model_id)
    weights = weights_of(store, settings, job, model_id, store.local_models())
    if weights is None or not Path(weights.adapter_dir or weights.base.path or "").is_dir():
        raise not_found(model_id)
    return Parent(job=job, checkpoint=checkpoint, root=job.base_model or job.model, weights=weights)


def foundation(store: Store, settings: Settings, job: JobRow, registered: dict[str, str]) -> BaseModel | None:
    """The weights ``job`` trains over: its base model, or what its parent's weights rest on (see the module
    docstring); None when the base model is no longer in the catalog."""
    if job.parent_job_id is None:
        return find_base_model(job.model, registered)
    parent = weights_of(store, settings, store.get_job(job.parent_job_id), job.model, registered)
    return parent.base if parent is not None else None


def weights_of(
    store: Store, settings: Settings, job: JobRow, model_id: str, registered: dict[str, str]
) -> ServedModel | None:
    """The weights of ``model_id``, the fine-tuned model of ``job`` or one of its checkpoints, deleted or not.

    Returns:
        Its foundation and adapter directory (or its whole model as its own base); None when its
        foundation is gone or ``model_id`` is not ``job``'s.
    """
    base = foundation(store, settings, job, registered)
    if base is None:
        return None
    blobs = BlobStore(settings)  # fetched from OPENFT_STORAGE_URL when one is set
    if model_id == job.model_name and job.fine_tuned_model is not None:
        return served_model(model_id, base, blobs.fetch(f"jobs/{job.id}/adapter"), settings.jobs_dir / job.id / "model")
    checkpoint = store.get_checkpoint_by_model(model_id)
    if checkpoint is None or checkpoint.job_id != job.id:
        return None
    return served_model(model_id, base, blobs.fetch(checkpoint.adapter_path))


def parent_adapter_shape(adapter_dir: Path) -> dict[str, object]:
    """The LoRA shape of an adapter (``method.<type>.openft`` names), from its ``adapter_config.json``."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    shape: dict[str, object] = {}
    for option, key in LORA_SHAPE:
        value = config.get(key)
        if isinstance(value, list | set | tuple):
            value = sorted(value)
        if value is not None:
            shape[option] = value
    return shape


def check_continuation(method: dict[str, object], parent: ServedModel) -> None:
    """Refuse LoRA options that differ from a LoRA parent's: a LoRA child continues the parent's adapter.

    Raises:
        InvalidRequest: ``method.<type>.openft`` asks for another rank, alpha or target modules.
    """
    kind = str(method["type"])
    section = method.get(kind)
    options = (section.get("openft") if isinstance(section, dict) else None) or {}
    if parent.adapter_dir is None or (options.get("training_type") or "lora") != "lora":
        return
    shape = parent_adapter_shape(Path(parent.adapter_dir))
    for option, _ in LORA_SHAPE:
        asked = options.get(option)
        if asked is None or option not in shape:
            continue
        if (sorted(asked) if isinstance(asked, list) else asked) != shape[option]:
            raise InvalidRequest(
                f"A LoRA job continues its LoRA parent's adapter, whose {option} is {shape[option]}; "
                f"omit {option} or pass the same value (or use training_type 'full').",
                param=f"method.{kind}.openft.{option}",
            )


def training_start(store: Store, settings: Settings, job: JobRow) -> ServedModel | None:
    """The weights ``job`` starts from: its base model, or its parent's (an adapter over the parent's
    foundation, or the parent's whole model); None when they are gone."""
    registered = store.local_models()
    if job.parent_job_id is None:
        base = find_base_model(job.model, registered)
        return ServedModel(id=job.model, base=base) if base is not None else None
    return weights_of(store, settings, store.get_job(job.parent_job_id), job.model, registered)


def continued_lora_options(start: ServedModel, training_type: str) -> dict[str, object]:
    """The spec fields of a run that starts from ``start``: the adapter to continue or merge, and for a
    LoRA run the parent adapter's shape (``TrainingSpec`` names)."""
    if start.adapter_dir is None:
        return {}
    out: dict[str, object] = {"init_adapter": start.adapter_dir}
    if training_type == "lora":
        shape = parent_adapter_shape(Path(start.adapter_dir))
        names = {"lora_rank": "lora_rank", "lora_alpha": "lora_alpha", "target_modules": "lora_target_modules"}
        out.update({names[option]: value for option, value in shape.items()})
    return out
