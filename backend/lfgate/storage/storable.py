"""What text the gateway can store, for every way text comes in (a request's JSON, a file
parsed inside one): PostgreSQL refuses a NUL in text, and an unpaired surrogate ("\\ud800"
parses as JSON) is no Unicode text at all, so neither may reach storage (or an answer)."""

from __future__ import annotations

import re
from typing import Any


def why_unstorable(text: str) -> str | None:
    """Why `text` cannot be stored, said for a person, or None."""
    if "\x00" in text:
        return (f"Text holds a NUL character (\\u0000) at position {text.index(chr(0))}, "
                "which cannot be stored: remove it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        shown = ascii(text[exc.start])[1:-1]
        return (f"Text holds an unpaired surrogate ({shown}) at position {exc.start}, which "
                "is not Unicode text: send UTF-8")
    return None


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def storable_text(text: str) -> str:
    """`text` with what no backend can store replaced by U+FFFD: a NUL (a byte-level
    tokenizer has a token for it, so a model can write one) and unpaired surrogates (a
    wrapper's JSON can carry "\\ud800"). For text that must be kept rather than refused:
    a reply from the box, whatever it holds, is the user's and is never lost for one
    character."""
    return _UNSTORABLE.sub(REPLACEMENT, text) if _UNSTORABLE.search(text) else text


def storable_value(value: Any) -> Any:
    """A JSON value with every string in it (keys too) made storable (`storable_text`)."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(k) if isinstance(k, str) else k: storable_value(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_value(v) for v in value]
    return value
