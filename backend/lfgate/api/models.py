from __future__ import annotations

from fastapi import APIRouter, status

from lfgate.api.deps import RegistryDep
from lfgate.api.schemas import ModelOut, ModelsOut, ModelStatusOut
from lfgate.services.model_registry import ModelEntry

router = APIRouter(prefix="/api/models", tags=["models"])


def _status(entry: ModelEntry) -> ModelStatusOut:
    error = entry.error
    return ModelStatusOut(id=entry.spec.id, status=entry.status,
                          error=None if error is None else error.message,
                          hint=None if error is None else error.hint,
                          load_seconds=entry.load_seconds, load_phases=entry.load_phases,
                          active_turns=entry.active_turns,
                          stderr_tail=entry.session.stderr_tail if entry.session else "")


@router.get("")
async def list_models(registry: RegistryDep) -> ModelsOut:
    return ModelsOut(models=[
        ModelOut(id=e.spec.id, base_model_path=e.spec.base_model_path,
                 adapter_path=e.spec.adapter_path, template=e.spec.template, status=e.status)
        for e in registry.entries()
    ])


@router.post("/{model_id}/load", status_code=status.HTTP_202_ACCEPTED)
async def load_model(model_id: str, registry: RegistryDep) -> ModelStatusOut:
    return _status(registry.start_load(model_id))


@router.get("/{model_id}/status")
async def model_status(model_id: str, registry: RegistryDep) -> ModelStatusOut:
    return _status(registry.get(model_id))


@router.post("/{model_id}/unload")
async def unload_model(model_id: str, registry: RegistryDep) -> ModelStatusOut:
    return _status(await registry.unload(model_id))
