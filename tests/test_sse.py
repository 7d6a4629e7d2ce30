"""SSE framing: every event is exactly two lines for any client's line splitter."""

from __future__ import annotations

import json

from lfgate.api.sse import sse_event


def test_model_text_never_breaks_an_event_into_more_lines():
    text = "a\nb\r\nc\x85d\u2028e\u2029f\x1cg\x1d\x1e😀 é"
    event = sse_event("delta", {"text": text})
    lines = event.splitlines()  # the strictest splitter: it knows every Unicode line break
    assert len(lines) == 3 and lines[0] == "event: delta" and lines[2] == ""
    assert json.loads(lines[1].removeprefix("data: ")) == {"text": text}
    assert event.endswith("\n\n")
