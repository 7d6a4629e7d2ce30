"""The wrapper's ToolCallGate (remote/wrapper_serve.py): a reply to a chat that offers tools
streams its words as they come and holds a tool call's text, whatever the chunking.
Property-based: wrapper output is an input surface (a model writes anything)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "remote"))

from wrapper_serve import ToolCallGate

MARKERS = ["<tool_call>", "Action:", '{"', "[TOOL_CALLS] ["]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def cut(text: str, cuts: list[int]) -> list[str]:
    """`text` in chunks, cut at the given places."""
    places = sorted({c % (len(text) + 1) for c in cuts})
    bounds = [0, *places, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def run(marker: str, chunks: list[str]) -> tuple[str, str, bool]:
    gate = ToolCallGate(marker)
    shown = "".join(gate.feed(chunk) for chunk in chunks)
    return shown, gate.flush(), gate.holding


@given(marker=st.sampled_from(MARKERS), text=st.text(max_size=200),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=20))
def test_nothing_is_lost_or_doubled_and_the_marker_is_never_shown(marker, text, cuts):
    shown, held, holding = run(marker, cut(text, cuts))
    assert shown + held == text
    assert marker not in shown
    if marker in text:
        assert holding and held.startswith(marker) and shown == text[:text.index(marker)]
    else:  # words: at most the start of a marker still waits at the end
        assert marker.startswith(held) or not held


@given(words=st.text(alphabet=st.characters(blacklist_characters="<"), max_size=80),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=30))
def test_words_before_a_call_stream_and_the_call_is_held(words, cuts):
    shown, held, holding = run("<tool_call>", cut(words + CALL, cuts))
    assert (shown, held, holding) == (words, CALL, True)


def test_a_template_without_a_marker_holds_the_whole_reply():
    shown, held, holding = run("", ["get_weather\n", '{"city": "Paris"}'])
    assert (shown, held, holding) == ("", 'get_weather\n{"city": "Paris"}', True)
