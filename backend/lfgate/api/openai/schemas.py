"""Bodies of the OpenAI-compatible /v1 API (docs/openai.md): the fields we honour are typed
here, so a wrong type is a 400 naming it; what we do not honour is judged by
lfgate.services.chat.openai_requests."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from lfgate.api.guards.limits import Limit
from lfgate.api.schemas import MAX_TOP_K, NewTokens


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: StrictBool = False


class ChatCompletionIn(BaseModel):
    # Extra fields are kept for the service to judge: ignored (user, metadata, ...), read
    # there (tools, tool_choice, ...), refused with their name (n > 1, ...), or unknown.
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    # Every text in them at most MAX_MESSAGE_CHARS (lfgate.api.guards.limits).
    messages: Annotated[list[Any], Limit.MESSAGE_CHARS] = Field(min_length=1, max_length=10_000)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    # Choices: rows of one generate call where the model rides on a shared base.
    n: int | None = Field(default=None, ge=1, le=8)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: NewTokens = None
    max_completion_tokens: NewTokens = None
    stop: Any = None  # a string or up to 4; checked where the message can say which
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    # Script mode: logits processors on the box (OpenAI's ranges; min_p is vLLM's).
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = Field(
        default=None, max_length=300)
    min_p: float | None = Field(default=None, ge=0, le=1)
    logprobs: StrictBool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    # LlamaFactory's own knobs, as extra body fields (the openai SDK's `extra_body`).
    top_k: int | None = Field(default=None, ge=0, le=MAX_TOP_K)
    repetition_penalty: float | None = Field(default=None, gt=0, le=10)
    enable_thinking: StrictBool | None = None
    chat_template_kwargs: dict[str, Any] | None = None


class CompletionIn(BaseModel):
    """OpenAI's legacy completions (/v1/completions): raw text continued, no template."""

    model_config = ConfigDict(extra="allow")  # judged by completion_requests, as for chat

    model: str = Field(min_length=1, max_length=200)
    # Text, texts, token ids or lists of them (checked where it can be named); each text at
    # most MAX_MESSAGE_CHARS (lfgate.api.guards.limits).
    prompt: Annotated[Any, Limit.MESSAGE_CHARS] = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    echo: StrictBool = False
    logprobs: int | None = Field(default=None, ge=0, le=20)
    max_tokens: Annotated[int | None, Field(ge=0), Limit.NEW_TOKENS] = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: Any = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    top_k: int | None = Field(default=None, ge=0, le=MAX_TOP_K)
    repetition_penalty: float | None = Field(default=None, gt=0, le=10)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = Field(
        default=None, max_length=300)
    min_p: float | None = Field(default=None, ge=0, le=1)


class ModelCardOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    parent: str | None = None  # an adapter's base model id (as vLLM lists its LoRA modules)


class ModelListOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCardOut]
