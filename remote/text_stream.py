"""A reply's text, token by token, at a constant cost per token (issue 26).

Why: decoding every token made so far at each new one costs O(n) per token, O(n²) a reply;
a batch row did that. Decoding only the newest tokens alone is wrong for many tokenizers (a
word-start token decoded at the start of a piece loses its space; a character split over
byte tokens decodes to U+FFFD until its last byte comes). So, as vLLM and TGI do, each new
piece is the text of a short window of the previous tokens plus the new ones, less the text
of that window alone, held back while it ends in an incomplete character.

Stand-alone: only the tokenizer's `decode`.
"""

from __future__ import annotations

from typing import Any

INCOMPLETE = "\ufffd"


class IncrementalText:
    """Feed token ids one at a time; each call gives the text they add (maybe "", while a
    character is incomplete). The window is the tokens of the last piece given out (at
    least one), so a call decodes a few tokens, however long the reply."""

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True) -> None:
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self.ids: list[int] = []
        self.shown = ""  # what was given out so far
        self._prefix = 0  # the window's start
        self._read = 0  # tokens whose text has been given out

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip)

    def add(self, token: int) -> str:
        self.ids.append(token)
        before = self._decode(self.ids[self._prefix:self._read])
        now = self._decode(self.ids[self._prefix:])
        if len(now) <= len(before) or now.endswith(INCOMPLETE) or not now.startswith(before):
            return ""  # nothing new yet, or a character still coming, or not settled
        self._prefix, self._read = self._read, len(self.ids)
        piece = now[len(before):]
        self.shown += piece
        return piece

    def finish(self) -> str:
        """The rest of the text at the end (what was held back), so that everything given
        out is the whole decode; "" where the pieces already said another text (the
        reply's text is then `text()`, not their sum)."""
        whole = self.text()
        rest = whole[len(self.shown):] if whole.startswith(self.shown) else ""
        self.shown += rest
        return rest

    def text(self) -> str:
        """Everything, decoded whole: the reply's text."""
        return self._decode(self.ids)
