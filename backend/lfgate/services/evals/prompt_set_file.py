"""A prompt set from a file a user has: JSONL, a JSON array, CSV, or one prompt a line.

JSONL and JSON take `prompt` with optional `system` and `reference`, and LlamaFactory's own
alpaca records (`instruction`, optional `input`, `output` as the reference), so an eval split
of a training set loads as it is. A file is taken whole or not at all: the first bad line
raises BadPromptSet naming it, before anything is stored.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from lfgate.services.errors import BadPromptSet
from lfgate.storage.storable import why_unstorable

SetFormat = Literal["jsonl", "json", "csv", "lines"]
FORMATS: tuple[SetFormat, ...] = ("jsonl", "json", "csv", "lines")
EXTENSIONS: dict[str, SetFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
                                    ".csv": "csv", ".txt": "lines", ".text": "lines"}
MAX_PROMPTS = 10_000
MAX_FIELD_CHARS = 100_000  # a prompt, system prompt or reference; MAX_MESSAGE_CHARS if lower
FIELDS = ("prompt", "system", "reference")
ALPACA = ("instruction", "input", "output")


@dataclass(frozen=True)
class _Most:
    """The longest prompt or system prompt, and the setting that says so ("" for ours)."""

    chars: int = MAX_FIELD_CHARS
    setting: str = ""


@dataclass(frozen=True)
class SetPrompt:
    prompt: str
    system: str | None = None
    reference: str | None = None


@dataclass
class ParsedSet:
    format: SetFormat
    prompts: list[SetPrompt]
    warnings: list[str] = field(default_factory=list)


def detect_format(content: str, filename: str | None) -> SetFormat:
    """By the file's extension, else by its first character ({: JSONL, [: JSON), else lines."""
    if filename:
        for extension, kind in EXTENSIONS.items():
            if filename.lower().endswith(extension):
                return kind
    head = content.lstrip()[:1]
    return {"{": "jsonl", "[": "json"}.get(head, "lines")


def parse_prompt_set(content: str, *, format: SetFormat | None = None,
                     filename: str | None = None,
                     max_message_chars: int = MAX_FIELD_CHARS) -> ParsedSet:
    kind = format or detect_format(content, filename)
    content = content.removeprefix("\ufeff")  # a BOM from a spreadsheet's "save as"
    if "\x00" in content:
        raise BadPromptSet("the file holds NUL bytes: is it a text file?")
    most = (_Most(max_message_chars, " (MAX_MESSAGE_CHARS)")
            if max_message_chars < MAX_FIELD_CHARS else _Most())
    parsed = {"jsonl": _jsonl, "json": _json, "csv": _csv, "lines": _lines}[kind](content, most)
    if not parsed.prompts:
        raise BadPromptSet("the file holds no prompts")
    if len(parsed.prompts) > MAX_PROMPTS:
        raise BadPromptSet(f"the file holds {len(parsed.prompts)} prompts; at most "
                           f"{MAX_PROMPTS} in one set")
    return parsed


def _load(text: str, line: int | None = None) -> Any:
    """JSON, or BadPromptSet saying why not: bad syntax, a number Python will not convert
    (over 4,300 digits), nesting deeper than the parser goes; the file's own escapes decode
    here, so what they make is checked for storage too (an escaped NUL, a lone surrogate)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        at = line if line is not None else exc.lineno
        raise BadPromptSet(f"line {at}: not JSON ({exc.msg} at column {exc.colno})",
                           line=at) from None
    except (ValueError, RecursionError) as exc:
        reason = ("nested too deeply" if isinstance(exc, RecursionError)
                  else str(exc).split(";")[0].split(":")[0])
        where = f"line {line}: " if line is not None else ""
        raise BadPromptSet(f"{where}not a JSON value this gateway takes ({reason})",
                           line=line) from None
    return data


def _text(value: str, where: str, line: int | None) -> str:
    why = why_unstorable(value)
    if why is not None:
        raise BadPromptSet(f"{where}: {why[0].lower()}{why[1:]}", line=line)
    return value


def _record(data: Any, where: str, line: int | None, unknown: set[str], most: _Most
            ) -> SetPrompt:
    """One JSON record: {prompt, system?, reference?} or alpaca's {instruction, input?,
    output?, system?}."""
    if not isinstance(data, dict):
        raise BadPromptSet(f"{where}: expected an object with a \"prompt\", got "
                           f"{type(data).__name__}", line=line)
    for key in data:
        _text(key, f"{where}: a field name", line)
    values: dict[str, str | None] = {}
    for key in (*FIELDS, *ALPACA):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise BadPromptSet(f"{where}: \"{key}\" must be a string, got "
                               f"{type(value).__name__}", line=line)
        values[key] = value if value is None else _text(value, f"{where}: \"{key}\"", line)
    unknown.update(k for k in data if k not in FIELDS and k not in ALPACA)
    if values["prompt"] is None and values["instruction"] is not None:  # alpaca
        joined = "\n".join(v for v in (values["instruction"], values["input"]) if v)
        return _prompt(joined, values["system"], values["output"], where, line, most)
    if values["prompt"] is None:
        raise BadPromptSet(f"{where}: no \"prompt\" (or alpaca \"instruction\")", line=line)
    return _prompt(values["prompt"], values["system"], values["reference"], where, line, most)


def _prompt(prompt: str, system: str | None, reference: str | None, where: str,
            line: int | None, most: _Most) -> SetPrompt:
    if not prompt.strip():
        raise BadPromptSet(f"{where}: the prompt is empty", line=line)
    for name, value, limit in (("prompt", prompt, most), ("system", system, most),
                               ("reference", reference, _Most())):
        if value is not None and len(value) > limit.chars:
            raise BadPromptSet(f"{where}: the {name} is {len(value)} characters; at most "
                               f"{limit.chars}{limit.setting}", line=line)
    return SetPrompt(prompt, system or None, reference if reference else None)


def _ignored(unknown: set[str]) -> list[str]:
    return [f"ignored fields: {', '.join(sorted(unknown))}"] if unknown else []


def _jsonl(content: str, most: _Most) -> ParsedSet:
    prompts: list[SetPrompt] = []
    unknown: set[str] = set()
    for number, text in enumerate(content.splitlines(), 1):
        if not text.strip():
            continue
        data = _load(text, number)
        prompts.append(_record(data, f"line {number}", number, unknown, most))
    return ParsedSet("jsonl", prompts, _ignored(unknown))


def _json(content: str, most: _Most) -> ParsedSet:
    data = _load(content)
    if not isinstance(data, list):
        raise BadPromptSet("a .json prompt set is an array of objects (or use JSONL)")
    unknown: set[str] = set()
    prompts = [_record(item, f"item {number}", None, unknown, most)
               for number, item in enumerate(data, 1)]
    return ParsedSet("json", prompts, _ignored(unknown))


def _csv(content: str, most: _Most) -> ParsedSet:
    reader = csv.reader(io.StringIO(content, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise BadPromptSet("the CSV file is empty")
        names = [name.strip().lower() for name in header]
        if "prompt" not in names:
            raise BadPromptSet("line 1: the CSV header has no \"prompt\" column (columns: "
                               f"{', '.join(header) or 'none'})", line=1)
        columns = {name: names.index(name) for name in FIELDS if name in names}
        prompts = []
        for row in reader:
            number = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                raise BadPromptSet(f"line {number}: {len(row)} fields where the header has "
                                   f"{len(names)} (an unquoted comma or quote?)", line=number)
            values = {name: row[index] for name, index in columns.items()}
            prompts.append(_prompt(values["prompt"], values.get("system"),
                                   values.get("reference"), f"line {number}", number, most))
    except csv.Error as exc:
        number = reader.line_num
        raise BadPromptSet(f"line {number}: not valid CSV ({exc})", line=number) from None
    unknown = {n for n in names if n not in FIELDS}
    return ParsedSet("csv", prompts, _ignored(unknown))


def _lines(content: str, most: _Most) -> ParsedSet:
    return ParsedSet("lines", [_prompt(text.strip(), None, None, f"line {number}", number, most)
                               for number, text in enumerate(content.splitlines(), 1)
                               if text.strip()])
