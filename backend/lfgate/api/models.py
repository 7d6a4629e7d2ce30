from __future__ import annotations

from fastapi import APIRouter, status

from lfgate.api.deps import DiscoveryDep, RegistryDep
from lfgate.api.schemas import (
    ModelOut,
    ModelsOut,
    ModelStatusOut,
    RunCurveOut,
    ScanOut,
    ServingOut,
)
from lfgate.services.discovery import Discovery
from lfgate.services.model_registry import ModelEntry, ModelRegistry

router = APIRouter(prefix="/api/models", tags=["models"])


def _status(entry: ModelEntry) -> ModelStatusOut:
    error, slot = entry.error, entry.slot
    return ModelStatusOut(id=entry.spec.id, status=entry.status,
                          error=None if error is None else error.message,
                          hint=None if error is None else error.hint,
                          load_seconds=entry.load_seconds, load_phases=slot.load_phases,
                          active_turns=slot.active_turns,
                          stderr_tail=slot.session.stderr_tail if slot.session else "")


def _model(entry: ModelEntry, registry: ModelRegistry) -> ModelOut:
    spec, facts = entry.spec, entry.spec.facts
    error = entry.error
    return ModelOut(
        id=spec.id, kind=spec.kind, base_id=spec.base_id, base_model_path=spec.base_model_path,
        adapter_path=spec.adapter_path, template=spec.template,
        finetuning_type=spec.finetuning_type, status=entry.status,
        error=None if error is None else error.message, usable=spec.usable,
        problems=list(spec.problems), warnings=list(spec.warnings),
        shared_base=registry.shares_base(spec),
        **({} if facts is None else {
            "run": facts.run, "run_path": facts.run_path, "step": facts.step,
            "training_template": facts.training_template, "size_bytes": facts.size_bytes,
            "modified": facts.modified, "train_loss": facts.train_loss,
            "eval_loss": facts.eval_loss}))


def _listing(registry: ModelRegistry, discovery: Discovery) -> ModelsOut:
    catalog, report = registry.catalog, discovery.report
    return ModelsOut(
        models=[_model(entry, registry) for entry in registry.entries()],
        runs={run: RunCurveOut(train=curve.get("train", []), eval=curve.get("eval", []))
              for run, curve in catalog.curves.items()},
        scan=ScanOut(dirs=report.dirs, scanned_at=report.scanned_at,
                     elapsed_s=report.elapsed_s, error=report.error, missing=catalog.missing,
                     truncated=catalog.truncated),
        serving=[ServingOut(key=slot.key, shared=slot.shared,
                            base_model_path=slot.load_spec.base_model_path, status=slot.status,
                            active_turns=slot.active_turns,
                            held=slot.session.held if slot.session else {})
                 for slot in registry.slots()])


@router.get("")
async def list_models(registry: RegistryDep, discovery: DiscoveryDep) -> ModelsOut:
    return _listing(registry, discovery)


@router.post("/refresh")
async def refresh_models(registry: RegistryDep, discovery: DiscoveryDep) -> ModelsOut:
    """Rescan ADAPTER_DIRS on the box now (a run still training has new checkpoints)."""
    await discovery.refresh()
    return _listing(registry, discovery)


@router.post("/{model_id}/load", status_code=status.HTTP_202_ACCEPTED)
async def load_model(model_id: str, registry: RegistryDep) -> ModelStatusOut:
    return _status(registry.start_load(model_id))


@router.get("/{model_id}/status")
async def model_status(model_id: str, registry: RegistryDep) -> ModelStatusOut:
    return _status(registry.get(model_id))


@router.post("/{model_id}/unload")
async def unload_model(model_id: str, registry: RegistryDep) -> ModelStatusOut:
    return _status(await registry.unload(model_id))
