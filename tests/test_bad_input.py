"""Bad input against every route of the API (issue 17, "Limits and bad input"): one table of
requests (empty, whitespace only, 1 MB, over the body limit, invalid UTF-8, NUL and unpaired
surrogates, wrong types, unknown fields, negative and huge numbers, unknown ids), each with the
status it must get and the words its answer must hold (the field, the limit, the id). Every
(method, path) of the OpenAPI schema has a row, so a new route cannot be forgotten. After every
row the gateway still answers; a good chat runs in the middle and at the end. Emoji, CJK and
control characters other than NUL are text: taken and given back intact. The settings'
limits (MAX_MESSAGE_CHARS, MAX_NEW_TOKENS_LIMIT) are held at their exact bound.

All on the scripted box double (no SSH, no model), with settings made here: hermetic and fast.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from lfgate.box_list import box_definitions
from lfgate.config import SettingsError, load_settings
from tests.test_models_api import Client, eventually, gateway

MAX_CHARS = 1000  # MAX_MESSAGE_CHARS here, so a 1 MB message is far over it
MAX_TOKENS = 64  # MAX_NEW_TOKENS_LIMIT here
MAX_BYTES = 2 * 1024 * 1024  # MAX_REQUEST_BYTES here: a 1 MB message fits, 3 MB does not
LIMITS = {"max_message_chars": MAX_CHARS, "max_new_tokens_limit": MAX_TOKENS,
          "max_request_bytes": MAX_BYTES, "adapter_path": "/runs/lora"}
MEGABYTE = "x" * 1_000_000
OVER_BODY = "x" * 3_000_000
NO_BODY = object()
Ids = dict[str, str]


@dataclass(frozen=True)
class Case:
    """One request: `body` is JSON, bytes sent as they are (as application/json), a function
    of the ids made for the run (a chat, its messages, a compare, a prompt set, a run), or
    NO_BODY. The answer must have `status` and hold every one of `words`."""

    label: str
    method: str
    path: str  # may name {chat}, {user}, {reply}, {compare_chat}, {compare}, {set}, {run}
    body: Any
    status: int
    words: tuple[str, ...]


def case(label: str, method: str, path: str, body: Any = NO_BODY, status: int = 422,
         *words: str) -> Case:
    return Case(label, method, path, body, status, words)


def chat(**fields: Any) -> dict[str, Any]:
    return {"message": "hi", "stream": False, **fields}


def v1(**fields: Any) -> dict[str, Any]:
    return {"model": "default", "messages": [{"role": "user", "content": "hi"}], **fields}


def v1_says(text: Any) -> dict[str, Any]:
    return v1(messages=[{"role": "user", "content": text}])


def raw(text: str) -> bytes:
    return text.encode()


def message(id: str, parent_id: str | None = None) -> dict[str, Any]:
    return {"id": id, "parent_id": parent_id, "role": "user", "content": "hi",
            "created_at": "2026-01-01T00:00:00Z"}


def imported(messages: list[dict[str, Any]], **chat_fields: Any) -> dict[str, Any]:
    """A chat as GET /api/chats/{id}/export?format=json writes it."""
    return {"format": "lfgate-chat", "version": 1, "messages": messages,
            "chat": {"title": "imported", "created_at": "2026-01-01T00:00:00Z",
                     "updated_at": "2026-01-01T00:00:00Z", **chat_fields}}


BAD_UTF8 = b'{"message": "caf\xe9 \xff", "stream": false}'
SURROGATE = b'{"message": "half \\ud83e of an emoji", "stream": false}'
NAN = b'{"message": "hi", "stream": false, "params": {"temperature": NaN}}'
NESTED = b"[" * 50_000 + b"]" * 50_000
HUGE_INT = b'{"message": "hi", "params": {"seed": ' + b"9" * 5000 + b"}}"
JSONL_BAD_LINE = '{"prompt": "fine"}\n{"prompt": \n'
GOOD = case("a good chat still works", "POST", "/api/chat", chat(message="still here?"), 200,
            "Echo", "still here?")

CASES: list[Case] = [
    # -- the gateway and its boxes ----------------------------------------------------------
    case("health: NUL in the query", "GET", "/api/health?probe=%00", NO_BODY, 422,
         "query", "probe", "NUL"),
    case("doctor: unknown box", "GET", "/api/doctor?box=no-such-box", NO_BODY, 404,
         "unknown_box", "no-such-box"),
    case("doctor: box name too long", "GET", "/api/doctor?box=" + "b" * 41, NO_BODY, 422,
         "box", "40 characters"),
    case("doctor: NUL in the box name", "GET", "/api/doctor?box=a%00b", NO_BODY, 422,
         "box", "NUL"),
    case("doctor stream: unknown box", "GET", "/api/doctor/stream?box=no-such-box", NO_BODY,
         404, "unknown_box", "no-such-box"),
    # -- logging in (no GATEWAY_TOKEN here; tests/test_auth.py has the rest) -----------------
    case("login: no token to log in to", "POST", "/api/login", {"token": "guess"}, 409,
         "no_token", "GATEWAY_TOKEN"),
    case("login: NUL in the token", "POST", "/api/login", {"token": "a\x00b"}, 422, "token",
         "NUL"),
    case("logout: NUL in the query", "POST", "/api/logout?x=%00", NO_BODY, 422, "query", "NUL"),
    # -- models ------------------------------------------------------------------------------
    case("models: NUL in the query", "GET", "/api/models?q=%00", NO_BODY, 422, "query", "NUL"),
    case("refresh: NUL in the query", "POST", "/api/models/refresh?x=%00", NO_BODY, 422,
         "query", "NUL"),
    case("load: unknown model", "POST", "/api/models/no-such-model/load", NO_BODY, 404,
         "unknown_model", "no-such-model"),
    case("load: NUL in the id", "POST", "/api/models/a%00b/load", NO_BODY, 422,
         "path", "model_id", "NUL"),
    case("status: unknown model", "GET", "/api/models/no-such-model/status", NO_BODY, 404,
         "unknown_model", "no-such-model"),
    case("unload: unknown model", "POST", "/api/models/no-such-model/unload", NO_BODY, 404,
         "unknown_model", "no-such-model"),
    # -- /api/chat ---------------------------------------------------------------------------
    case("chat: empty body", "POST", "/api/chat", b"", 422, "body", "JSON object", "empty"),
    case("chat: not JSON", "POST", "/api/chat", raw('{"message": "hi"'), 422,
         "JSON decode error", "position"),
    case("chat: a JSON array", "POST", "/api/chat", [], 422, "body", "dictionary"),
    case("chat: empty message", "POST", "/api/chat", chat(message=""), 422, "message",
         "at least 1 character"),
    case("chat: whitespace-only message", "POST", "/api/chat", chat(message=" \n\t "), 422,
         "message", "blank"),
    case("chat: 1 MB message", "POST", "/api/chat", chat(message=MEGABYTE), 422,
         "message", f"at most {MAX_CHARS} characters", "MAX_MESSAGE_CHARS"),
    case("chat: body over MAX_REQUEST_BYTES", "POST", "/api/chat", chat(message=OVER_BODY),
         413, "body_too_large", "MAX_REQUEST_BYTES"),
    case("chat: invalid UTF-8", "POST", "/api/chat", BAD_UTF8, 422, "not valid UTF-8",
         "position 16"),
    case("chat: NUL in the message", "POST", "/api/chat", chat(message="a\x00b"), 422,
         "message", "NUL"),
    case("chat: unpaired surrogate", "POST", "/api/chat", SURROGATE, 422, "message",
         "unpaired surrogate", "ud83e"),
    case("chat: NaN", "POST", "/api/chat", NAN, 422, "temperature", "NaN"),
    case("chat: nested too deep", "POST", "/api/chat", NESTED, 422, "nested too deeply"),
    case("chat: a 5000-digit number", "POST", "/api/chat", HUGE_INT, 422, "4300 digits"),
    case("chat: message of the wrong type", "POST", "/api/chat", chat(message=5), 422,
         "message", "valid string"),
    case("chat: stream of the wrong type", "POST", "/api/chat", chat(stream="maybe"), 422,
         "stream", "valid boolean"),
    case("chat: params of the wrong type", "POST", "/api/chat", chat(params="hot"), 422,
         "params", "dictionary"),
    case("chat: unknown field", "POST", "/api/chat", chat(colour="red"), 422, "colour",
         "Extra inputs are not permitted"),
    case("chat: unknown parameter", "POST", "/api/chat", chat(params={"temprature": 1}), 422,
         "temprature", "Extra inputs are not permitted"),
    case("chat: negative temperature", "POST", "/api/chat", chat(params={"temperature": -1}),
         422, "temperature", "greater than or equal to 0"),
    case("chat: huge temperature", "POST", "/api/chat", chat(params={"temperature": 1e308}),
         422, "temperature", "less than or equal to 10"),
    case("chat: top_p of 0", "POST", "/api/chat", chat(params={"top_p": 0}), 422, "top_p",
         "greater than 0"),
    case("chat: negative top_k", "POST", "/api/chat", chat(params={"top_k": -1}), 422,
         "top_k", "greater than or equal to 0"),
    case("chat: huge top_k", "POST", "/api/chat", chat(params={"top_k": 10**30}), 422,
         "top_k", "less than or equal to 1000000"),
    case("chat: max_new_tokens of 0", "POST", "/api/chat", chat(params={"max_new_tokens": 0}),
         422, "max_new_tokens", "greater than or equal to 1"),
    case("chat: max_new_tokens over the limit", "POST", "/api/chat",
         chat(params={"max_new_tokens": 10**30}), 422, "max_new_tokens",
         f"less than or equal to {MAX_TOKENS}", "MAX_NEW_TOKENS_LIMIT"),
    case("chat: negative seed", "POST", "/api/chat", chat(params={"seed": -1}), 422, "seed",
         "greater than or equal to 0"),
    case("chat: five stop strings", "POST", "/api/chat", chat(params={"stop": list("abcde")}),
         422, "stop", "at most 4"),
    case("chat: system prompt over the limit", "POST", "/api/chat",
         chat(params={"system": MEGABYTE}), 422, "system", "MAX_MESSAGE_CHARS"),
    case("chat: unknown chat", "POST", "/api/chat", chat(chat_id="no-such-chat"), 404,
         "unknown_chat", "no-such-chat"),
    case("chat: unknown model", "POST", "/api/chat", chat(model="no-such-model"), 404,
         "unknown_model", "no-such-model"),
    case("stop: unknown turn", "POST", "/api/chat/no-such-turn/stop", NO_BODY, 404,
         "unknown_turn", "no-such-turn"),
    case("reattach: unknown turn", "GET", "/api/chat/no-such-turn/stream", NO_BODY, 404,
         "unknown_turn", "no-such-turn"),
    case("reattach: a user message", "GET", "/api/chat/{user}/stream", NO_BODY, 404,
         "unknown_turn", "not a reply"),
    case("reattach: negative after", "GET", "/api/chat/{reply}/stream?after=-1", NO_BODY, 422,
         "after", "greater than or equal to 0"),
    case("reattach: after not a number", "GET", "/api/chat/{reply}/stream?after=ten", NO_BODY,
         422, "after", "integer"),
    # -- conversations -----------------------------------------------------------------------
    case("chats: negative limit", "GET", "/api/chats?limit=-1", NO_BODY, 422, "limit",
         "greater than or equal to 1"),
    case("chats: huge limit", "GET", f"/api/chats?limit={10**30}", NO_BODY, 422, "limit",
         "less than or equal to 500"),
    case("chats: limit of the wrong type", "GET", "/api/chats?limit=ten", NO_BODY, 422,
         "limit", "valid integer"),
    case("chats: negative offset", "GET", "/api/chats?offset=-1", NO_BODY, 422, "offset",
         "greater than or equal to 0"),
    case("chats: huge offset", "GET", f"/api/chats?offset={10**30}", NO_BODY, 422, "offset",
         "less than or equal to"),
    case("chats: NUL in the search", "GET", "/api/chats?q=a%00b", NO_BODY, 422, "query", "q",
         "NUL"),
    case("chats: search too long", "GET", "/api/chats?q=" + "q" * 501, NO_BODY, 422, "q",
         "at most 500 characters"),
    case("chats: archived of the wrong type", "GET", "/api/chats?archived=maybe", NO_BODY, 422,
         "archived", "valid boolean"),
    case("new chat: empty body", "POST", "/api/chats", b"", 422, "JSON object", "empty"),
    case("new chat: whitespace-only title", "POST", "/api/chats", {"title": "   "}, 422,
         "title", "blank"),
    case("new chat: NUL in the title", "POST", "/api/chats", {"title": "a\x00b"}, 422, "title",
         "NUL"),
    case("new chat: title too long", "POST", "/api/chats", {"title": "t" * 201}, 422, "title",
         "at most 200 characters"),
    case("new chat: system prompt over the limit", "POST", "/api/chats", {"system": MEGABYTE},
         422, "system", "MAX_MESSAGE_CHARS"),
    case("new chat: max_new_tokens over the limit", "POST", "/api/chats",
         {"params": {"max_new_tokens": MAX_TOKENS + 1}}, 422, "max_new_tokens",
         "MAX_NEW_TOKENS_LIMIT"),
    case("new chat: unknown field", "POST", "/api/chats", {"colour": "red"}, 422, "colour"),
    case("import: empty body", "POST", "/api/chats/import", b"", 422, "JSON object", "empty"),
    case("import: invalid UTF-8", "POST", "/api/chats/import", b'{"format": "\xc3"}', 422,
         "not valid UTF-8"),
    case("import: wrong shape", "POST", "/api/chats/import",
         {"format": "lfgate-chat", "version": 1, "chat": [], "messages": []}, 422, "chat",
         "valid dictionary"),
    case("import: NUL in a message", "POST", "/api/chats/import",
         {"format": "lfgate-chat", "version": 1,
          "chat": {"title": "x", "created_at": "2026-01-01T00:00:00Z",
                   "updated_at": "2026-01-01T00:00:00Z"},
          "messages": [{"id": "a", "role": "user", "content": "a\x00b",
                        "created_at": "2026-01-01T00:00:00Z"}]}, 422,
         "messages", "content", "NUL"),
    case("import: NaN in the params", "POST", "/api/chats/import",
         raw('{"format": "lfgate-chat", "version": 1, "chat": {"title": "x", "created_at": '
             '"2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "params": '
             '{"temperature": NaN}}, "messages": []}'), 422, "params", "temperature", "NaN"),
    case("import: a message id twice", "POST", "/api/chats/import",
         imported([message("a"), message("a")]), 422, "messages", "'a' is there twice"),
    case("import: a parent that is not there", "POST", "/api/chats/import",
         imported([message("a", parent_id="gone")]), 422, "messages", "parent_id"),
    case("import: parents in a cycle", "POST", "/api/chats/import",
         imported([message("a", parent_id="b"), message("b", parent_id="a")]), 422,
         "messages", "cycle"),
    case("import: a parameter the box cannot take", "POST", "/api/chats/import",
         imported([], params={"temperature": "hot"}), 422, "params", "temperature"),
    case("import: compare columns of the wrong type", "POST", "/api/chats/import",
         imported([], compare={"slots": ["x", "y"]}), 422, "compare", "slots"),
    case("import: a compare of one column", "POST", "/api/chats/import",
         imported([], compare={"slots": [{"model": "default"}]}), 422, "slots", "at least 2"),
    case("get: unknown chat", "GET", "/api/chats/no-such-chat", NO_BODY, 404, "unknown_chat",
         "no-such-chat"),
    case("get: NUL in the id", "GET", "/api/chats/a%00b", NO_BODY, 422, "path", "chat_id",
         "NUL"),
    case("patch: unknown chat", "PATCH", "/api/chats/no-such-chat", {"title": "t"}, 404,
         "unknown_chat", "no-such-chat"),
    case("patch: whitespace-only title", "PATCH", "/api/chats/{chat}", {"title": "\t "}, 422,
         "title", "blank"),
    case("patch: archived of the wrong type", "PATCH", "/api/chats/{chat}",
         {"archived": "maybe"}, 422, "archived", "valid boolean"),
    case("patch: unknown branch", "PATCH", "/api/chats/{chat}",
         {"active_leaf_id": "no-such-message"}, 404, "unknown_message", "no-such-message"),
    case("patch: system prompt over the limit", "PATCH", "/api/chats/{chat}",
         {"system": MEGABYTE}, 422, "system", "MAX_MESSAGE_CHARS"),
    case("patch: unknown field", "PATCH", "/api/chats/{chat}", {"colour": "red"}, 422,
         "colour"),
    case("delete: unknown chat", "DELETE", "/api/chats/no-such-chat", NO_BODY, 404,
         "unknown_chat", "no-such-chat"),
    case("regenerate: unknown chat", "POST", "/api/chats/no-such-chat/regenerate",
         {"message_id": "m", "stream": False}, 404, "unknown_chat", "no-such-chat"),
    case("regenerate: unknown message", "POST", "/api/chats/{chat}/regenerate",
         {"message_id": "no-such-message", "stream": False}, 404, "unknown_message",
         "no-such-message"),
    case("regenerate: a user message", "POST", "/api/chats/{chat}/regenerate",
         lambda ids: {"message_id": ids["user"], "stream": False}, 422, "only a reply"),
    case("regenerate: no message_id", "POST", "/api/chats/{chat}/regenerate", {}, 422,
         "message_id", "Field required"),
    case("regenerate: max_new_tokens over the limit", "POST", "/api/chats/{chat}/regenerate",
         lambda ids: {"message_id": ids["reply"], "params": {"max_new_tokens": 10**6}}, 422,
         "max_new_tokens", "MAX_NEW_TOKENS_LIMIT"),
    case("edit: whitespace-only content", "POST", "/api/chats/{chat}/edit",
         lambda ids: {"message_id": ids["user"], "content": "  ", "stream": False}, 422,
         "content", "blank"),
    case("edit: 1 MB content", "POST", "/api/chats/{chat}/edit",
         lambda ids: {"message_id": ids["user"], "content": MEGABYTE}, 422, "content",
         "MAX_MESSAGE_CHARS"),
    case("edit: NUL in the content", "POST", "/api/chats/{chat}/edit",
         lambda ids: {"message_id": ids["user"], "content": "\x00"}, 422, "content", "NUL"),
    case("edit: a reply", "POST", "/api/chats/{chat}/edit",
         lambda ids: {"message_id": ids["reply"], "content": "new", "stream": False}, 422,
         "only a user message"),
    case("edit: unknown message", "POST", "/api/chats/{chat}/edit",
         {"message_id": "no-such-message", "content": "new", "stream": False}, 404,
         "unknown_message", "no-such-message"),
    case("export: unknown format", "GET", "/api/chats/{chat}/export?format=pdf", NO_BODY, 422,
         "format", "'md' or 'json'"),
    case("export: unknown chat", "GET", "/api/chats/no-such-chat/export", NO_BODY, 404,
         "unknown_chat", "no-such-chat"),
    GOOD,  # in the middle: everything above left the gateway serving
    # -- compare, votes, leaderboard ---------------------------------------------------------
    case("compare: one model", "POST", "/api/compare", {"message": "hi", "models": ["default"]},
         422, "models", "at least 2"),
    case("compare: five models", "POST", "/api/compare",
         {"message": "hi", "models": ["default"] * 5}, 422, "models", "at most 4"),
    case("compare: models of the wrong type", "POST", "/api/compare",
         {"message": "hi", "models": "default"}, 422, "models", "valid list"),
    case("compare: whitespace-only message", "POST", "/api/compare",
         {"message": "\n", "models": ["default", "base"]}, 422, "message", "blank"),
    case("compare: 1 MB message", "POST", "/api/compare",
         {"message": MEGABYTE, "models": ["default", "base"]}, 422, "message",
         "MAX_MESSAGE_CHARS"),
    case("compare: NUL in the message", "POST", "/api/compare",
         {"message": "\x00", "models": ["default", "base"]}, 422, "message", "NUL"),
    case("compare: max_new_tokens over the limit", "POST", "/api/compare",
         {"message": "hi", "models": ["default", "base"],
          "params": {"max_new_tokens": MAX_TOKENS + 1}}, 422, "max_new_tokens",
         "MAX_NEW_TOKENS_LIMIT"),
    case("compare: unknown model", "POST", "/api/compare",
         {"message": "hi", "models": ["default", "no-such-model"], "stream": False}, 404,
         "unknown_model", "no-such-model"),
    case("compare: unknown chat", "POST", "/api/compare",
         {"message": "hi", "models": ["default", "base"], "chat_id": "no-such-chat"}, 404,
         "unknown_chat", "no-such-chat"),
    case("compare stop: unknown compare", "POST", "/api/compare/no-such-compare/stop", NO_BODY,
         404, "unknown_turn", "no-such-compare"),
    case("compare reattach: unknown compare", "GET", "/api/compare/no-such-compare/stream",
         NO_BODY, 404, "unknown_turn", "no-such-compare"),
    case("vote: unknown chat", "POST", "/api/chats/no-such-chat/votes",
         {"compare_id": "c", "winner": "0"}, 404, "unknown_chat", "no-such-chat"),
    case("vote: unknown compare turn", "POST", "/api/chats/{compare_chat}/votes",
         {"compare_id": "no-such-compare", "winner": "0"}, 422, "no-such-compare"),
    case("vote: no such winner", "POST", "/api/chats/{compare_chat}/votes",
         lambda ids: {"compare_id": ids["compare"], "winner": "7"}, 422, "winner"),
    case("vote: winner of the wrong type", "POST", "/api/chats/{compare_chat}/votes",
         lambda ids: {"compare_id": ids["compare"], "winner": 0}, 422, "winner",
         "valid string"),
    case("vote: reason too long", "POST", "/api/chats/{compare_chat}/votes",
         lambda ids: {"compare_id": ids["compare"], "winner": "0", "reason": "r" * 2001}, 422,
         "reason", "at most 2000 characters"),
    case("vote: unknown field", "POST", "/api/chats/{compare_chat}/votes",
         lambda ids: {"compare_id": ids["compare"], "winner": "0", "colour": "red"}, 422,
         "colour"),
    case("votes: unknown chat", "GET", "/api/chats/no-such-chat/votes", NO_BODY, 404,
         "unknown_chat", "no-such-chat"),
    case("leaderboard: NUL in the query", "GET", "/api/leaderboard?x=%00", NO_BODY, 422,
         "query", "NUL"),
    case("leaderboard csv: NUL in the query", "GET", "/api/leaderboard.csv?x=%00", NO_BODY,
         422, "query", "NUL"),
    # -- prompt sets and runs ----------------------------------------------------------------
    case("sets: NUL in the query", "GET", "/api/prompt-sets?x=%00", NO_BODY, 422, "query",
         "NUL"),
    case("new set: empty body", "POST", "/api/prompt-sets", b"", 422, "JSON object", "empty"),
    case("new set: empty content", "POST", "/api/prompt-sets", {"content": ""}, 422, "content",
         "at least 1 character"),
    case("new set: whitespace-only content", "POST", "/api/prompt-sets",
         {"content": " \n \n"}, 400, "bad_prompt_set", "no prompts"),
    case("new set: NUL in the content", "POST", "/api/prompt-sets", {"content": "a\x00b"},
         422, "content", "NUL"),
    case("new set: a 1 MB prompt", "POST", "/api/prompt-sets",
         {"content": f"short\n{MEGABYTE}\n"}, 400, "bad_prompt_set", "line 2",
         f"at most {MAX_CHARS}", "MAX_MESSAGE_CHARS"),
    # Issue 24, finding 12: once 500s.
    case("new set: a 5,000-digit number (finding 12)", "POST", "/api/prompt-sets",
         {"content": '{"prompt": 1' + "0" * 5000 + "}", "format": "jsonl"}, 400,
         "bad_prompt_set", "integer string conversion"),
    case("new set: 100,000-deep nesting (finding 12)", "POST", "/api/prompt-sets",
         {"content": "[" * 100_000 + "]" * 100_000, "format": "json"}, 400, "bad_prompt_set",
         "nested too deeply"),
    case("new set: an escaped lone surrogate (finding 12)", "POST", "/api/prompt-sets",
         {"content": '{"prompt": "a\\ud800"}', "format": "jsonl"}, 400, "bad_prompt_set",
         "unpaired surrogate"),
    case("new set: an escaped NUL (finding 6)", "POST", "/api/prompt-sets",
         {"content": '{"prompt": "a\\u0000"}', "format": "jsonl"}, 400, "bad_prompt_set",
         "NUL character"),
    case("new set: a bad JSONL line", "POST", "/api/prompt-sets",
         {"content": JSONL_BAD_LINE, "format": "jsonl"}, 400, "line 2", "not JSON"),
    case("new set: unknown format", "POST", "/api/prompt-sets",
         {"content": "hi", "format": "pdf"}, 422, "format"),
    case("new set: unknown field", "POST", "/api/prompt-sets",
         {"content": "hi", "colour": "red"}, 422, "colour"),
    case("set: unknown set", "GET", "/api/prompt-sets/no-such-set", NO_BODY, 404,
         "unknown_prompt_set", "no-such-set"),
    case("delete set: unknown set", "DELETE", "/api/prompt-sets/no-such-set", NO_BODY, 404,
         "unknown_prompt_set", "no-such-set"),
    case("run: unknown set", "POST", "/api/prompt-sets/no-such-set/runs",
         {"models": ["default"]}, 404, "unknown_prompt_set", "no-such-set"),
    case("run: no models", "POST", "/api/prompt-sets/{set}/runs", {"models": []}, 422,
         "models", "at least 1"),
    case("run: five models", "POST", "/api/prompt-sets/{set}/runs",
         {"models": ["default"] * 5}, 422, "models", "at most 4"),
    case("run: unknown model", "POST", "/api/prompt-sets/{set}/runs",
         {"models": ["no-such-model"]}, 404, "unknown_model", "no-such-model"),
    case("run: max_new_tokens over the limit", "POST", "/api/prompt-sets/{set}/runs",
         {"models": ["default"], "params": {"max_new_tokens": MAX_TOKENS + 1}}, 422,
         "max_new_tokens", "MAX_NEW_TOKENS_LIMIT"),
    case("run: system prompt over the limit", "POST", "/api/prompt-sets/{set}/runs",
         {"models": ["default"], "params": {"system": MEGABYTE}}, 422, "system",
         "MAX_MESSAGE_CHARS"),
    case("runs of a set: unknown set", "GET", "/api/prompt-sets/no-such-set/runs", NO_BODY,
         404, "unknown_prompt_set", "no-such-set"),
    case("runs: NUL in the query", "GET", "/api/runs?x=%00", NO_BODY, 422, "query", "NUL"),
    case("get run: unknown run", "GET", "/api/runs/no-such-run", NO_BODY, 404, "unknown_run",
         "no-such-run"),
    case("delete run: unknown run", "DELETE", "/api/runs/no-such-run", NO_BODY, 404,
         "unknown_run", "no-such-run"),
    case("run events: unknown run", "GET", "/api/runs/no-such-run/events", NO_BODY, 404,
         "unknown_run", "no-such-run"),
    case("stop run: unknown run", "POST", "/api/runs/no-such-run/stop", NO_BODY, 404,
         "unknown_run", "no-such-run"),
    case("stop run: a run that is not running", "POST", "/api/runs/{run}/stop", NO_BODY, 409,
         "run_busy", "not running"),
    case("resume: unknown run", "POST", "/api/runs/no-such-run/resume", NO_BODY, 404,
         "unknown_run", "no-such-run"),
    case("resume: nothing left", "POST", "/api/runs/{run}/resume", NO_BODY, 422,
         "nothing left"),
    case("row vote: unknown run", "POST", "/api/runs/no-such-run/votes",
         {"index": 0, "winner": "0"}, 404, "unknown_run", "no-such-run"),
    case("row vote: negative index", "POST", "/api/runs/{run}/votes",
         {"index": -1, "winner": "0"}, 422, "index", "greater than or equal to 0"),
    case("row vote: huge index", "POST", "/api/runs/{run}/votes",
         {"index": 10**30, "winner": "0"}, 422, "no prompt", str(10**30)),
    case("row vote: no such winner", "POST", "/api/runs/{run}/votes",
         {"index": 0, "winner": "7"}, 422, "winner"),
    case("row vote: index of the wrong type", "POST", "/api/runs/{run}/votes",
         {"index": "first", "winner": "0"}, 422, "index", "valid integer"),
    case("export run: unknown format", "GET", "/api/runs/{run}/export?format=pdf", NO_BODY, 422,
         "format", "'markdown', 'jsonl' or 'csv'"),
    case("export run: unknown run", "GET", "/api/runs/no-such-run/export", NO_BODY, 404,
         "unknown_run", "no-such-run"),
    # -- /v1, in OpenAI's shape --------------------------------------------------------------
    case("v1 models: NUL in the query", "GET", "/v1/models?x=%00", NO_BODY, 400,
         "invalid_request_error", "NUL"),
    case("v1 model: unknown model", "GET", "/v1/models/no-such-model", NO_BODY, 404,
         "not_found_error", "no-such-model"),
    case("v1 completions: no prompt", "POST", "/v1/completions", {"model": "default"}, 400,
         '"param":"prompt"'),
    case("v1 completions: prompt of the wrong type", "POST", "/v1/completions",
         {"model": "default", "prompt": {"text": "hi"}}, 400, '"param":"prompt"',
         "list of token ids"),
    case("v1 completions: negative token id", "POST", "/v1/completions",
         {"model": "default", "prompt": [1, -2]}, 400, '"param":"prompt"'),
    case("v1 completions: NUL in the prompt", "POST", "/v1/completions",
         {"model": "default", "prompt": "a\x00"}, 400, '"param":"prompt"', "NUL"),
    case("v1 completions: 1 MB prompt", "POST", "/v1/completions",
         {"model": "default", "prompt": MEGABYTE}, 400, '"param":"prompt"',
         "MAX_MESSAGE_CHARS"),
    case("v1 completions: logprobs over 20", "POST", "/v1/completions",
         {"model": "default", "prompt": "hi", "logprobs": 21}, 400, '"param":"logprobs"'),
    case("v1: tools of the wrong shape", "POST", "/v1/chat/completions",
         v1(tools=[{"type": "function", "function": {"name": ""}}]), 400,
         '"param":"tools[0].function.name"'),
    case("v1: a tool result with no call before it", "POST", "/v1/chat/completions",
         v1(messages=[{"role": "tool", "content": {"not": "text"}}]), 400,
         '"param":"messages[0].content"'),
    case("v1: empty body", "POST", "/v1/chat/completions", b"", 400, "invalid_request_error",
         "JSON object", "empty"),
    case("v1: not JSON", "POST", "/v1/chat/completions", raw('{"model": '), 400,
         "JSON decode error", "position 10"),
    case("v1: invalid UTF-8", "POST", "/v1/chat/completions", b'{"model": "\xff"}', 400,
         "not valid UTF-8"),
    case("v1: whitespace-only message", "POST", "/v1/chat/completions", v1_says(" \n"), 400,
         '"param":"messages[0].content"', "whitespace only"),
    case("v1: 1 MB message", "POST", "/v1/chat/completions", v1_says(MEGABYTE), 400,
         '"param":"messages[0].content"', f"at most {MAX_CHARS} characters",
         "MAX_MESSAGE_CHARS"),
    case("v1: 1 MB text part", "POST", "/v1/chat/completions",
         v1_says([{"type": "text", "text": "hi"}, {"type": "text", "text": MEGABYTE}]), 400,
         '"param":"messages[0].content[1].text"', "MAX_MESSAGE_CHARS"),
    case("v1: body over MAX_REQUEST_BYTES", "POST", "/v1/chat/completions",
         v1_says(OVER_BODY), 413, "body_too_large", "MAX_REQUEST_BYTES"),
    case("v1: NUL in a message", "POST", "/v1/chat/completions", v1_says("a\x00"), 400,
         '"param":"messages[0].content"', "NUL"),
    case("v1: unpaired surrogate", "POST", "/v1/chat/completions",
         raw('{"model": "default", "messages": [{"role": "user", "content": "\\udc00"}]}'),
         400, "unpaired surrogate"),
    case("v1: messages of the wrong type", "POST", "/v1/chat/completions",
         v1(messages="hi"), 400, '"param":"messages"', "valid list"),
    case("v1: stream of the wrong type", "POST", "/v1/chat/completions", v1(stream="yes"), 400,
         '"param":"stream"', "valid boolean"),
    case("v1: unknown field", "POST", "/v1/chat/completions", v1(colour="red"), 400,
         "unrecognized request argument supplied: colour", '"param":"colour"'),
    case("v1: negative temperature", "POST", "/v1/chat/completions", v1(temperature=-1), 400,
         '"param":"temperature"', "greater than or equal to 0"),
    case("v1: Infinity", "POST", "/v1/chat/completions",
         raw('{"model": "default", "messages": [{"role": "user", "content": "hi"}], '
             '"top_p": Infinity}'), 400, '"param":"top_p"', "inf"),
    case("v1: max_tokens over the limit", "POST", "/v1/chat/completions",
         v1(max_tokens=MAX_TOKENS + 1), 400, '"param":"max_tokens"',
         f"less than or equal to {MAX_TOKENS}", "MAX_NEW_TOKENS_LIMIT"),
    case("v1: max_completion_tokens over the limit", "POST", "/v1/chat/completions",
         v1(max_completion_tokens=10**30), 400, '"param":"max_completion_tokens"',
         "MAX_NEW_TOKENS_LIMIT"),
    case("v1: unknown model", "POST", "/v1/chat/completions", v1(model="no-such-model"), 404,
         "not_found_error", "no-such-model"),
    GOOD,
]


def _with_ids(value: Any, ids: Ids) -> Any:
    return value(ids) if callable(value) else value


async def send(http: httpx.AsyncClient, item: Case, ids: Ids) -> httpx.Response:
    path = item.path.format(**ids)
    body = _with_ids(item.body, ids)
    if body is NO_BODY:
        return await http.request(item.method, path)
    if isinstance(body, bytes):
        return await http.request(item.method, path, content=body,
                                  headers={"content-type": "application/json"})
    return await http.request(item.method, path, json=body)


@pytest.fixture(scope="module")
async def gate(tmp_path_factory: pytest.TempPathFactory
               ) -> AsyncIterator[tuple[httpx.AsyncClient, Ids]]:
    """One gateway for the table, with a chat, a compare, a prompt set and a finished run to
    aim at."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        app = gateway(tmp_path_factory.mktemp("bad-input"), monkeypatch, **LIMITS)
        async with Client(app) as http:
            first = (await http.post("/api/chat", json=chat(message="first"))).json()
            messages = (await http.get(f"/api/chats/{first['chat_id']}")).json()["messages"]
            compared = (await http.post("/api/compare", json={
                "message": "compare", "models": ["default", "base"], "stream": False})).json()
            made = (await http.post("/api/prompt-sets", json={"content": "one\ntwo\n"})).json()
            run = (await http.post(f"/api/prompt-sets/{made['id']}/runs", json={
                "models": ["default"], "params": {"max_new_tokens": 8}})).json()

            async def finished() -> bool:
                return (await http.get(f"/api/runs/{run['id']}")).json()["status"] == "complete"

            await eventually(finished)
            yield http, {"chat": first["chat_id"], "user": messages[0]["id"],
                         "reply": first["turn_id"], "compare_chat": compared["chat_id"],
                         "compare": compared["compare_id"], "set": made["id"], "run": run["id"]}


def _route(method: str, path: str, routes: set[tuple[str, str]]) -> tuple[str, str] | None:
    """The OpenAPI (method, path) that a concrete request goes to."""
    bare = urlsplit(path).path
    if (method, bare) in routes:
        return method, bare
    for route_method, template in sorted(routes):
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if route_method == method and re.fullmatch(pattern, bare):
            return route_method, template
    return None


def test_every_route_of_the_schema_has_a_case(tmp_path: Path, monkeypatch) -> None:
    """A new route without a row here fails this test (the page's static files, mounted at /,
    are not in the schema)."""
    schema = gateway(tmp_path, monkeypatch, **LIMITS).openapi()["paths"]
    routes = {(method.upper(), path) for path, ops in schema.items() for method in ops}
    covered = {_route(item.method, item.path, routes) for item in CASES}
    assert None not in covered, [c.path for c in CASES if _route(c.method, c.path, routes)
                                 is None]
    assert sorted(routes - covered) == []


@pytest.fixture(scope="module")
async def routes(gate) -> set[tuple[str, str]]:
    """Every (method, path template) of the gateway's OpenAPI schema."""
    http, _ = gate
    schema = (await http.get("/openapi.json")).json()["paths"]
    return {(method.upper(), path) for path, ops in schema.items() for method in ops}


def answer_text(response: httpx.Response, ids: Ids, limit: int = 160) -> str:
    """The status and the error's message as the API returned it (our `detail`, FastAPI's
    list of field errors, or OpenAI's `error`), shortened; the run's own ids named instead."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.is_success and isinstance(data, dict) and "content" in data:
        said = f"answered {data['content']!r}"
    elif isinstance(data, dict) and isinstance(data.get("error"), dict):  # /v1
        error = data["error"]
        param = f" (param {error['param']})" if error.get("param") else ""
        said = f"{error.get('code') or error.get('type')}{param}: {error.get('message')}"
    elif isinstance(data, dict) and isinstance(data.get("detail"), dict):
        said = f"{data['detail'].get('code')}: {data['detail'].get('message')}"
    elif isinstance(data, dict) and isinstance(data.get("detail"), list):
        said = "; ".join(f"{'.'.join(str(part) for part in error.get('loc', ()))}: "
                         f"{error.get('msg')}" for error in data["detail"])
    else:
        said = str(data.get("detail") if isinstance(data, dict) else response.text)
    for name, value in ids.items():
        said = said.replace(value, f"<{name} id>")
    said = " ".join(said.split())
    if len(said) > limit:
        said = said[:limit - 1].rstrip() + "…"
    return f"{response.status_code} {said}"


@pytest.mark.parametrize("item", CASES, ids=[item.label for item in CASES])
async def test_bad_input_gets_a_4xx_that_names_the_problem(gate, routes, reliability,
                                                           item: Case) -> None:
    http, ids = gate
    response = await send(http, item, ids)
    text = response.text
    assert response.status_code == item.status, text[:2000]
    missing = [word for word in item.words if word not in text]
    assert missing == [], text[:2000]
    if item.path.startswith("/v1/") and response.status_code >= 400:
        assert set(response.json()) == {"error"}, text[:2000]  # OpenAI's shape
    assert (await http.get("/api/health")).status_code == 200  # still serving
    route = _route(item.method, item.path.format(**ids), routes)
    assert route is not None, item.path
    wrong = item.label.split(": ", 1)[-1]
    reliability.record("bad-input", f"{route[0]} {route[1]}: {wrong}",
                       answer_text(response, ids))


TEXTS = {
    "emoji": "Llamas 🦙 and a family 👩‍👩‍👧 with flags 🇯🇵 and skin tones 👋🏽",
    "CJK": "你好，世界。日本語のテキスト、한국어 텍스트",
    "controls": "bell \x07, escape \x1b[31mred\x1b[0m, DEL \x7f, NEL \x85, LS \u2028 end",
    "combining": "e\u0301 (e and a combining acute), zero\u200bwidth, RTL \u202eabc",
}


@pytest.mark.parametrize("name", list(TEXTS))
async def test_emoji_cjk_and_control_characters_are_taken_and_kept_intact(gate, name: str
                                                                          ) -> None:
    http, _ = gate
    text = TEXTS[name]
    made = await http.post("/api/chats", json={"title": text[:200], "system": text})
    assert made.status_code == 201, made.text
    chat_id = made.json()["id"]
    reply = await http.post("/api/chat", json=chat(message=text, chat_id=chat_id))
    assert reply.status_code == 200, reply.text
    assert reply.json()["content"].endswith(text)  # the box got it as sent
    stored = (await http.get(f"/api/chats/{chat_id}")).json()
    assert (stored["title"], stored["system"]) == (text[:200], text)
    assert stored["messages"][0]["content"] == text
    renamed = await http.patch(f"/api/chats/{chat_id}", json={"title": text[:200]})
    assert renamed.status_code == 200 and renamed.json()["title"] == text[:200]
    exported = await http.get(f"/api/chats/{chat_id}/export", params={"format": "json"})
    assert exported.json()["messages"][0]["content"] == text

    compared = await http.post("/api/compare", json={
        "message": text, "models": ["default", "base"], "stream": False})
    assert compared.status_code == 200, compared.text
    assert all(slot["content"].endswith(text) for slot in compared.json()["slots"])

    made_set = await http.post("/api/prompt-sets", json={
        "content": json.dumps({"prompt": text, "reference": text}) + "\n", "name": text[:200]})
    assert made_set.status_code == 201, made_set.text
    prompts = (await http.get(f"/api/prompt-sets/{made_set.json()['id']}")).json()["prompts"]
    assert (prompts[0]["prompt"], prompts[0]["reference"]) == (text, text)

    completion = await http.post("/v1/chat/completions", json=v1_says(text))
    assert completion.status_code == 200, completion.text
    assert completion.json()["choices"][0]["message"]["content"].endswith(text)


LIMITED: list[tuple[str, str, Callable[[str], Any], Callable[[int], Any], str]] = [
    # (name, path, a body with this message, a body asking for this many tokens, its param)
    ("/api/chat", "/api/chat", lambda text: chat(message=text),
     lambda n: chat(params={"max_new_tokens": n}), "max_new_tokens"),
    ("/api/compare", "/api/compare",
     lambda text: {"message": text, "models": ["default", "base"], "stream": False},
     lambda n: {"message": "hi", "models": ["default", "base"], "stream": False,
                "params": {"max_new_tokens": n}}, "max_new_tokens"),
    ("prompt sets", "/api/prompt-sets",
     lambda text: {"content": json.dumps({"prompt": text}) + "\n"}, None, ""),
    ("prompt set runs", "/api/prompt-sets/{set}/runs",
     lambda text: {"models": ["default"], "params": {"system": text}},
     lambda n: {"models": ["default"], "params": {"max_new_tokens": n}}, "max_new_tokens"),
    ("/v1/chat/completions", "/v1/chat/completions", v1_says, lambda n: v1(max_tokens=n),
     "max_tokens"),
]


def test_the_limits_are_settings_of_the_gateway(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MAX_MESSAGE_CHARS", "4000")
    monkeypatch.setenv("MAX_NEW_TOKENS_LIMIT", "512")
    read = load_settings(base_model_path="/m")
    assert (read.max_message_chars, read.max_new_tokens_limit) == (4000, 512)
    for key, value in (("max_message_chars", 0), ("max_message_chars", 10**8),
                       ("max_new_tokens_limit", 0), ("max_new_tokens_limit", 10**7)):
        with pytest.raises(SettingsError, match=key.upper()):
            load_settings(base_model_path="/m", **{key: value})
    boxes = tmp_path / "boxes.ini"
    boxes.write_text("[a100]\nssh_host = a100\nmax_new_tokens_limit = 64\n")
    with pytest.raises(SettingsError, match="MAX_NEW_TOKENS_LIMIT is a setting of the gateway"):
        box_definitions(load_settings(base_model_path="/m", boxes=str(boxes)))


@pytest.mark.parametrize("name, path, with_text, with_tokens, param", LIMITED,
                         ids=[item[0] for item in LIMITED])
async def test_the_settings_limits_hold_at_their_exact_bound(gate, name, path, with_text,
                                                             with_tokens, param) -> None:
    http, ids = gate
    path = path.format(**ids)
    at = await http.post(path, json=with_text("y" * MAX_CHARS))
    assert at.status_code in (200, 201), at.text
    over = await http.post(path, json=with_text("y" * (MAX_CHARS + 1)))
    refused = 400 if path.startswith("/v1/") or name == "prompt sets" else 422
    assert over.status_code == refused, over.text
    assert "MAX_MESSAGE_CHARS" in over.text and str(MAX_CHARS) in over.text
    assert str(MAX_CHARS + 1) in over.text  # how long it was
    if with_tokens is None:
        return
    at = await http.post(path, json=with_tokens(MAX_TOKENS))
    assert at.status_code in (200, 201), at.text
    over = await http.post(path, json=with_tokens(MAX_TOKENS + 1))
    assert over.status_code in (400, 422), over.text
    assert "MAX_NEW_TOKENS_LIMIT" in over.text and str(MAX_TOKENS) in over.text
    assert param in over.text


async def test_nothing_refused_reached_storage_and_the_gateway_still_serves(gate) -> None:
    http, _ = gate
    chats = (await http.get("/api/chats", params={"limit": 500})).json()["chats"]
    for item in chats:
        stored = (await http.get(f"/api/chats/{item['id']}")).json()
        texts = [stored["title"], stored["system"] or "",
                 *(m["content"] for m in stored["messages"])]
        assert not any("\x00" in text for text in texts), item["id"]
        assert not any(len(text) > 2 * MAX_CHARS for text in texts), item["id"]
    for made in (await http.get("/api/prompt-sets")).json()["sets"]:
        assert "\x00" not in made["name"]
    assert (await http.get("/api/health")).json()["status"] == "ok"
    good = await send(http, GOOD, {})
    assert good.status_code == 200 and "still here?" in good.json()["content"]


async def test_a_nul_never_reaches_either_database(database_url, tmp_path: Path,
                                                   monkeypatch) -> None:
    """PostgreSQL refuses NUL in text (SQLite would keep it): refused before storage, on
    both, naming the field; emoji and CJK are stored intact on both."""
    app = gateway(tmp_path, monkeypatch, **LIMITS, database_url=database_url)
    async with Client(app) as http:
        refused = [
            await http.post("/api/chats", json={"title": "a\x00b"}),
            await http.post("/api/chat", json=chat(message="a\x00b")),
            await http.post("/api/chats", json={"system": "\x00"}),
            await http.get("/api/chats", params={"q": "a\x00b"}),
            await http.get("/api/chats/a%00b"),
            await http.post("/api/prompt-sets", json={"content": "hi", "name": "a\x00b"}),
            await http.post("/v1/chat/completions", json=v1_says("a\x00b")),
        ]
        assert [r.status_code for r in refused] == [422] * 6 + [400]
        assert all("NUL" in r.text for r in refused)
        assert (await http.get("/api/chats")).json()["chats"] == []
        assert (await http.get("/api/prompt-sets")).json()["sets"] == []
        reply = await http.post("/api/chat", json=chat(message=TEXTS["emoji"] + TEXTS["CJK"]))
        stored = (await http.get(f"/api/chats/{reply.json()['chat_id']}")).json()
        assert stored["messages"][0]["content"] == TEXTS["emoji"] + TEXTS["CJK"]
