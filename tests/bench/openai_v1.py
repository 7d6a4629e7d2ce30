"""Issue 13's figures: the OpenAI-compatible `/v1`.

Run by tests/bench/run.py (section 8 of docs/benchmarks.md):

- `bench_v1_vs_api`: the official `openai` client streaming from the gateway's `/v1` against
  the same client code streaming from `llamafactory-cli api` behind `ssh -L` (section 3's
  machinery), same prompts and settings, only base_url and `model` differ; on `default`
  (base + adapter: the API server merges the adapter at load, the gateway serves it
  unmerged on the shared base) and on `base` (no adapter on either side: the path's own
  cost). `/api/chat` on the same model rides along, for the wrapper's own timing of the
  same turns (`box_timing`), which `/v1` does not send.
- `bench_v1_vs_chat`: `/v1` against `/api/chat` on the same gateway and model, time to first
  token at the client, many interleaved turns: both read by the same raw SSE reader over the
  same httpx client (the paths alone), and `/v1` also through the `openai` client (what an
  SDK user sees).

Turns of the contenders are interleaved round by round, each round in another order (every
order of the contenders in turn), so slow drift of the machine and whatever a turn leaves
behind for the next hit every contender alike.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import httpx

from tests.bench.adapters import _shared_held, check_on_shared_base
from tests.bench.run import (
    PARAMS,
    PROMPTS,
    Rig,
    Turn,
    TurnClock,
    gateway_turn,
    llamafactory_api,
    openai_turn,
)
from tests.gateway_process import GatewayProcess, sse_raw

# Section 8b: time to first token only, so short greedy replies and the same prompt every
# turn (the same prefill), leaving room for many turns; as section 6.
TTFT_PARAMS = {"temperature": 0, "max_new_tokens": 32}
TTFT_PROMPT = "Tell me about LoRA adapters."
# The gateway's two model ids on one shared base: `default` is .env's adapter, `base` the
# base alone. Base first: unloading `default` leaves the plain base (no PeftModel), and
# `default` is loaded again (and left resident) for the block after it, as the sections
# after this one expect.
MODELS = ("base", "default")


def orders(kinds: list[str], rounds: int) -> list[tuple[int, str]]:
    """(round, kind) for `rounds` rounds, each round every kind once, the rounds going
    through every order of the kinds in turn (two kinds: AB BA AB BA ...)."""
    perms = list(itertools.permutations(kinds))
    return [(index, kind) for index in range(rounds) for kind in perms[index % len(perms)]]


def raw_chat_turn(http: httpx.Client, model: str, prompt: str, params: dict[str, Any]
                  ) -> tuple[Turn, dict[str, Any]]:
    """POST /api/chat (a new chat, SSE), timed at the client: a chunk is a `delta` event.
    Returns the turn and its `done` event."""
    clock, done = TurnClock(), None
    body = {"message": prompt, "model": model, "params": params}
    with http.stream("POST", "/api/chat", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"/api/chat: {response.status_code} {response.read()!r}")
        for name, data, at in sse_raw(response):
            event = json.loads(data)
            if name == "delta" and event.get("text"):
                clock.chunk(at)
            elif name == "done":
                done = event
            elif name == "error":
                raise RuntimeError(f"/api/chat turn failed: {event}")
    if done is None:
        raise RuntimeError("/api/chat: the stream ended without `done`")
    return clock.turn(), done


def raw_v1_turn(http: httpx.Client, model: str, prompt: str, params: dict[str, Any]
                ) -> tuple[Turn, str]:
    """POST /v1/chat/completions (stream), timed at the client with the same reader: a chunk
    is a `chat.completion.chunk` with non-empty content. Returns the turn and its text."""
    clock, parts, finished = TurnClock(), [], False
    body = {"model": model, "messages": [{"role": "user", "content": prompt}],
            "stream": True, "temperature": params["temperature"],
            "max_tokens": params["max_new_tokens"]}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"/v1: {response.status_code} {response.read()!r}")
        for _, data, at in sse_raw(response):
            if data == "[DONE]":
                finished = True
                continue
            chunk = json.loads(data)
            if "error" in chunk:
                raise RuntimeError(f"/v1 turn failed: {chunk['error']}")
            choices = chunk.get("choices") or [{}]
            text = (choices[0].get("delta") or {}).get("content")
            if text:
                clock.chunk(at)
                parts.append(text)
    if not finished:
        raise RuntimeError("/v1: the stream ended without [DONE]")
    return clock.turn(), "".join(parts)


def _wrapper_turn(done: dict[str, Any]) -> Turn:
    """The same turn as the wrapper on the box timed it (no SSH, gateway or HTTP)."""
    box = done["box_timing"]
    return Turn(box["ttft_ms"] / 1000, box["total_ms"] / 1000, box["chunks"])


def _plain_base(gateway: GatewayProcess) -> None:
    """Put `default`'s adapter away (the base stays): the wrapper serves the plain base, no
    PeftModel around it, as the API server loaded with the base alone does."""
    response = gateway.http.post("/api/models/default/unload")
    if response.status_code != 200 or response.json()["status"] != "unloaded":
        raise RuntimeError(f"unload default: {response.status_code} {response.text}")
    held = _shared_held(gateway)
    if held["adapters"]:
        raise RuntimeError(f"adapters still resident on the base: {held['adapters']}")


# -- 8a. /v1 against llamafactory-cli api through ssh -L, the same openai client --------------

def _api_turn(kind: str, prompt: str, model: str, api: Any, v1: Any,
              gateway: GatewayProcess) -> tuple[Turn, str, Turn | None]:
    """One turn of a section 8a contender: the turn at the client, its text and (/api/chat
    only) the wrapper's own timing of it."""
    if kind == "api":
        return (*openai_turn(api, prompt), None)
    if kind == "v1":
        return (*openai_turn(v1, prompt, model), None)
    turn, done = gateway_turn(gateway, {"message": prompt, "model": model, "params": PARAMS})
    return turn, done["content"], _wrapper_turn(done)


def bench_v1_vs_api(rig: Rig, gateway: GatewayProcess, rounds: int) -> dict[str, Any]:
    """Per model (`base`, then `default`): an API server loaded with that model alone behind
    `ssh -L`, a warm-up turn for each contender, then `rounds` rounds of one turn each
    (the API server and `/v1` through the same `openai_turn`; `/api/chat` for the wrapper's
    own clock), every round the next prompt, the same for every contender."""
    from openai import OpenAI

    check_on_shared_base(gateway.http.get("/api/models").json()["models"], MODELS)
    # Every client alike; no retries, so a failed request fails the run instead of hiding
    # in a turn's time.
    v1 = OpenAI(base_url=f"{gateway.url}/v1", api_key="none", max_retries=0)
    kinds = ["api", "v1", "chat"]
    blocks = {}
    for model in MODELS:
        adapter = rig.model["adapter_path"] if model == "default" else None
        if model == "base":
            _plain_base(gateway)
        with llamafactory_api(rig, adapter, name=f"api-{model}") as url:
            api = OpenAI(base_url=url, api_key="none", max_retries=0)
            # The API server's first request; the gateway's first turns on the model
            # (`default`: its adapter's load).
            for kind in kinds:
                _api_turn(kind, "warm up", model, api, v1, gateway)
            turns: dict[str, list[Turn]] = {kind: [] for kind in [*kinds, "wrapper"]}
            texts: dict[int, dict[str, str]] = {}
            for index, kind in orders(kinds, rounds):
                turn, text, inside = _api_turn(kind, PROMPTS[index % len(PROMPTS)], model,
                                               api, v1, gateway)
                turns[kind].append(turn)
                texts.setdefault(index, {})[kind] = text
                if inside is not None:
                    turns["wrapper"].append(inside)
        same = sum(1 for row in texts.values() if len(set(row.values())) == 1)
        blocks[model] = {"turns": turns, "same_replies": same, "rounds": rounds,
                         "adapter": adapter}
    return {"models": blocks, "params": PARAMS}


# -- 8b. /v1 against /api/chat on the same gateway and model ----------------------------------

def bench_v1_vs_chat(gateway: GatewayProcess, rounds: int, model: str = "default"
                     ) -> dict[str, Any]:
    """`rounds` rounds of one turn each: /api/chat and /v1 through the same raw SSE reader,
    and /v1 through the `openai` client; each a new conversation, the same prompt."""
    from openai import OpenAI

    sdk = OpenAI(base_url=f"{gateway.url}/v1", api_key="none", max_retries=0)
    http = gateway.http
    box: list[float] = []

    def chat() -> Turn:
        turn, done = raw_chat_turn(http, model, TTFT_PROMPT, TTFT_PARAMS)
        box.append(done["box_timing"]["ttft_ms"] / 1000)
        return turn

    contenders: dict[str, Callable[[], Turn]] = {
        "chat": chat,
        "v1": lambda: raw_v1_turn(http, model, TTFT_PROMPT, TTFT_PARAMS)[0],
        "v1_sdk": lambda: openai_turn(sdk, TTFT_PROMPT, model, TTFT_PARAMS)[0],
    }
    for run in contenders.values():
        run()  # warm: each client's connection, the model's first turn by each path
    box.clear()
    ttft: dict[str, list[float]] = {kind: [] for kind in contenders}
    chunks: dict[str, list[int]] = {kind: [] for kind in contenders}
    for _, kind in orders(list(contenders), rounds):
        turn = contenders[kind]()
        ttft[kind].append(turn.ttft_s)
        chunks[kind].append(turn.chunks)
    return {"model": model, "rounds": rounds, "ttft": ttft, "chunks": chunks,
            "box_ttft": box, "params": TTFT_PARAMS, "prompt": TTFT_PROMPT}


def bench_openai(rig: Rig, gateway: GatewayProcess, api_rounds: int, ttft_rounds: int
                 ) -> dict[str, Any]:
    """Section 8 on a script-mode gateway with `default` (an adapter) and `base` on one
    shared base; leaves `default` resident."""
    return {"api": bench_v1_vs_api(rig, gateway, api_rounds),
            "chat": bench_v1_vs_chat(gateway, ttft_rounds)}
