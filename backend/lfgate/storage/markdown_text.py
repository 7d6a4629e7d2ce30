"""Text that someone else wrote (a model's reply, a prompt file, an imported chat), put into a
Markdown export: one escaping for every export (chat, compare, prompt-set run).

Markdown lets raw HTML through, and the viewers people open exports in render some of it:
a reply that writes `</td></table><img src=… onerror=…>` would break out of the compare
export's table, or run script in a viewer that does not sanitise. So `&`, `<` and `>` are
written as entities everywhere but inside code (fenced blocks and inline spans), where
Markdown shows text as it is and escaping would show `&lt;` in a code sample instead of `<`.
An unclosed fence is code to the end, as Markdown reads it.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# Code spans paired as CommonMark pairs them (leftmost first, across lines). Only a span on
# one line that no backslash opens is left as written: across lines it may not be a span (a
# line starting a quote or a list ends the paragraph first), and escaping more than needed
# is never unsafe, only uglier.
_CODE_SPAN = re.compile(r"(?<![`\\])(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)


def html_text(text: str) -> str:
    """Every `&`, `<` and `>` as an entity: for text inside an HTML line of an export (a table
    heading, a note), where Markdown's code spans do not apply."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")



def _outside_spans(text: str) -> str:
    out, at = [], 0
    for span in _CODE_SPAN.finditer(text):
        if "\n" in span.group(0):
            continue  # escaped with the text around it
        out += [html_text(text[at:span.start()]), span.group(0)]
        at = span.end()
    out.append(html_text(text[at:]))
    return "".join(out)


def escape_html(text: str) -> str:
    """`text` with HTML made inert outside its code, its Markdown otherwise unchanged."""
    out: list[str] = []
    prose: list[str] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        opened = _FENCE.match(line)
        if opened and opened.group(1)[0] == "`" and "`" in line[opened.end():]:
            opened = None  # a backtick fence's info string has no backtick: not a fence
        if fence is None:
            if opened:
                out.append(_outside_spans("".join(prose)))
                prose = []
                fence = opened.group(1)
                out.append(line)
            else:
                prose.append(line)
            continue
        out.append(line)
        if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence) \
                and not line.strip().lstrip(fence[0]):
            fence = None
    out.append(_outside_spans("".join(prose)))
    return "".join(out)
