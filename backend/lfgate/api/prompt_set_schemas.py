"""Request and response bodies of prompt sets and their runs (docs/api.md#prompt-sets)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lfgate.api.schemas import GenParams

MAX_SET_CHARS = 50_000_000  # the body limit (MAX_REQUEST_BYTES) is met first by default


class PromptSetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, max_length=MAX_SET_CHARS)  # the file's text
    name: str | None = Field(default=None, max_length=200)
    # None: from the filename's extension, else sniffed from the first character.
    format: Literal["jsonl", "json", "csv", "lines"] | None = None
    filename: str | None = Field(default=None, max_length=500)


class PromptSetOut(BaseModel):
    id: str
    name: str
    format: str
    count: int
    references: int  # prompts carrying a reference
    runs: int
    created_at: datetime
    warnings: list[str] = Field(default_factory=list)


class SetPromptOut(BaseModel):
    index: int
    prompt: str
    system: str | None
    reference: str | None


class PromptSetDetailOut(PromptSetOut):
    prompts: list[SetPromptOut]


class PromptSetsOut(BaseModel):
    sets: list[PromptSetOut]


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=4)
    params: GenParams = Field(default_factory=GenParams)


class ProgressOut(BaseModel):
    done: int  # cells ended (complete or error)
    total: int
    errors: int
    elapsed_s: float  # running time over every sitting
    eta_s: float | None  # None until this sitting has ended a cell


class RunSummaryOut(BaseModel):
    id: str
    set_id: str
    set_name: str
    models: list[str]
    params: dict[str, Any]
    mode: Literal["batch", "parallel", "sequential"]
    status: Literal["running", "stopped", "interrupted", "complete", "error"]
    error: dict[str, Any] | None
    created_at: datetime
    progress: ProgressOut


class RunsOut(BaseModel):
    runs: list[RunSummaryOut]


class ScoresOut(BaseModel):
    bleu: float
    chrf: float
    rouge_l: float


class CellOut(BaseModel):
    slot: int
    model: str
    status: Literal["pending", "running", "complete", "error", "stopped"]
    content: str
    finish_reason: str | None
    ttft_ms: float | None
    total_ms: float | None
    scores: ScoresOut | None
    error: dict[str, Any] | None
    attempts: int  # how often it was sent to the box
    provenance: dict[str, Any] | None


class RunVoteOut(BaseModel):
    index: int
    winner: str
    reason: str | None


class RowOut(BaseModel):
    index: int
    prompt: str
    system: str | None
    reference: str | None
    vote: RunVoteOut | None
    cells: list[CellOut]


class AverageOut(BaseModel):
    bleu: float | None
    chrf: float | None
    rouge_l: float | None
    scored: int
    ttft_ms: float | None
    total_ms: float | None


class RunOut(RunSummaryOut):
    averages: dict[str, AverageOut]
    rows: list[RowOut]


class RunVoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    winner: str = Field(min_length=1, max_length=16)  # a column ("0".."3"), tie, both_bad
    reason: str | None = Field(default=None, max_length=2000)
