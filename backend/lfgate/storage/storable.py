"""What text the gateway can store, for every way text comes in (a request's JSON, a file
parsed inside one): PostgreSQL refuses a NUL in text, and an unpaired surrogate ("\\ud800"
parses as JSON) is no Unicode text at all, so neither may reach storage (or an answer)."""

from __future__ import annotations


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
