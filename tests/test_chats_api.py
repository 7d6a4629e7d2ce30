"""The conversations API in-process (no box needed), on SQLite and a real PostgreSQL."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from lfgate.app import create_app
from lfgate.config import load_settings


@pytest.fixture
async def client(database_url):
    app = create_app(load_settings(base_model_path="/models/m", adapter_path="/runs/a",
                                   database_url=database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            http.app = app
            yield http


SCRIPTED_WRAPPER = Path(__file__).parent / "rig" / "fake_wrappers" / "scripted_wrapper.py"


@pytest.fixture
async def scripted_client(database_url, monkeypatch):
    """The app with the scripted box double as its local box, for turns without a model."""
    monkeypatch.setenv("CHAT_MODE", "script")  # the double's hello reads it
    monkeypatch.setenv("LFGATE_SCRIPTED_LOAD_S", "0")
    monkeypatch.setenv("LFGATE_SCRIPTED_DELAY_S", "0")
    app = create_app(load_settings(
        ssh_host="", chat_mode="script", chat_script_path=str(SCRIPTED_WRAPPER),
        remote_python=sys.executable, base_model_path="/models/tiny-base",
        adapter_path="/runs/lora", database_url=database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            yield http


async def _tree(client) -> str:
    """A chat with a branch, written through the store as the chat flow would."""
    created = (await client.post("/api/chats", json={
        "title": "Tree", "system": "Be terse.", "params": {"temperature": 0.3}})).json()
    store = client.app.state.store
    u1 = await store.add_message(chat_id=created["id"], parent_id=None, role="user",
                                 content="Question?")
    await store.add_message(chat_id=created["id"], parent_id=u1.id, role="assistant",
                            content="Answer A", provenance={
                                "model": "default", "base_model_path": "/models/m",
                                "adapter_path": "/runs/a", "mode": "script"})
    await store.add_message(chat_id=created["id"], parent_id=u1.id, role="assistant",
                            content="Answer B", status="stopped", provenance={
                                "model": "base", "base_model_path": "/models/m",
                                "adapter_path": None, "mode": "cli"})
    return created["id"]


async def test_create_patch_list_delete(client):
    created = await client.post("/api/chats", json={"title": "One", "model": "base",
                                                    "params": {"top_k": 5}})
    assert created.status_code == 201
    chat = created.json()
    assert (chat["title"], chat["model"], chat["params"]) == ("One", "base", {"top_k": 5})
    patched = await client.patch(f"/api/chats/{chat['id']}", json={"title": "Two",
                                                                    "archived": True})
    assert patched.json()["title"] == "Two" and patched.json()["archived"] is True
    assert (await client.get("/api/chats")).json()["chats"] == []
    archived = (await client.get("/api/chats", params={"archived": True})).json()["chats"]
    assert [c["id"] for c in archived] == [chat["id"]]
    assert (await client.delete(f"/api/chats/{chat['id']}")).status_code == 204
    assert (await client.get(f"/api/chats/{chat['id']}")).status_code == 404
    assert (await client.delete(f"/api/chats/{chat['id']}")).status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"title": ""}, "title"),
    ({"params": {"temperature": "hot"}}, "temperature"),
    ({"colour": "red"}, "colour"),
])
async def test_bad_patches_name_the_field(client, body, field):
    chat = (await client.post("/api/chats", json={})).json()
    response = await client.patch(f"/api/chats/{chat['id']}", json=body)
    assert response.status_code == 422 and field in response.text


async def test_json_export_imports_back_to_an_identical_chat(client):
    chat_id = await _tree(client)
    exported = (await client.get(f"/api/chats/{chat_id}/export",
                                 params={"format": "json"})).json()
    imported = await client.post("/api/chats/import", json=exported)
    assert imported.status_code == 201
    again = (await client.get(f"/api/chats/{imported.json()['id']}/export",
                              params={"format": "json"})).json()

    def shape(export):
        ids = {m["id"]: i for i, m in enumerate(export["messages"])}
        chat = {k: v for k, v in export["chat"].items() if k not in ("id", "active_leaf_id")}
        return chat, ids[export["chat"]["active_leaf_id"]], [
            (m["role"], m["content"], m["status"], m["provenance"], ids.get(m["parent_id"]))
            for m in export["messages"]]

    assert shape(again) == shape(exported)


async def test_an_imported_moments_offset_is_kept_on_every_database(client):
    """Issue 24, finding 15: SQLite stored an imported `12:00+05:00` as 12:00Z (PostgreSQL
    as 07:00Z, which is right). Both now store the moment, in UTC."""
    chat_id = await _tree(client)
    exported = (await client.get(f"/api/chats/{chat_id}/export",
                                 params={"format": "json"})).json()
    exported["chat"]["created_at"] = "2026-01-01T12:00:00+05:00"
    for message in exported["messages"]:
        message["created_at"] = "2026-01-01T12:30:00-02:00"
    imported = await client.post("/api/chats/import", json=exported)
    assert imported.status_code == 201, imported.text
    again = (await client.get(f"/api/chats/{imported.json()['id']}/export",
                              params={"format": "json"})).json()
    moment = datetime.fromisoformat(again["chat"]["created_at"].replace("Z", "+00:00"))
    assert moment == datetime(2026, 1, 1, 7, 0, tzinfo=UTC)
    for message in again["messages"]:
        stamp = datetime.fromisoformat(message["created_at"].replace("Z", "+00:00"))
        assert stamp == datetime(2026, 1, 1, 14, 30, tzinfo=UTC)


async def test_markdown_export_names_each_replys_model(client):
    chat_id = await _tree(client)
    response = await client.get(f"/api/chats/{chat_id}/export", params={"format": "md"})
    assert response.headers["content-type"].startswith("text/markdown")
    text = response.text
    assert text.startswith("# Tree") and "Be terse." in text and "Question?" in text
    assert "Answer B" in text and "Answer A" not in text  # the active branch only
    assert "base (/models/m + base model only, cli mode)" in text and "[stopped]" in text


@pytest.mark.parametrize("broken", [
    {"format": "other", "version": 1, "chat": {}, "messages": []},
    {"format": "lfgate-chat", "version": 1, "chat": {"title": "x"}, "messages": []},
    {"format": "lfgate-chat", "version": 1,
     "chat": {"title": "x", "created_at": "2026-01-01T00:00:00Z",
              "updated_at": "2026-01-01T00:00:00Z"},
     "messages": [{"id": "a", "parent_id": "missing", "role": "user", "content": "hi",
                   "created_at": "2026-01-01T00:00:00Z"}]},
])
async def test_an_import_of_the_wrong_shape_is_a_422(client, broken):
    before = (await client.get("/api/chats")).json()["chats"]
    response = await client.post("/api/chats/import", json=broken)
    assert response.status_code == 422
    assert (await client.get("/api/chats")).json()["chats"] == before  # nothing half-made


async def test_oversized_bodies_are_a_413_and_nothing_is_made(database_url):
    app = create_app(load_settings(base_model_path="/m", database_url=database_url,
                                   max_request_bytes=4096))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            big = {"title": "x", "system": "y" * 10_000}
            assert (await http.post("/api/chats", json=big)).status_code == 413

            async def chunks():
                yield b'{"title": "x", "system": "'
                for _ in range(10):
                    yield b"z" * 1000
                yield b'"}'

            response = await http.post("/api/chats", content=chunks(),
                                       headers={"content-type": "application/json"})
            assert response.status_code == 413
            assert response.json()["detail"]["code"] == "body_too_large"
            assert (await http.get("/api/chats")).json()["chats"] == []
            assert (await http.post("/api/chats", json={"title": "small"})).status_code == 201


async def test_patching_active_leaf_id_switches_the_branch(client):
    chat_id = await _tree(client)
    chat = (await client.get(f"/api/chats/{chat_id}")).json()
    answer_a = next(m for m in chat["messages"] if m["content"] == "Answer A")
    assert chat["active_leaf_id"] != answer_a["id"]  # B, the newer sibling, is active
    response = await client.patch(f"/api/chats/{chat_id}",
                                  json={"active_leaf_id": answer_a["id"]})
    assert response.status_code == 200
    assert response.json()["active_leaf_id"] == answer_a["id"]
    assert (await client.get(f"/api/chats/{chat_id}")).json()["active_leaf_id"] == answer_a["id"]
    markdown = (await client.get(f"/api/chats/{chat_id}/export")).text
    assert "Answer A" in markdown and "Answer B" not in markdown  # what the model sees now


async def test_an_active_leaf_id_from_elsewhere_is_a_404_and_changes_nothing(client):
    chat_id = await _tree(client)
    other_id = await _tree(client)
    foreign = (await client.get(f"/api/chats/{other_id}")).json()["messages"][0]["id"]
    before = (await client.get(f"/api/chats/{chat_id}")).json()
    for bad in (foreign, "no-such-message", "x" * 64):
        response = await client.patch(f"/api/chats/{chat_id}",
                                      json={"active_leaf_id": bad, "title": "Renamed"})
        assert response.status_code == 404, response.text
        assert response.json()["detail"]["code"] == "unknown_message"
        assert bad in response.json()["detail"]["message"]
    assert (await client.get(f"/api/chats/{chat_id}")).json() == before
    missing_chat = await client.patch("/api/chats/nope", json={"active_leaf_id": foreign})
    assert missing_chat.json()["detail"]["code"] == "unknown_chat"


@pytest.mark.parametrize("key", ["title", "archived", "model", "active_leaf_id"])
async def test_null_for_a_key_that_cannot_be_empty_is_a_422(client, key):
    chat = (await client.post("/api/chats", json={})).json()
    response = await client.patch(f"/api/chats/{chat['id']}", json={key: None})
    assert response.status_code == 422 and key in response.text
    assert (await client.get(f"/api/chats/{chat['id']}")).json() == chat


async def test_an_untitled_chat_is_named_after_its_first_message(scripted_client):
    client = scripted_client

    async def say(chat_id: str, message: str) -> dict:
        response = await client.post("/api/chat", json={"message": message, "chat_id": chat_id,
                                                        "stream": False})
        assert response.status_code == 200, response.text
        return response.json()

    async def title(chat_id: str) -> str:
        return (await client.get(f"/api/chats/{chat_id}")).json()["title"]

    chat = (await client.post("/api/chats", json={})).json()
    assert chat["title"] == "New chat"
    reply = await say(chat["id"], "Plan a trip to Kyoto\nwith all the details")
    assert reply["content"] == ("Echo #1 from tiny-base + lora: Plan a trip to Kyoto\n"
                                "with all the details")
    assert await title(chat["id"]) == "Plan a trip to Kyoto"
    await say(chat["id"], "And Osaka?")
    assert await title(chat["id"]) == "Plan a trip to Kyoto"  # only the first message names it

    await client.patch(f"/api/chats/{chat['id']}", json={"title": "New chat"})
    await say(chat["id"], "Third")
    assert await title(chat["id"]) == "New chat"  # chosen by the user, on a chat with messages

    named = (await client.post("/api/chats", json={"title": "Mine"})).json()
    await say(named["id"], "Hello there")
    assert await title(named["id"]) == "Mine"
