"""Request and response bodies of the HTTP API (docs/api.md)."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    ValidationError,
    WithJsonSchema,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from lfgate.api.guards.limits import Limit
from lfgate.remote import wrapper_protocol as wp
from lfgate.services.evals.compare import MAX_SLOTS
from lfgate.storage.tables import as_utc
from lfgate.storage.vote_store import COMPARE_ID_CHARS  # a vote on the turn stores its id

MAX_STOP, MAX_STOP_CHARS = wp.MAX_STOP, wp.MAX_STOP_CHARS
MAX_TOP_K = 1_000_000  # more than any vocabulary has tokens


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("is blank (whitespace only): there is nothing in it")
    return value


# Bounded by settings, so their bounds are not in the schema: lfgate.api.guards.limits holds each
# request to MAX_MESSAGE_CHARS and MAX_NEW_TOKENS_LIMIT, naming the setting.
MessageText = Annotated[str, Field(min_length=1, description="at most MAX_MESSAGE_CHARS"),
                        AfterValidator(_not_blank), Limit.MESSAGE_CHARS]
SystemText = Annotated[str | None, Field(description="at most MAX_MESSAGE_CHARS"),
                       Limit.MESSAGE_CHARS]
NewTokens = Annotated[int | None, Field(ge=1, description="at most MAX_NEW_TOKENS_LIMIT"),
                      Limit.NEW_TOKENS]
Title = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_not_blank)]
# A stored moment, always with its offset (SQLite hands back naive UTC): RFC 3339, as the
# schema's date-time says.
Moment = Annotated[datetime, AfterValidator(as_utc)]


class ToolSpec(BaseModel):
    """A function the model may call, as LlamaFactory's tool formats take it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = Field(default=None, max_length=2000)
    parameters: dict[str, Any] | None = None


class GenParams(BaseModel):
    """Per-turn generation settings; unknown keys are refused so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0, le=10)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0, le=MAX_TOP_K)
    max_new_tokens: NewTokens = None
    repetition_penalty: float | None = Field(default=None, gt=0, le=10)
    system: SystemText = None
    enable_thinking: StrictBool | None = None
    # The reply ends before the first of these it makes (finish_reason "stop").
    stop: list[Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]] | None = Field(
        default=None, min_length=1, max_length=MAX_STOP)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)  # script mode honours it
    # Function definitions offered to the model (LlamaBoard's tools JSON: name, description,
    # parameters), formatted by its template's tool format; script mode (docs/api.md).
    tools: list[ToolSpec] | None = Field(default=None, max_length=128)

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ChatIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: MessageText
    chat_id: str | None = Field(default=None, max_length=200)
    model: str = Field(default="default", max_length=200)
    params: GenParams = Field(default_factory=GenParams)
    stream: bool = True
    # The message is the result of the tool calls of the reply before it: the model sees it
    # as its template's observation turn (kept as a user message, marked so).
    tool_result: StrictBool = False


class ToolCallOut(BaseModel):
    name: str
    arguments: str  # JSON text, as the model wrote it


class ChatOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    chat_id: str
    turn_id: str
    finish_reason: str
    # The reply's calls of the chat's tools (script mode): answer with a tool_result message.
    tool_calls: list[ToolCallOut] | None = None


class RemoteOut(BaseModel):
    connected: bool
    host: str
    error: str | None


class GpuOut(BaseModel):
    """One GPU as nvidia-smi reports it; None where it cannot tell ([N/A])."""

    index: int | None
    name: str
    memory_total_mib: int | None
    memory_used_mib: int | None
    utilization_pct: int | None


class LoadedOut(BaseModel):
    model_id: str | None  # None: a wrapper whose model is no longer listed
    kind: Literal["base", "adapter", "model"]  # model: one with a process of its own
    status: Literal["unloaded", "loading", "ready", "error"]
    memory_bytes: int | None  # its weights (the wrapper's report), else its process's RSS


class WrapperOut(BaseModel):
    version: str | None
    protocol: int | None


class BoxErrorOut(BaseModel):
    code: str
    message: str
    hint: str


class BoxHealthOut(BaseModel):
    """One box, as its status readings (every BOX_STATUS_INTERVAL s) and its models say."""

    name: str
    host: str
    mode: Literal["cli", "script"]
    primary: bool  # the .env's own box: its model ids carry no box name
    state: Literal["connected", "reconnecting", "down"]
    # It has answered since the gateway started: a box that never did is not one that "went
    # away" (the page words them apart).
    reached: bool = True
    error: BoxErrorOut | None  # the box's last error (a reconnect clears it)
    rtt_ms: float | None
    checked_at: float | None  # epoch seconds of the last reading
    status_error: str | None  # the reading failed on a box that is reachable
    gpus: list[GpuOut]
    gpu_error: str | None
    load_avg: list[float] | None
    loaded: list[LoadedOut]
    wrapper: WrapperOut | None  # a wrapper running now: its version and protocol
    warnings: list[str]


class HealthOut(BaseModel):
    # ok: every box connected; degraded: some are; down: none is (never reached, or gone).
    status: Literal["ok", "degraded", "down"] = "ok"
    mode: Literal["cli", "script"]
    remote: RemoteOut  # the .env's own box (boxes[0]), as before there were several
    warnings: list[str] = Field(default_factory=list)  # configuration problems, not fatal
    boxes: list[BoxHealthOut] = Field(default_factory=list)
    auth: bool = False  # GATEWAY_TOKEN is set: requests need it (the page offers Log out)


class ModelOut(BaseModel):
    """One model: a base, or an adapter (a run's final adapter or a checkpoint) on its base."""

    id: str
    box: str  # the box that serves it (BOX_NAME, or a BOXES section)
    kind: Literal["base", "adapter"]
    base_id: str | None  # an adapter's base model (its id), where it is listed
    base_model_path: str
    adapter_path: str | None
    template: str  # the template it is served with
    finetuning_type: str
    status: Literal["unloaded", "loading", "ready", "error"]  # ready: resident on the box
    error: str | None = None
    usable: bool = True  # False: listed with its problems, cannot be chosen
    problems: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    shared_base: bool  # served on its base's loaded weights (False: a process of its own)
    run: str | None = None  # the run's id (its final adapter's id)
    run_path: str | None = None  # the run's folder under ADAPTER_DIRS
    step: int | None = None  # a checkpoint's step; None for a run's final adapter
    training_template: str | None = None
    size_bytes: int | None = None
    modified: float | None = None  # epoch seconds
    train_loss: float | None = None
    eval_loss: float | None = None
    # Its load, as in ModelStatusOut: so a page that did not watch the load can still say it.
    load_seconds: float | None = None
    base_already_loaded: bool = False
    loading_seconds: float | None = None


class RunCurveOut(BaseModel):
    train: list[list[float]]  # [step, loss], thinned
    eval: list[list[float]]


class ScanOut(BaseModel):
    box: str
    dirs: list[str]
    scanned_at: float | None
    elapsed_s: float | None
    error: str | None
    missing: list[dict[str, str]]  # {dir, reason}: an ADAPTER_DIRS entry not on the box
    truncated: bool


class ServingOut(BaseModel):
    """A wrapper process on a box and what it says it holds."""

    box: str
    key: str
    shared: bool
    base_model_path: str
    status: Literal["unloaded", "loading", "ready", "error"]
    active_turns: int
    held: dict[str, Any]  # base_loads, weight_bytes, adapters [{path, bytes}], rss_bytes


class ModelsOut(BaseModel):
    models: list[ModelOut]
    runs: dict[str, RunCurveOut] = Field(default_factory=dict)
    scan: ScanOut | None = None  # the .env's own box
    scans: list[ScanOut] = Field(default_factory=list)  # every box's, in order
    serving: list[ServingOut] = Field(default_factory=list)


class ModelStatusOut(BaseModel):
    id: str
    status: Literal["unloaded", "loading", "ready", "error"]
    error: str | None
    hint: str | None = None
    # The whole wait until it could answer: its base's load (wrapper start included), plus an
    # adapter's own on a shared base; an adapter whose base was loaded already (for another
    # model, base_already_loaded): its own load alone.
    load_seconds: float | None
    # Where it went: connect_s, upload_s, start_s, load_s (the base's); adapter_s (its own).
    load_phases: dict[str, float] = Field(default_factory=dict)
    base_already_loaded: bool = False
    loading_seconds: float | None = None  # while loading: how long it has run so far
    active_turns: int = 0
    stderr_tail: str = ""  # the wrapper's last stderr lines on the box
    warnings: list[str] = Field(default_factory=list)  # e.g. a load that will not fit


class StopOut(BaseModel):
    turn_id: str
    stopping: bool = True


class ErrorOut(BaseModel):
    code: str
    message: str
    hint: str = ""


class MessageOut(BaseModel):
    id: str
    parent_id: str | None
    role: str
    content: str
    status: str
    created_at: Moment
    provenance: dict[str, Any] | None


class ChatSummaryOut(BaseModel):
    id: str
    title: str
    created_at: Moment
    updated_at: Moment
    archived: bool
    model: str
    source: Literal["page", "api"] = "page"  # api: a /v1 conversation (STORE_API_CHATS)
    # A compare chat: {"slots": [{"model", "leaf_id"}], "blind"}; null for a chat.
    compare: dict[str, Any] | None = None


class ChatsOut(BaseModel):
    chats: list[ChatSummaryOut]


class ChatDetailOut(ChatSummaryOut):
    system: str | None
    params: dict[str, Any]
    active_leaf_id: str | None
    messages: list[MessageOut]


class ChatCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title | None = None  # none: "New chat" until the first message names it
    model: str = Field(default="default", max_length=200)
    system: SystemText = None
    params: GenParams = Field(default_factory=GenParams)


class ChatPatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    archived: bool | None = None
    model: str | None = Field(default=None, max_length=200)
    system: SystemText = None
    params: GenParams | None = None
    active_leaf_id: str | None = Field(default=None, min_length=1, max_length=64)

    @field_validator("title", "archived", "model", "active_leaf_id")
    @classmethod
    def _not_null(cls, value: object) -> object:
        """Leaving a key out keeps it; an explicit null has no meaning for these (only
        `system` and `params` can be cleared), so it is a 422 rather than a failed write."""
        if value is None:
            raise ValueError("may be left out but not null")
        return value


def _number(value: Any) -> int | float:
    """A JSON number (a boolean is not one, nor is a string of digits)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("number_type", "must be a number")
    return value


Number = Annotated[int | float, PlainValidator(_number), WithJsonSchema({"type": "number"})]


class _Facts(BaseModel):
    """Facts the gateway writes about a reply: the keys it writes are typed, so an import
    that holds another type there is refused naming the field; other keys (a newer
    gateway's) are kept as they are. Every key is optional and may be null (absent)."""

    model_config = ConfigDict(extra="allow")


class ImportedTiming(_Facts):
    """The gateway's own clock (turn_recorder.TurnRecorder.finish)."""

    ttft_ms: Number | None = None
    total_ms: Number | None = None
    chunks: StrictInt | None = None


class ImportedBoxTiming(_Facts):
    """The box's clock, as its `done` event said (remote/wrapper_serve.py)."""

    load_seconds: Number | None = None
    ttft_ms: Number | None = None
    total_ms: Number | None = None
    chunks: StrictInt | None = None
    adapter_load_s: Number | None = None
    chunks_per_s: Number | None = None
    tokens_per_s: Number | None = None


class ImportedUsage(_Facts):
    prompt_tokens: StrictInt | None = None
    completion_tokens: StrictInt | None = None


class ImportedBatch(_Facts):
    id: str | None = None
    rows: StrictInt | None = None


class ImportedNotice(_Facts):
    code: str | None = None
    message: str | None = None


class ImportedError(_Facts):
    code: str | None = None
    message: str | None = None
    hint: str | None = None


class ImportedProvenance(_Facts):
    """A reply's provenance as the gateway writes it (TurnRecorder.provenance, finish and
    fail; a compare slot adds compare_id, slot and compare_mode)."""

    model: str | None = None
    mode: str | None = None
    box: str | None = None
    host: str | None = None
    base_model_path: str | None = None
    adapter_path: str | None = None
    template: str | None = None
    finetuning_type: str | None = None
    infer_backend: str | None = None
    shared_base: StrictBool | None = None
    run: str | None = None
    step: StrictInt | None = None
    params: dict[str, Any] | None = None
    wrapper_version: str | None = None
    protocol: StrictInt | None = None
    notices: list[ImportedNotice] | None = None
    compare_id: str | None = Field(default=None, min_length=1, max_length=COMPARE_ID_CHARS)
    slot: StrictInt | None = Field(default=None, ge=0, lt=MAX_SLOTS)
    compare_mode: str | None = None
    finish_reason: str | None = None
    timing: ImportedTiming | None = None
    box_timing: ImportedBoxTiming | None = None
    usage: ImportedUsage | None = None
    batch: ImportedBatch | None = None
    error: ImportedError | None = None


class ImportedSlot(BaseModel):
    model: str = Field(max_length=200)
    leaf_id: str | None = Field(default=None, max_length=64)


class ImportedCompare(BaseModel):
    """A compare chat's columns, as the chat's JSON has them."""

    slots: list[ImportedSlot] = Field(min_length=2, max_length=MAX_SLOTS)
    blind: StrictBool = False


class ImportedChat(BaseModel):
    # Fields a newer export adds are ignored, so an export imports into an older gateway.
    title: str = Field(max_length=200)
    created_at: datetime
    updated_at: datetime
    archived: bool = False
    model: str = Field(default="default", max_length=200)
    system: SystemText = None
    # As a chat's own params: a wrong one is refused here, not by the box at the next turn.
    params: GenParams = Field(default_factory=GenParams)
    active_leaf_id: str | None = Field(default=None, max_length=64)
    source: Literal["page", "api"] = "page"
    compare: ImportedCompare | None = None

    @field_serializer("params")
    def _given(self, params: GenParams) -> dict[str, Any]:
        return params.given()


class ImportedMessage(BaseModel):
    id: str = Field(max_length=64)
    parent_id: str | None = Field(default=None, max_length=64)
    role: Literal["user", "assistant"]
    content: str
    status: Literal["complete", "streaming", "stopped", "interrupted", "error"] = "complete"
    created_at: datetime
    # Typed as the gateway writes it (a wrong type is a 422 naming its path), and stored as
    # it was sent: keys left out stay out, numbers keep their type.
    provenance: ImportedProvenance | None = None

    @field_serializer("provenance")
    def _as_sent(self, provenance: ImportedProvenance | None) -> dict[str, Any] | None:
        return None if provenance is None else provenance.model_dump(mode="json",
                                                                     exclude_unset=True)

    @model_validator(mode="after")
    def _a_compare_reply_says_its_slot(self) -> ImportedMessage:
        """A reply of a compare turn says its slot and model, as the gateway writes it: a
        vote on the turn reads them."""
        facts = self.provenance
        if facts is None or facts.compare_id is None:
            return self
        if self.role != "assistant":
            raise ValueError("provenance.compare_id: only a reply (role assistant) belongs "
                             "to a compare turn")
        if facts.slot is None:
            raise ValueError(f"provenance.slot: a reply of compare turn {facts.compare_id!r} "
                             f"must say its slot (0 to {MAX_SLOTS - 1})")
        if facts.model is None:
            raise ValueError(f"provenance.model: a reply of compare turn "
                             f"{facts.compare_id!r} must name its model")
        return self


class ChatImportIn(BaseModel):
    """The JSON that GET /api/chats/{id}/export?format=json writes."""

    format: Literal["lfgate-chat"]
    version: Literal[1]
    chat: ImportedChat
    messages: list[ImportedMessage]

    @field_validator("messages")
    @classmethod
    def _ids_once(cls, messages: list[ImportedMessage]) -> list[ImportedMessage]:
        seen: set[str] = set()
        for message in messages:
            if message.id in seen:
                raise ValueError(f"message id {message.id!r} is there twice; ids are unique")
            seen.add(message.id)
        return messages

    @field_validator("messages")
    @classmethod
    def _each_slot_once(cls, messages: list[ImportedMessage]) -> list[ImportedMessage]:
        """A compare turn has one reply per slot, as the gateway writes it."""
        slots: dict[str, set[int | None]] = {}
        for index, message in enumerate(messages):
            facts = message.provenance
            if facts is None or facts.compare_id is None:
                continue
            taken = slots.setdefault(facts.compare_id, set())
            if facts.slot in taken:
                raise ValueError(f"messages[{index}].provenance.slot: compare turn "
                                 f"{facts.compare_id!r} has two replies in slot {facts.slot}")
            taken.add(facts.slot)
        return messages


def readable_provenance(value: Any) -> dict[str, Any] | None:
    """A stored provenance as readers may take it: one an older gateway stored (or imported
    unchecked) with a key of the wrong type loses that key (it reads as absent); one that is
    not an object at all is None. What fits comes back as it is."""
    return _readable(ImportedProvenance, value)


def readable_compare(value: Any) -> dict[str, Any] | None:
    """A stored compare chat's columns, or None where they do not read as columns."""
    try:
        ImportedCompare.model_validate(value)
    except ValidationError:
        return None
    return value


def _readable(model: type[BaseModel], value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    try:
        model.model_validate(value)
        return value
    except ValidationError:
        pass
    cleaned = copy.deepcopy(value)
    for _ in range(100):  # each round drops at least one key: a provenance has few
        try:
            model.model_validate(cleaned)
            return cleaned
        except ValidationError as exc:
            for error in exc.errors():
                _drop(cleaned, error["loc"])
    return None


def _drop(value: dict[str, Any], loc: tuple[int | str, ...]) -> None:
    """Drop the key, in the innermost object on `loc`, that leads to the error."""
    holder, key, node = value, loc[0], value
    for step in loc:
        if isinstance(node, dict) and step in node:
            holder, key = node, step
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
        else:
            break
    holder.pop(key, None)


class RegenerateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_id: str = Field(max_length=64)
    model: str = Field(default="default", max_length=200)
    params: GenParams = Field(default_factory=GenParams)
    stream: bool = True


class EditIn(RegenerateIn):
    content: MessageText


class CompareIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: MessageText
    # 2 to 4 model ids, one per column; the same id twice shows sampling variance.
    models: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=2, max_length=4)
    params: GenParams = Field(default_factory=GenParams)
    chat_id: str | None = Field(default=None, max_length=200)
    blind: bool = False  # a new chat's columns shuffled; names hidden until the vote
    stream: bool = True


class CompareSlotOut(BaseModel):
    slot: int
    turn_id: str
    model: str | None  # None in blind mode until the vote
    content: str | None = None
    finish_reason: str | None = None
    error: dict[str, Any] | None = None


class CompareOut(BaseModel):
    chat_id: str
    compare_id: str
    mode: Literal["batch", "parallel", "sequential"]
    slots: list[CompareSlotOut]


class VoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    compare_id: str = Field(min_length=1, max_length=64)
    # The best slot's index ("0".."3"), or "tie" / "both_bad".
    winner: str = Field(min_length=1, max_length=16)
    reason: str | None = Field(default=None, max_length=2000)


class VoteOut(BaseModel):
    id: str
    compare_id: str
    models: list[str]  # in slot order: the reveal, in blind mode
    reply_ids: list[str]
    winner: str
    reason: str | None
    blind: bool
    created_at: Moment


class TallyOut(BaseModel):
    wins: int = 0
    losses: int = 0
    ties: int = 0


class VotesOut(BaseModel):
    votes: list[VoteOut]
    tally: dict[str, TallyOut]  # per model, over this chat's votes


class StandingOut(BaseModel):
    model: str
    rating: float
    ci_low: float
    ci_high: float
    votes: int
    wins: int
    losses: int
    ties: int
    decisive_votes: int  # votes it won or lost: not a tie, "both bad" or only itself
    too_few_votes: bool  # ci_low..ci_high is no honest interval yet (docs/api.md#compare)


class LeaderboardOut(BaseModel):
    standings: list[StandingOut]  # best first
    win_rate: dict[str, dict[str, float]]  # row model's share of its games against column's
    votes: int
    min_decisive_votes: int  # a model's interval counts from this many decisive votes
