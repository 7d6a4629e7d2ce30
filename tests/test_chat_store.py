"""ChatStore on both databases: SQLite and a real PostgreSQL server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from lfgate.storage.chat_store import ChatStore
from lfgate.storage.database import Database, open_database
from lfgate.storage.errors import UnknownChat, UnknownMessage


@pytest.fixture
async def store(database_url):
    database = await open_database(database_url)
    yield ChatStore(database)
    await database.close()


async def test_migrations_reach_the_latest_revision(database_url):
    database = await open_database(database_url)
    try:
        assert await database.revision() == "0005"
        await database.migrate()  # again: nothing to do, nothing lost
        assert await database.revision() == "0005"
    finally:
        await database.close()


async def test_an_older_database_is_upgraded_without_loss(database_url):
    """A 0001 database (written with 0001's columns, as that gateway did) gains 0002's."""
    first = Database(database_url)
    await first.migrate("0001")
    async with first.engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO chats (id, title, created_at, updated_at, archived, model, params) "
            "VALUES ('c1', 'kept across upgrades', :now, :now, false, 'default', '{}')"),
            {"now": datetime(2026, 1, 1, tzinfo=UTC)})
        await conn.execute(text(
            "INSERT INTO messages (id, chat_id, role, content, status, created_at, updated_at)"
            " VALUES ('m1', 'c1', 'user', 'hello', 'complete', :now, :now)"),
            {"now": datetime(2026, 1, 1, tzinfo=UTC)})
        await conn.execute(text("UPDATE chats SET active_leaf_id = 'm1'"))
    await first.close()

    latest = await open_database(database_url)
    try:
        store = ChatStore(latest)
        chat = await store.get_chat(chat_id="c1")
        assert (chat.title, chat.source) == ("kept across upgrades", "page")
        assert [m.content for m in await store.branch(chat_id="c1")] == ["hello"]
        assert await store.find_reply(thread_digest="0" * 64) is None
    finally:
        await latest.close()


async def test_chat_lifecycle(store):
    chat = await store.create_chat(title="First", model="base", system="Be brief.",
                                   params={"temperature": 0.2})
    got = await store.get_chat(chat_id=chat.id)
    assert (got.title, got.model, got.system, got.params) == ("First", "base", "Be brief.",
                                                              {"temperature": 0.2})
    changed = await store.update_chat(chat_id=chat.id, title="Renamed", archived=True)
    assert changed.title == "Renamed" and changed.archived
    assert await store.list_chats() == []
    assert [c.id for c in await store.list_chats(archived=True)] == [chat.id]
    with pytest.raises(ValueError):
        await store.update_chat(chat_id=chat.id, id="other")
    await store.delete_chat(chat_id=chat.id)
    with pytest.raises(UnknownChat):
        await store.get_chat(chat_id=chat.id)
    with pytest.raises(UnknownChat):
        await store.delete_chat(chat_id=chat.id)


async def test_messages_form_a_tree_and_the_active_branch_follows_the_newest(store):
    chat = await store.create_chat(title="tree")
    u1 = await store.add_message(chat_id=chat.id, parent_id=None, role="user", content="Q")
    a1 = await store.add_message(chat_id=chat.id, parent_id=u1.id, role="assistant",
                                 content="A", provenance={"adapter_path": "/runs/a"})
    regen = await store.add_message(chat_id=chat.id, parent_id=u1.id, role="assistant",
                                    content="A again", provenance={"adapter_path": "/runs/b"})
    edit = await store.add_message(chat_id=chat.id, parent_id=None, role="user", content="Q'")
    assert (await store.get_chat(chat_id=chat.id)).active_leaf_id == edit.id
    assert [m.content for m in await store.branch(chat_id=chat.id)] == ["Q'"]
    assert [m.content for m in await store.branch(chat_id=chat.id, leaf_id=a1.id)] == ["Q", "A"]
    regen_branch = await store.branch(chat_id=chat.id, leaf_id=regen.id)
    assert [m.provenance for m in regen_branch] == [None, {"adapter_path": "/runs/b"}]
    assert len(await store.messages(chat_id=chat.id)) == 4
    other = await store.create_chat(title="other")
    with pytest.raises(UnknownMessage):
        await store.add_message(chat_id=other.id, parent_id=u1.id, role="assistant",
                                content="x")


async def test_search_titles_and_text_newest_first(store):
    old = await store.create_chat(title="About LoRA")
    new = await store.create_chat(title="Unrelated")
    await store.add_message(chat_id=new.id, parent_id=None, role="user",
                            content="what does lora rank do? 100% sure")
    assert [c.id for c in await store.list_chats(q="LORA")] == [new.id, old.id]
    assert [c.id for c in await store.list_chats(q="100%")] == [new.id]
    assert await store.list_chats(q="1_0") == []  # `_` is a character, not a wildcard
    assert [c.id for c in await store.list_chats(limit=1, offset=1)] == [old.id]


async def test_a_streaming_reply_is_saved_as_it_grows_and_marked_interrupted(store):
    chat = await store.create_chat(title="stream")
    user = await store.add_message(chat_id=chat.id, parent_id=None, role="user", content="Hi")
    reply = await store.add_message(chat_id=chat.id, parent_id=user.id, role="assistant",
                                    content="", status="streaming")
    await store.update_message(message_id=reply.id, content="Hel")
    assert await store.mark_interrupted() == 1
    saved = (await store.branch(chat_id=chat.id))[-1]
    assert (saved.content, saved.status) == ("Hel", "interrupted")
    with pytest.raises(ValueError):
        await store.update_message(message_id=reply.id, status="done")
    with pytest.raises(UnknownMessage):
        await store.update_message(message_id="nope", content="x")


async def test_text_round_trips_exactly(store, database_url):
    chat = await store.create_chat(title="ünïcode 😀")
    content = "line\nnext\ttab 😀 ' \" \\ %_ " + "x" * 100_000
    message = await store.add_message(chat_id=chat.id, parent_id=None, role="user",
                                      content=content)
    assert (await store.branch(chat_id=chat.id))[0].content == content
    assert message.content == content
    if database_url.startswith("sqlite"):
        async with store._sessions() as session:  # WAL is what makes a crash lose little
            assert (await session.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
