"""Typed dependencies: the long-lived objects the lifespan put on app.state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from lfgate.config import Settings
from lfgate.services.boxes.fleet import BoxFleet
from lfgate.services.chat.turns import ChatTurns
from lfgate.services.evals.compare import Compares
from lfgate.services.evals.prompt_runs import PromptRuns
from lfgate.services.evals.standings import Standings
from lfgate.services.models.fleet_registry import FleetRegistry
from lfgate.storage.chat_store import ChatStore
from lfgate.storage.prompt_set_store import PromptSetStore
from lfgate.storage.run_store import RunStore
from lfgate.storage.vote_store import VoteStore


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_fleet(request: Request) -> BoxFleet:
    return request.app.state.fleet


def get_registry(request: Request) -> FleetRegistry:
    return request.app.state.registry


def get_turns(request: Request) -> ChatTurns:
    return request.app.state.turns


def get_store(request: Request) -> ChatStore:
    return request.app.state.store


def get_compares(request: Request) -> Compares:
    return request.app.state.compares


def get_votes(request: Request) -> VoteStore:
    return request.app.state.votes


def get_standings(request: Request) -> Standings:
    return request.app.state.standings


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
FleetDep = Annotated[BoxFleet, Depends(get_fleet)]
RegistryDep = Annotated[FleetRegistry, Depends(get_registry)]
TurnsDep = Annotated[ChatTurns, Depends(get_turns)]
StoreDep = Annotated[ChatStore, Depends(get_store)]
StartedDep = Annotated[int, Depends(get_started_at)]
ComparesDep = Annotated[Compares, Depends(get_compares)]
VotesDep = Annotated[VoteStore, Depends(get_votes)]
StandingsDep = Annotated[Standings, Depends(get_standings)]
PromptRunsDep = Annotated[PromptRuns, Depends(get_prompt_runs)]
PromptSetsDep = Annotated[PromptSetStore, Depends(get_prompt_sets)]
RunsDep = Annotated[RunStore, Depends(get_runs)]
