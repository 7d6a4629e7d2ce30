"""Typed dependencies: the long-lived objects the lifespan put on app.state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from lfgate.box.box import Box
from lfgate.config import Settings
from lfgate.services.chat_turns import ChatTurns
from lfgate.services.compare import Compares
from lfgate.services.discovery import Discovery
from lfgate.services.doctor_runs import DoctorRuns
from lfgate.services.model_registry import ModelRegistry
from lfgate.services.prompt_runs import PromptRuns
from lfgate.storage.chat_store import ChatStore
from lfgate.storage.prompt_set_store import PromptSetStore
from lfgate.storage.run_store import RunStore
from lfgate.storage.vote_store import VoteStore


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_box(request: Request) -> Box:
    return request.app.state.box


def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def get_discovery(request: Request) -> Discovery:
    return request.app.state.discovery


def get_doctor(request: Request) -> DoctorRuns:
    return request.app.state.doctor


def get_turns(request: Request) -> ChatTurns:
    return request.app.state.turns


def get_store(request: Request) -> ChatStore:
    return request.app.state.store


def get_compares(request: Request) -> Compares:
    return request.app.state.compares


def get_votes(request: Request) -> VoteStore:
    return request.app.state.votes


def get_prompt_runs(request: Request) -> PromptRuns:
    return request.app.state.prompt_runs


def get_prompt_sets(request: Request) -> PromptSetStore:
    return request.app.state.prompt_sets


def get_runs(request: Request) -> RunStore:
    return request.app.state.runs


def get_started_at(request: Request) -> int:
    """When this gateway started (epoch seconds): a base model's `created` in /v1/models."""
    return request.app.state.started_at


SettingsDep = Annotated[Settings, Depends(get_settings)]
BoxDep = Annotated[Box, Depends(get_box)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
DiscoveryDep = Annotated[Discovery, Depends(get_discovery)]
DoctorDep = Annotated[DoctorRuns, Depends(get_doctor)]
TurnsDep = Annotated[ChatTurns, Depends(get_turns)]
StoreDep = Annotated[ChatStore, Depends(get_store)]
StartedDep = Annotated[int, Depends(get_started_at)]
ComparesDep = Annotated[Compares, Depends(get_compares)]
VotesDep = Annotated[VoteStore, Depends(get_votes)]
PromptRunsDep = Annotated[PromptRuns, Depends(get_prompt_runs)]
PromptSetsDep = Annotated[PromptSetStore, Depends(get_prompt_sets)]
RunsDep = Annotated[RunStore, Depends(get_runs)]
