"""Issue 24, finding 16: one escaping for every Markdown export (lfgate.storage.markdown_text).
Whatever a model, a prompt file or an import wrote, rendered by a CommonMark renderer that
lets raw HTML through (markdown-it with html on, as permissive viewers are), makes no element
of its own; its code samples stay as written."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from lfgate.storage.chat_store import markdown
from lfgate.storage.compare_markdown import compare_markdown
from lfgate.storage.markdown_text import escape_html
from lfgate.storage.run_export import run_markdown

RENDER = MarkdownIt("commonmark", {"html": True})
INJECTION = '</td></tr></table><img src="x" onerror="alert(1)"><script>alert(2)</script>'
CODE = "```python\nif a < b and c > d:\n    print('<b>')\n```"
# Tags the exports themselves write; anything else in the HTML came from the text.
OURS = {"h1", "h2", "p", "em", "strong", "table", "tr", "th", "td", "code", "pre", "sub",
        "blockquote", "br", "hr", "ul", "ol", "li", "a", "h3", "h4", "h5", "h6"}


def tags(markdown_text: str) -> set[str]:
    return {m.lower() for m in re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", RENDER.render(markdown_text))}


pieces = st.lists(st.sampled_from(["<", ">", "&", "`", "``", "```", "~~~", "\n", " ", "a",
                                   "img", "script", "onerror=", "/", '"', "</td>", "\n```\n",
                                   "<img src=x onerror=y>", "<script>", "    "]),
                  max_size=30).map("".join)


@given(pieces)
@example("```<`<img src=x onerror=y>")  # not a fence: a backtick in its info string
@example("`\n><img src=x onerror=y>`")  # a quote ends the paragraph: no span across
@example("`\n`<img src=x onerror=y>`")  # spans pair leftmost first, across lines
@example("\\`<img src=x onerror=y>`")  # an escaped backtick opens nothing
def test_no_text_makes_an_element_of_its_own(text):
    assert tags(escape_html(text)) <= OURS - {"a"}


@given(st.text(alphabet=st.characters(exclude_characters="`~"), max_size=60))
def test_text_without_code_is_only_entity_escaped(text):
    escaped = escape_html(text)
    assert escaped == text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_code_samples_stay_as_written():
    assert escape_html(CODE) == CODE
    assert escape_html("use `a<b` here <b>") == "use `a<b` here &lt;b&gt;"
    assert "if a &lt; b" in RENDER.render(escape_html(CODE))  # rendered as the code's text


def compare_export(reply: str) -> str:
    chat = {"id": "c1", "title": INJECTION, "created_at": "2026-12-07T00:00:00", "system":
            INJECTION, "compare": {"slots": [{"model": "<b>m</b>", "leaf_id": "r1"},
                                             {"model": "n", "leaf_id": "r2"}]}}
    messages = [
        {"id": "u1", "parent_id": None, "role": "user", "content": INJECTION,
         "status": "complete", "provenance": None},
        {"id": "r1", "parent_id": "u1", "role": "assistant", "content": reply,
         "status": "complete", "provenance": {"model": "<i>x</i>", "compare_id": "k"}},
        {"id": "r2", "parent_id": "u1", "role": "assistant", "content": CODE,
         "status": "complete", "provenance": {"model": "n", "compare_id": "k"}}]
    votes = [{"compare_id": "k", "winner": "0", "models": ["<b>m</b>", "n"],
              "reason": INJECTION}]
    return compare_markdown({"chat": chat, "messages": messages}, votes)


def test_every_export_keeps_model_and_user_html_inert():
    made = compare_export(INJECTION)
    assert tags(made) <= OURS and "img" not in tags(made) and "script" not in tags(made)
    assert CODE in made  # the other column's code sample as written
    chat = {"id": "c1", "title": INJECTION, "created_at": "2026-12-07T00:00:00",
            "system": INJECTION, "active_leaf_id": "r1"}
    messages = [
        {"id": "u1", "parent_id": None, "role": "user", "content": INJECTION,
         "status": "complete", "provenance": None},
        {"id": "r1", "parent_id": "u1", "role": "assistant", "content": INJECTION + "\n\n" + CODE,
         "status": "stopped", "provenance": {"model": "<b>m</b>", "adapter_path": "<i>a</i>"}}]
    made = markdown({"chat": chat, "messages": messages})
    assert tags(made) <= OURS and CODE in made
    run = {"id": "r", "set_name": INJECTION, "status": "complete", "mode": "batch",
           "progress": {"done": 1, "total": 1}, "params": {}, "models": ["<b>m</b>"],
           "averages": {"<b>m</b>": {"bleu": None, "chrf": None, "rouge_l": None,
                                      "scored": 0}},
           "rows": [{"index": 0, "prompt": INJECTION, "system": INJECTION,
                     "reference": INJECTION, "vote": {"winner": "0", "reason": INJECTION},
                     "cells": [{"slot": 0, "model": "<b>m</b>", "status": "complete",
                                "content": INJECTION + "\n\n" + CODE, "error": None,
                                "ttft_ms": None, "total_ms": None, "scores": {}}]}]}
    made = run_markdown(run)
    assert tags(made) <= OURS and CODE in made
