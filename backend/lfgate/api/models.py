from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, status

from lfgate.api.deps import FleetDep, RegistryDep
from lfgate.api.schemas import (
    ModelOut,
    ModelsOut,
    ModelStatusOut,
    RunCurveOut,
    ScanOut,
    ServingOut,
)
from lfgate.services.boxes.fleet import BoxFleet, BoxStack
from lfgate.services.models.registry import ModelEntry

router = APIRouter(prefix="/api/models", tags=["models"])


def _load_facts(entry: ModelEntry) -> dict[str, Any]:
    """How long its load took (the whole wait) or, while it loads, has taken so far."""
    return {"load_seconds": entry.load_seconds,
            "base_already_loaded": entry.base_already_loaded,
            "loading_seconds": entry.loading_seconds(time.monotonic())}


def _status(entry: ModelEntry, warnings: list[str] | None = None) -> ModelStatusOut:
    error, slot = entry.error, entry.slot
    return ModelStatusOut(id=entry.spec.id, status=entry.status,
                          error=None if error is None else error.message,
                          hint=None if error is None else error.hint,
                          load_phases=entry.load_phases, **_load_facts(entry),
                          active_turns=slot.active_turns,
                          stderr_tail=slot.session.stderr_tail if slot.session else "",
                          warnings=warnings or [])


def _model(entry: ModelEntry, fleet: BoxFleet) -> ModelOut:
    spec, facts = entry.spec, entry.spec.facts
    error, fit = entry.error, fleet.fit_warning(entry)
    return ModelOut(
        id=spec.id, box=spec.box, kind=spec.kind, base_id=spec.base_id,
        base_model_path=spec.base_model_path,
        adapter_path=spec.adapter_path, template=spec.template,
        finetuning_type=spec.finetuning_type, status=entry.status,
        error=None if error is None else error.message, usable=entry.usable,
        problems=list(entry.problems), warnings=[*spec.warnings, *([fit] if fit else [])],
        shared_base=fleet.registry.shares_base(spec), **_load_facts(entry),
        **({} if facts is None else {
            "run": facts.run, "run_path": facts.run_path, "step": facts.step,
            "training_template": facts.training_template, "size_bytes": facts.size_bytes,
            "modified": facts.modified, "train_loss": facts.train_loss,
            "eval_loss": facts.eval_loss}))


def _scan(stack: BoxStack) -> ScanOut:
    catalog, report = stack.registry.catalog, stack.discovery.report
    return ScanOut(box=stack.name, dirs=report.dirs, scanned_at=report.scanned_at,
                   elapsed_s=report.elapsed_s, error=report.error, missing=catalog.missing,
                   truncated=catalog.truncated)


def _listing(fleet: BoxFleet) -> ModelsOut:
    scans = [_scan(stack) for stack in fleet.stacks]
    return ModelsOut(
        models=[_model(entry, fleet) for entry in fleet.registry.entries()],
        runs={run: RunCurveOut(train=curve.get("train", []), eval=curve.get("eval", []))
              for stack in fleet.stacks for run, curve in stack.registry.catalog.curves.items()},
        scan=scans[0], scans=scans,
        serving=[ServingOut(box=stack.name, key=slot.key, shared=slot.shared,
                            base_model_path=slot.load_spec.base_model_path, status=slot.status,
                            active_turns=slot.active_turns,
                            held=slot.session.held if slot.session else {})
                 for stack in fleet.stacks for slot in stack.registry.slots()])


@router.get("")
async def list_models(fleet: FleetDep) -> ModelsOut:
    return _listing(fleet)


@router.post("/refresh")
async def refresh_models(fleet: FleetDep) -> ModelsOut:
    """Rescan ADAPTER_DIRS on every box now (a run still training has new checkpoints)."""
    await fleet.refresh()
    return _listing(fleet)


@router.post("/{model_id}/load", status_code=status.HTTP_202_ACCEPTED)
async def load_model(model_id: str, fleet: FleetDep) -> ModelStatusOut:
    """Starts the load (even one that looks too big: the estimate is rough) and warns."""
    fit = fleet.fit_warning(fleet.registry.get(model_id))
    return _status(fleet.registry.start_load(model_id, again=True), [fit] if fit else [])


@router.get("/{model_id}/status")
async def model_status(model_id: str, registry: RegistryDep) -> ModelStatusOut:
    return _status(registry.get(model_id))


@router.post("/{model_id}/unload")
async def unload_model(model_id: str, registry: RegistryDep) -> ModelStatusOut:
    return _status(await registry.unload(model_id))
