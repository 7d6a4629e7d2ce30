"""What the user types at `lfgate chat`'s prompt, one message at a time: a line, or several.

Several lines make one message three ways: a line ending in a backslash continues on the
next; `\"\"\"` opens a block that the next line ending in `\"\"\"` closes (as ollama's prompt
does); and a paste, where the terminal marks pastes (bracketed paste, which GNU readline
turns on), arrives whole however many lines it has."""

from __future__ import annotations

from collections.abc import Callable

PROMPT = ">>> "
MORE = "... "
BLOCK = '"""'
CONTINUES = "\\"

HOW_TO_TYPE = (
    f"Enter sends; a line ending in \\ goes on to the next, {BLOCK} opens and closes a block, "
    "a paste is one message.\n"
    "Ctrl-C stops a reply; Ctrl-D (or Ctrl-C at the prompt) ends the chat.")


class Dropped(Exception):
    """Ctrl-C half-way through a message of several lines: that message is dropped."""


def read_message(read_line: Callable[[str], str]) -> str | None:
    """The next message (maybe empty: nothing to send), or None at the end of the input
    (Ctrl-D at the prompt). `read_line` is `input`: it raises EOFError at the end and
    KeyboardInterrupt on Ctrl-C, which at the prompt is the caller's to take (the chat
    ends); half-way through a message, Ctrl-C drops that message (Dropped) and Ctrl-D sends
    it."""
    try:
        first = read_line(PROMPT)
    except EOFError:
        return None
    if first.lstrip().startswith(BLOCK):
        return _block(first.lstrip()[len(BLOCK):], read_line)
    lines = [first]
    try:
        while lines[-1].endswith(CONTINUES):
            lines[-1] = lines[-1][:-len(CONTINUES)]
            lines.append(read_line(MORE))
    except EOFError:
        pass
    except KeyboardInterrupt:
        raise Dropped from None
    return "\n".join(lines)


def _block(opening: str, read_line: Callable[[str], str]) -> str:
    """The lines up to the one ending in BLOCK (the text after the opening BLOCK and before
    the closing one included)."""
    lines: list[str] = []
    line = opening
    try:
        while not line.rstrip().endswith(BLOCK):
            lines.append(line)
            line = read_line(MORE)
        lines.append(line.rstrip()[:-len(BLOCK)])
    except EOFError:
        pass
    except KeyboardInterrupt:
        raise Dropped from None
    if lines and not lines[0]:  # the opening BLOCK alone on its line
        lines.pop(0)
    if lines and not lines[-1]:  # the closing one
        lines.pop()
    return "\n".join(lines)
