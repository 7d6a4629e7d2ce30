"""Replies held to a JSON schema (OpenAI's response_format), or to one call of an offered
tool in the template's tool format (tool_choice required or named), token by token, with
xgrammar.

Why xgrammar: it is vLLM's default structured-output backend, its grammar matcher works on
the Hugging Face engine's logits on the CPU as on a GPU, and it compiles a schema in
milliseconds. It is imported only when a request asks for a schema, so a box without it
answers such a request with not_supported and the fix, and every other request as before.

Why not xgrammar's own `contrib.hf.LogitsProcessor`: it asserts that every row accepts the
token the row was given, and in a batch (compare, `n`) a row that the gateway ended early (a
stop string, Stop) is fed padding, which the grammar refuses. Here such a row is simply no
longer held.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import wrapper_protocol as wp

MAX_COMPILED = 32  # schemas kept compiled, the most recently used
INSTALL_HINT = ("response_format, and tool_choice required or named, need xgrammar in the "
                "box's Python, for constrained decoding: pip install xgrammar")


def _xgrammar() -> Any:
    try:
        import xgrammar
    except ImportError as exc:
        raise wp.WrapperError(wp.E_NOT_SUPPORTED, INSTALL_HINT) from exc
    return xgrammar


class JsonGrammars:
    """Compiled schemas for the loaded model. xgrammar's view of a tokenizer (every token's
    bytes, its stop tokens) is built once per tokenizer; compiled schemas are kept by their
    exact text (the order of `properties` is the order the reply writes them)."""

    def __init__(self) -> None:
        self._compilers: dict[tuple[int, int, tuple[int, ...]], Any] = {}
        self._compiled: OrderedDict[tuple[Any, str], Any] = OrderedDict()

    def compiled(self, schema: dict[str, Any], tokenizer: Any, vocab_size: int,
                 stop_ids: list[int]) -> Any:
        """The schema compiled for this tokenizer: a bad request if xgrammar cannot use it."""
        # Compact JSON (no free whitespace: a small model otherwise pads it), and no property
        # or item the schema does not name (OpenAI's strict structured output).
        return self._compile(
            ("schema", schema), tokenizer, vocab_size, stop_ids, "response_format: this JSON "
            "schema", lambda compiler: compiler.compile_json_schema(
                json.dumps(schema, ensure_ascii=False), any_whitespace=False,
                strict_mode=True))

    def compiled_call(self, calls: list[tuple[str, dict[str, Any], str]], tokenizer: Any,
                      vocab_size: int, stop_ids: list[int]) -> Any:
        """A reply that is one call to one of the offered functions, in the template's own
        tool format (tool_choice required or named): `calls` holds, per function, the text
        the format writes before its arguments (the function's name is in it), their JSON
        schema, and the text after them. The arguments are held to the schema as a
        response_format's JSON is."""
        grammar = _xgrammar().Grammar

        def literal(text: str) -> Any:  # a JSON string is an EBNF string literal here too
            return grammar.from_ebnf("root ::= " + json.dumps(text, ensure_ascii=False))

        def build(compiler: Any) -> Any:
            each = [grammar.concat(*[part for part in (
                literal(before) if before else None,
                grammar.from_json_schema(json.dumps(schema, ensure_ascii=False),
                                         any_whitespace=False, strict_mode=True),
                literal(after) if after else None) if part is not None])
                for before, schema, after in calls]
            return compiler.compile_grammar(grammar.union(*each))

        return self._compile(("call", calls), tokenizer, vocab_size, stop_ids,
                             "tool_choice: these tools' parameters", build)

    def _compile(self, what: tuple[str, Any], tokenizer: Any, vocab_size: int,
                 stop_ids: list[int], named: str, build: Any) -> Any:
        """`build(compiler)` for this tokenizer, kept by `what`'s exact text: a bad request
        (saying what `named` is) if xgrammar cannot use it (not_supported if the box has no
        xgrammar)."""
        xgrammar = _xgrammar()
        key = (id(tokenizer), vocab_size, tuple(sorted(set(stop_ids))))
        compiler = self._compilers.get(key)
        if compiler is None:
            info = xgrammar.TokenizerInfo.from_huggingface(
                tokenizer, vocab_size=vocab_size, stop_token_ids=list(key[2]) or None)
            compiler = self._compilers[key] = xgrammar.GrammarCompiler(info)
        text = json.dumps(what, ensure_ascii=False)
        found = self._compiled.get((key, text))
        if found is not None:
            self._compiled.move_to_end((key, text))
            return found
        try:
            compiled = build(compiler)
        except Exception as exc:  # xgrammar's own message says what it cannot use
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise wp.WrapperError(wp.E_BAD_REQUEST, f"{named} cannot be used for "
                                  f"constrained decoding: {first}") from exc
        self._compiled[(key, text)] = compiled
        while len(self._compiled) > MAX_COMPILED:
            self._compiled.popitem(last=False)
        return compiled

    def clear(self) -> None:
        """The model is unloaded: its tokenizers go."""
        self._compilers.clear()
        self._compiled.clear()


def grammar_processor(grammars: list[Any]) -> Any:
    """A logits processor for one generate call that leaves each row only the tokens that
    keep its reply a prefix of the schema's JSON, and once the JSON is whole, only its stop
    tokens. `grammars`: one per row (each row's tokenizer), or one for every row."""
    import torch
    from transformers import LogitsProcessor

    xgrammar = _xgrammar()

    class _HeldToSchema(LogitsProcessor):
        def __init__(self) -> None:
            self.matchers: list[Any] = []
            self.held: list[bool] = []
            self.bitmask: Any = None

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            rows = int(input_ids.shape[0])
            if not self.matchers:  # the first step: nothing sampled yet
                each = grammars if len(grammars) == rows else grammars[:1] * rows
                self.matchers = [xgrammar.GrammarMatcher(grammar) for grammar in each]
                self.held = [True] * rows
                self.bitmask = xgrammar.allocate_token_bitmask(
                    rows, each[0].tokenizer_info.vocab_size)
            else:
                for row, matcher in enumerate(self.matchers):
                    if self.held[row] and not matcher.is_terminated() \
                            and not matcher.accept_token(int(input_ids[row, -1])):
                        self.held[row] = False  # ended by the gateway: padding follows
            self.bitmask.fill_(-1)  # every token allowed, unless a row's grammar says
            for row, matcher in enumerate(self.matchers):
                if self.held[row] and not matcher.is_terminated():
                    matcher.fill_next_token_bitmask(self.bitmask, row)
            device = scores.device
            masked = scores.to("cpu", torch.float32) if device.type != "cuda" else scores
            xgrammar.apply_token_bitmask_inplace(masked, self.bitmask.to(masked.device))
            return masked.to(device, scores.dtype)

    return _HeldToSchema()
