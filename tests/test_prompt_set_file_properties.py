"""The prompt-set file as an input surface (issue 24, finding 12 and the property guard):
whatever a file holds, in any of its formats, parsing either refuses it with BadPromptSet
naming why, or returns prompts the gateway can store; never another exception (which the API
answered as a 500: a 5,000-digit number, 100,000-deep nesting, an escaped lone surrogate)."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lfgate.services.errors import BadPromptSet
from lfgate.services.evals.prompt_set_file import parse_prompt_set
from lfgate.storage.storable import why_unstorable

FORMATS = ("jsonl", "json", "csv", "lines")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=3),
    max_leaves=8)
records = st.dictionaries(st.sampled_from(["prompt", "system", "reference", "instruction",
                                           "input", "output", "other"]),
                          json_values | st.text(), max_size=4)
# Escapes a file may hold that JSON decodes into text the gateway cannot store.
tricky = st.sampled_from(["\\ud800", "\\udfff", "\\u0000", "\\ud83d\\ude00", "1" * 5000,
                          "[" * 3000 + "]" * 3000, "\\\\", '\\"'])


def check(content: str, kind: str) -> None:
    try:
        parsed = parse_prompt_set(content, format=kind)
    except BadPromptSet as exc:
        assert str(exc)
        return
    for prompt in parsed.prompts:
        for text in (prompt.prompt, prompt.system, prompt.reference):
            assert text is None or why_unstorable(text) is None
    for warning in parsed.warnings:
        assert why_unstorable(warning) is None


@settings(max_examples=150)
@given(st.lists(records, min_size=1, max_size=4), st.sampled_from(FORMATS))
def test_json_records_are_taken_or_refused_by_name(items, kind):
    if kind == "jsonl":
        content = "\n".join(json.dumps(item) for item in items)
    elif kind == "json":
        content = json.dumps(items)
    else:
        content = "\n".join(str(item.get("prompt", "")) for item in items)
    check(content, kind)


@settings(max_examples=150)
@given(st.text(max_size=200), st.sampled_from(FORMATS))
@example('{"prompt": 1' + "0" * 5000 + "}", "jsonl")
@example("[" * 100_000 + "]" * 100_000, "json")
@example('{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}", "jsonl")
@example('{"prompt": "a\\ud800"}', "jsonl")
@example('[{"prompt": "a\\u0000"}]', "json")
@example('[{"prompt": "x", "\\udc00": 1}]', "json")
def test_any_text_is_taken_or_refused_by_name(content, kind):
    check(content, kind)


@given(tricky, st.sampled_from(['{"prompt": "a%sb"}', '[{"prompt": "a%sb"}]',
                                '{"prompt": "p", "%s": 1}', '{"prompt": %s}']))
def test_escapes_that_decode_to_unstorable_text_are_refused(escape, template):
    kind = "json" if template.startswith("[") else "jsonl"
    check(template % escape, kind)


@pytest.mark.parametrize(("content", "said"), [
    ('{"prompt": 1' + "0" * 5000 + "}", "integer string conversion"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"prompt": "a\\ud800"}', "unpaired surrogate"),
    ('{"prompt": "a\\u0000"}', "NUL character"),
])
def test_the_probes_files_are_refused_with_their_reason(content, said):
    kind = "json" if content.startswith("[") else "jsonl"
    with pytest.raises(BadPromptSet, match=said):
        parse_prompt_set(content, format=kind)
