"""Both wrappers against the real LlamaFactory in the box venv: llamafactory-cli and ChatModel.

A spy (tests/rig/spy) records what `ChatModel.stream_chat` received, so these tests can assert
on what reached the model, including inside the real `llamafactory-cli chat` process.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lfgate.remote import wrapper_protocol as wp
from tests.wrapper_process import ROOT, WRAPPERS, WrapperProcess, alive, child_pids

pytestmark = pytest.mark.box

GREEDY = {"temperature": 0, "max_new_tokens": 24}
SHADOWS = ROOT / "tests" / "rig" / "shadow"


def model_spec(tiny: dict[str, str], adapter: str | None = "adapter", base: str = "base") -> dict:
    return {
        "base_model_path": tiny[base],
        "adapter_path": tiny[adapter] if adapter else None,
        "template": tiny["template"],
    }


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def joined(events: list[dict]) -> str:
    return "".join(e["text"] for e in events if e["event"] == "delta")


def codes(events: list[dict], event: str = "info") -> list[str]:
    return [e["code"] for e in events if e["event"] == event]


@pytest.fixture(scope="module", params=["cli", "script"])
def served(request, box_python, tiny, tmp_path_factory):
    # Paced (10 ms a token, so a 24-token reply takes a quarter of a second): a reply that the
    # box writes faster than the CLI wrapper's 50 ms reads arrives in one piece, and the
    # streaming test would test the machine's speed (one torch thread made it that fast).
    wrapper = WrapperProcess(box_python, request.param,
                             tmp_path_factory.mktemp("spy") / "spy.jsonl",
                             env={"LFGATE_TEST_TOKEN_DELAY_S": "0.01"})
    ready = wrapper.load(model_spec(tiny), GREEDY)
    assert ready["event"] == "ready", ready
    yield wrapper
    wrapper.kill()


@pytest.fixture(scope="module")
def spare(box_python, tmp_path_factory):
    """spare(mode): a wrapper of that mode for tests whose first step is a load of their own
    (the model it held before is gone with that load, failed or not), started once per module
    and mode: a script wrapper's first load pays LlamaFactory's import, some 6.5 CPU seconds
    (tests that kill or signal a wrapper start their own). Started again if one died."""
    folder = tmp_path_factory.mktemp("spare")
    started: dict[str, WrapperProcess] = {}

    def get(mode: str) -> WrapperProcess:
        wrapper = started.get(mode)
        if wrapper is None or not wrapper.running():
            wrapper = started[mode] = WrapperProcess(box_python, mode, folder / f"{mode}.jsonl")
        return wrapper.settle()

    yield get
    for wrapper in started.values():
        wrapper.kill()


def test_hello_names_protocol_and_mode(served):
    assert served.hello["event"] == "hello"
    assert served.hello["protocol"] == wp.PROTOCOL_VERSION
    assert served.hello["wrapper"] == wp.WRAPPER_VERSION
    assert served.hello["mode"] == served.mode


def test_streams_a_reply_and_keeps_multi_turn_history(served):
    done, before = served.chat("mt-1", [user("Hello, how are you?")], GREEDY)
    assert done["event"] == "done", done
    deltas = [e for e in before if e["event"] == "delta"]
    assert len(deltas) >= 2, "the reply must arrive in pieces, not at the end"
    assert joined(before) == done["content"]
    assert done["finish_reason"] in (wp.FINISH_STOP, wp.FINISH_LENGTH)
    timing = done["timing"]
    assert timing["chunks"] == len(deltas)
    assert 0 < timing["ttft_ms"] <= timing["total_ms"]
    assert timing["load_seconds"] > 0

    history = [user("Hello, how are you?"), {"role": "assistant", "content": done["content"]},
               user("And then?")]
    done2, before2 = served.chat("mt-2", history, GREEDY)
    assert done2["event"] == "done", done2
    assert wp.INFO_CONTEXT_RESET not in codes(before2)
    seen = served.spied()[-1]["messages"]
    assert [m["role"] for m in seen] == ["user", "assistant", "user"]
    assert [m["content"] for m in seen if m["role"] == "user"] == ["Hello, how are you?",
                                                                    "And then?"]
    if served.mode == "script":
        assert seen == history


LONG = "".join(f"line {i}: the quick brown fox jumps over the lazy dog. " for i in range(200))


@pytest.mark.parametrize("text", [
    "line one\nline two\n\tindented with a tab\nline four",
    LONG[:10_000],
    "héllo wörld, 你好, emoji 😀 and a backslash \\ and \"quotes\"",
    "exit",
    "clear",
    "  exit  ",
], ids=["multi-line", "10000-chars", "unicode", "exit", "clear", "padded-exit"])
def test_whole_message_reaches_the_model(served, text):
    done, before = served.chat(f"msg-{hash(text)}", [user(text)], GREEDY)
    assert done["event"] == "done", done
    received = served.spied()[-1]["messages"][-1]["content"]
    if served.mode == "cli" and text.strip() in ("exit", "clear"):
        assert received == text + "\u200b"
        assert wp.INFO_MESSAGE_ADJUSTED in codes(before)
    else:
        assert received == text
        assert wp.INFO_MESSAGE_ADJUSTED not in codes(before)
    # The CLI is still there and still answering after a message that looks like a command.
    again, _ = served.chat(f"after-{hash(text)}", [user("still there?")], GREEDY)
    assert again["event"] == "done", again


def test_control_characters(served):
    done, before = served.chat("ctl", [user("a\x07b\x1b[31mc\x00d")], GREEDY)
    assert done["event"] == "done", done
    received = served.spied()[-1]["messages"][-1]["content"]
    if served.mode == "cli":
        assert received == "ab[31mcd"  # readline would take them as commands
        assert wp.INFO_MESSAGE_ADJUSTED in codes(before)
    else:
        assert received == "a\x07b\x1b[31mc\x00d"


def test_cli_refuses_a_message_over_its_limit(served):
    if served.mode != "cli":
        pytest.skip("only CLI mode types messages at a terminal prompt")
    from lfgate.remote.chat_cli_wrapper import MAX_MESSAGE_CHARS

    error, _ = served.chat("too-long", [user("x" * (MAX_MESSAGE_CHARS + 1))], GREEDY)
    assert error["event"] == "error" and error["code"] == wp.E_MESSAGE_TOO_LONG
    assert str(MAX_MESSAGE_CHARS) in error["message"]
    assert error["id"] == "too-long"
    done, _ = served.chat("after-too-long", [user("hi")], GREEDY)
    assert done["event"] == "done"


def test_the_rate_counts_tokens_after_the_first(served):
    # GREEDY first: the settings the CLI was loaded with (one restart of it fewer, when it
    # still has them).
    many, _ = served.chat("many-tokens", [user("Hello")], GREEDY)
    one, _ = served.chat("one-token", [user("Hello")], {"temperature": 0, "max_new_tokens": 1})
    assert one["event"] == "done", one
    if served.mode == "script":
        assert one["usage"]["completion_tokens"] == 1 and one["timing"]["tokens_per_s"] is None
        tokens, timing = many["usage"]["completion_tokens"], many["timing"]
        assert tokens == GREEDY["max_new_tokens"]
        assert timing["tokens_per_s"] >= (tokens - 1) / (timing["total_ms"] / 1000) > 0
    else:  # the CLI counts no tokens: chunks that arrived, the same way
        assert "tokens_per_s" not in many["timing"] and "usage" not in many
        rate = many["timing"]["chunks_per_s"]
        assert rate is None or rate > 0


WEATHER = {"name": "get_weather", "description": "The weather in a city now",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def test_tools_reach_the_template_in_script_mode_and_are_named_in_cli_mode(served):
    """Protocol 5: a chat's tools go to ChatModel as LlamaFactory's own API passes them (one
    JSON text, formatted by the template's tool format); a model that is no tool-use
    fine-tune (this random one) answers in words, never an error. The CLI takes no tools:
    it says so. A tool's result handed back (an observation turn) is a turn like any."""
    done, events = served.chat("tools", [user("What is the weather in Paris?")], GREEDY,
                               tools=[WEATHER])
    assert done["event"] == "done" and "tool_calls" not in done, done
    observed, _ = served.chat("observed", [
        user("What is the weather in Paris?"),
        {"role": "function", "content": json.dumps([{"name": "get_weather",
                                                     "arguments": {"city": "Paris"}}])},
        {"role": "observation", "content": '{"temperature": 21}'}], GREEDY, tools=[WEATHER])
    assert observed["event"] == "done", observed
    if served.mode == "script":
        assert "tools" in served.hello["features"]
        calls = served.spied()[-2:]
        assert [json.loads(c["kwargs"]["tools"]) for c in calls] == [[WEATHER], [WEATHER]]
        assert [m["role"] for m in calls[-1]["messages"]] == ["user", "function",
                                                              "observation"]
    else:
        assert "tools" not in served.hello["features"]
        ignored = [e["message"] for e in events if e.get("code") == wp.INFO_PARAM_IGNORED]
        assert ignored and ignored[0].startswith("tools: llamafactory-cli chat takes no tools")


def test_cancel_stops_generation_and_the_next_turn_works(served):
    # Greedy: the tiny model's reply to this runs to max_new_tokens, so it cannot end by
    # itself before the cancel lands (sampled, it sometimes did).
    long_run = {"temperature": 0, "max_new_tokens": 4000,
                "system": 'Be ${brief} and "exact" — é'}
    served.send({"op": "chat", "id": "long", "messages": [user("Tell me a long story")],
                  "params": long_run})
    first, before = served.until("delta", timeout=120)
    if served.mode == "cli":
        assert wp.INFO_CLI_RESTARTED in codes(before)  # new settings need a new CLI
    served.send({"op": "ping", "id": "p1"})
    pong, between = served.until("pong")
    assert pong["state"] == "busy"
    served.send({"op": "cancel", "id": "long"})
    done, rest = served.until("done", timeout=30)
    assert done["finish_reason"] == wp.FINISH_STOPPED
    # The stopped reply is exactly what was streamed, nothing more, nothing less.
    assert done["content"] == first["text"] + joined(between) + joined(rest)
    spied = served.spied()[-1]
    system_seen = spied["default_system"] if served.mode == "cli" else spied["system"]
    assert system_seen == long_run["system"]
    if served.mode == "script":
        assert done["usage"]["completion_tokens"] < 200  # generation itself stopped

    history = [user("Tell me a long story"), {"role": "assistant", "content": done["content"]},
               user("go on")]
    done2, before2 = served.chat("after-cancel", history, long_run | {"max_new_tokens": 8})
    assert done2["event"] == "done", done2
    if served.mode == "cli":
        # The CLI ran the stopped reply to its end, so it no longer holds our history.
        assert wp.INFO_CONTEXT_RESET in codes(before2)
    else:
        assert served.spied()[-1]["messages"] == history


def test_bad_lines_get_errors_and_the_wrapper_goes_on(served):
    served.send("this is not json")
    error, _ = served.until("error")
    assert error["code"] == wp.E_BAD_REQUEST
    served.send({"op": "chat", "id": "bad", "messages": [{"role": "system", "content": "x"}]})
    error, _ = served.until("error")
    assert error["code"] == wp.E_BAD_REQUEST and error["id"] == "bad"
    served.send({"op": "chat", "id": "bad2", "messages": [user("x")],
                 "params": {"enable_thinking": "false"}})
    error, _ = served.until("error")
    assert "enable_thinking" in error["message"]
    served.send({"op": "ping", "id": "alive"})
    pong, _ = served.until("pong")
    assert pong["id"] == "alive" and pong["state"] == "ready"


def _command_lines() -> list[str]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
    return lines


def test_no_user_text_in_any_command_line(served):
    system, message = "SYSTEM-MARKER-5b1e", "MESSAGE-MARKER-77c2"
    served.send({"op": "chat", "id": "argv", "messages": [user(message)],
                 "params": {"system": system, "max_new_tokens": 2000, "temperature": 1.0}})
    served.until("delta", timeout=120)  # the CLI (restarted for the new system prompt) is up
    leaks = [line for line in _command_lines() if system in line or message in line]
    served.send({"op": "cancel", "id": "argv"})
    served.until("done")
    assert served.spied()[-1]["messages"][-1]["content"] == message
    assert not leaks, leaks


def test_script_mode_params_apply_per_call(spare, tiny):
    wrapper = spare("script")
    assert wrapper.load(model_spec(tiny, adapter=None))["event"] == "ready"
    base_reply, _ = wrapper.chat("b1", [user("Hello")], GREEDY | {"enable_thinking": False})
    assert wrapper.spied()[-1]["enable_thinking"] is False
    wrapper.chat("b2", [user("Hello")], GREEDY | {"enable_thinking": True})
    assert wrapper.spied()[-1]["enable_thinking"] is True
    assert wrapper.spied()[-1]["kwargs"] == {"temperature": 0, "max_new_tokens": 24}
    assert wrapper.load(model_spec(tiny))["event"] == "ready"
    adapter_reply, _ = wrapper.chat("a1", [user("Hello")], GREEDY)
    assert adapter_reply["content"] != base_reply["content"], "the adapter changes replies"


# The processors alone, on the box's Python (torch): scores of 4 tokens, a prompt of 2
# tokens (ids 3, 3: never counted) and a reply so far of 0, 0, 1.
PROCESSORS = r"""
import sys, torch
sys.path.insert(0, sys.argv[1])
from chat_inference import sampling_processors

ids = torch.tensor([[3, 3, 0, 0, 1]])
def run(params):
    scores = torch.zeros((1, 4))
    for processor in sampling_processors(params, prompt_len=2):
        scores = processor(ids, scores)
    return scores[0].tolist()

print(run({"presence_penalty": 0.5}))
print(run({"frequency_penalty": 1.0}))
print(run({"presence_penalty": 1.0, "frequency_penalty": 0.5, "logit_bias": {"2": 7.0}}))
print(run({}))
"""


def test_penalties_and_logit_bias_count_as_openai_defines_them(box_python):
    """OpenAI's definition: a token's logit less presence_penalty once it appears in the
    reply, less frequency_penalty per time it does; the prompt's tokens do not count;
    logit_bias is added as given."""
    done = subprocess.run([box_python, "-c", PROCESSORS, str(ROOT / "remote")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        [-0.5, -0.5, 0.0, 0.0],
        [-2.0, -1.0, 0.0, 0.0],
        [-2.0, -1.5, 7.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ]


TOKEN_BOUND = r"""
import copy, json, random, sys
sys.path.insert(0, sys.argv[1])
from chat_inference import TokenCounts
from llamafactory.data import get_template_and_fix_tokenizer
from llamafactory.hparams import DataArguments
from transformers import AutoTokenizer

base = AutoTokenizer.from_pretrained(sys.argv[2])
alphabet = "ab cd\n\t .,:;!?-_'\"{}[]()<>|/\\0123456789" + "éßø漢字😀\u200b\u0301"
rng = random.Random(7)
worst = None
for name in ("qwen", "llama3", "default", "chatml", "mistral"):
    tokenizer = copy.deepcopy(base)
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template=name))
    counted = TokenCounts()
    for _ in range(60):
        turns = []
        for index in range(rng.randrange(1, 12) * 2 - 1):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 300)))
            turns.append({"role": "user" if index % 2 == 0 else "assistant", "content": text})
        system = rng.choice([None, "Be brief.", "".join(rng.choice(alphabet) for _ in range(80))])
        prompt, _ = template.encode_oneturn(
            tokenizer, [*turns, {"role": "assistant", "content": ""}], system, None)
        slack = counted.most(tokenizer, template, turns, system, None) - len(prompt)
        worst = slack if worst is None else min(worst, slack)
print(json.dumps(worst))
"""


def test_the_counted_bound_is_never_below_the_prompt_the_template_builds(box_python, tiny):
    """The context check skips the exact count when the template's own part plus each
    message's own tokens fit (TokenCounts): over random histories of odd text, five
    templates (llama3's slots are dozens of tokens on the tiny tokenizer) and the real
    tokenizer, that bound is never below the real prompt."""
    done = subprocess.run([box_python, "-c", TOKEN_BOUND, str(ROOT / "remote"), tiny["base"]],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) >= 0


FORCED_LAYOUTS = """
import json, re, sys
sys.path.insert(0, sys.argv[1])
from chat_inference import forced_call_layouts
from llamafactory.data.template import TEMPLATES
tools = [{"name": "get_time", "parameters": {"type": "object"}},
         {"name": "lookup_city_2", "description": "another"}]
arguments = {"zone": "UTC", "n": [1, 2]}
held, kept = [], []
for name, template in sorted(TEMPLATES.items()):
    try:  # the wrapper adds the tokenizer's end-of-text, which this formatter writes as text
        shown = "".join(s for s in template.format_function.apply(content=json.dumps(
            [{"name": "x", "arguments": {}}])) if isinstance(s, str))
    except Exception:
        shown = ""
    ends = [*template.stop_words, *re.findall(r"<\\|[A-Za-z_]+\\|>", shown)]
    layouts = forced_call_layouts(template, tools, ends)
    if layouts is None:
        kept.append(name)
        continue
    held.append(name)
    for tool, (before, schema, after) in zip(tools, layouts, strict=True):
        slots = template.format_function.apply(content=json.dumps(
            [{"name": tool["name"], "arguments": arguments}], ensure_ascii=False))
        text = "".join(s for s in slots[:next((i for i, s in enumerate(slots)
                                               if not isinstance(s, str)), len(slots))])
        call = before + json.dumps(arguments, ensure_ascii=False) + after
        assert text.startswith(call), (name, text, call)
        found = template.extract_tool(call)
        assert isinstance(found, list) and found[0].name == tool["name"], (name, call, found)
print(json.dumps({"held": held, "kept": kept}))
"""


def test_a_forced_call_has_every_template_s_own_tool_format(box_python):
    """tool_choice required or named holds a reply to one call as the template writes it
    (forced_call_layouts): for every template of the box's LlamaFactory, the text around
    the arguments is what its formatter writes for those arguments, and its own parser
    reads the call back; a template whose format cannot be
    held so is left to offer the tools only (the turn says so)."""
    done = subprocess.run([box_python, "-c", FORCED_LAYOUTS, str(ROOT / "remote")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    print(found)
    # Those kept (LlamaFactory 0.9.5) write calls as XML (qwen3_5, glm4_7) or their parser
    # does not read their formatter's text back (mistral): offered, not forced.
    assert {"qwen", "qwen3", "llama3", "llama4", "default", "glm4", "gemma3",
            "deepseek3"} <= set(found["held"])


def test_sampling_parameters_reach_the_real_model(spare, tiny):
    """Through the wrapper and the real model: a logit_bias of 100 makes every greedy token
    the one it names; a frequency penalty changes a greedy reply that repeats itself; an id
    outside the vocabulary is a bad request before anything is generated; min_p samples."""
    wrapper = spare("script")
    assert wrapper.load(model_spec(tiny, adapter=None))["event"] == "ready"
    vocab = json.loads((Path(tiny["base"]) / "tokenizer.json").read_text())["model"]["vocab"]
    greedy = {"temperature": 0, "max_new_tokens": 24}

    def reply(turn_id: str, params: dict) -> str:
        done, _ = wrapper.chat(turn_id, [user("Hello")], params)
        assert done["event"] == "done", done
        return done["content"]

    assert reply("bias", greedy | {"logit_bias": {str(vocab["x"]): 100}}) == "x" * 24
    plain = reply("plain", greedy)
    assert len(set(plain)) < len(plain), "the tiny model's greedy reply repeats itself"
    assert reply("penalised", greedy | {"frequency_penalty": 2}) != plain
    outside, _ = wrapper.chat("outside", [user("Hello")], {"logit_bias": {"99999999": 1}})
    assert outside["code"] == wp.E_BAD_REQUEST and "not in this model's vocabulary" in \
        outside["message"]
    reply("min-p", {"temperature": 1, "min_p": 0.5, "max_new_tokens": 4, "seed": 1})


def test_a_completion_continues_raw_text_and_scores_it_as_the_model_does(spare, tiny):
    """Protocol 5's completion (/v1/completions): raw text, no template. The log
    probabilities of what it generated greedily are the likeliest at each step, and are
    what scoring the same text again (echo, no new tokens: lm-eval's loglikelihood) gives
    for those tokens, by one forward pass; token ids work as a prompt as text does."""
    wrapper = spare("script")
    assert wrapper.load(model_spec(tiny))["event"] == "ready"
    greedy = {"temperature": 0, "max_new_tokens": 5}
    made, events = wrapper.chat("raw", [user("")], greedy,
                                completion={"prompt": "The quick brown fox", "logprobs": 2})
    assert made["event"] == "done", made
    logprobs = made["logprobs"]
    assert len(logprobs["tokens"]) == made["usage"]["completion_tokens"] == 5
    tokenizer = json.loads((Path(tiny["base"]) / "tokenizer.json").read_text())
    specials = {added["content"] for added in tokenizer["added_tokens"]}
    # The text leaves special tokens out (as vLLM's does); the tokens name every one.
    assert "".join(t for t in logprobs["tokens"] if t not in specials) == made["content"] \
        == joined(events)
    for chosen, top in zip(logprobs["token_logprobs"], logprobs["top_logprobs"], strict=True):
        # Two alternatives by their text (two byte tokens that decode alike are one key)
        assert 1 <= len(top) <= 2 and chosen == pytest.approx(max(top.values()), abs=1e-5)

    # Scored again: the prompt as token ids ("fox") and five "x" made under a logit_bias
    # (log probabilities are the model's own, before any sampling setting), then that whole
    # text echoed with no new tokens: the same five values, by one forward pass.
    vocab = tokenizer["model"]["vocab"]
    fox, x = [vocab[c] for c in "fox"], vocab["x"]
    forced, _ = wrapper.chat("forced", [user("")], greedy | {"logit_bias": {str(x): 100}},
                             completion={"prompt": fox, "logprobs": 1})
    assert forced["content"] == "xxxxx" and forced["logprobs"]["tokens"] == ["x"] * 5
    echoed, _ = wrapper.chat("echo", [user("")], greedy | {"max_new_tokens": 0},
                             completion={"prompt": fox + [x] * 5, "echo": True, "logprobs": 1})
    assert echoed["event"] == "done" and echoed["content"] == "foxxxxxx", echoed
    scored = echoed["logprobs"]
    assert scored["tokens"] == ["f", "o", "x", "x", "x", "x", "x", "x"]
    assert scored["token_logprobs"][0] is None and scored["top_logprobs"][0] is None
    assert scored["text_offset"] == list(range(8))
    assert scored["token_logprobs"][-5:] == pytest.approx(forced["logprobs"]["token_logprobs"],
                                                          abs=1e-3)
    outside, _ = wrapper.chat("outside", [user("")], greedy,
                              completion={"prompt": [10**9], "logprobs": 0})
    assert outside["code"] == wp.E_BAD_REQUEST and "vocabulary" in outside["message"]


def test_a_prompt_over_the_window_is_refused_or_cut_from_its_start(spare, tiny):
    """The window is the model's max_position_embeddings or LlamaFactory's cutoff_len (96
    here; "Hello" with qwen's default system prompt is 66 tokens of the tiny tokenizer); the
    prompt is counted as the engine builds it (template, system prompt, tools).
    Over it, or with max_new_tokens that would run past it: context_length_exceeded, before
    anything is generated. Within it, a reply as usual."""
    wrapper = spare("script")
    spec = model_spec(tiny, adapter=None) | {"extra_args": {"cutoff_len": 96}}
    assert wrapper.load(spec)["event"] == "ready"
    error, _ = wrapper.chat("long", [user("Tell me about the sea. " * 40)], GREEDY)
    assert error["event"] == "error" and error["code"] == wp.E_CONTEXT_TOO_LONG, error
    assert error["message"].startswith("this model's context window is 96 tokens, but the "
                                       "request needs ")
    assert int(error["message"].split("needs ")[1].split(" ")[0]) > 96
    asked, _ = wrapper.chat("asked", [user("Hello")], {"max_new_tokens": 60})
    assert asked["code"] == wp.E_CONTEXT_TOO_LONG and "and 60 asked for the reply" in \
        asked["message"], asked
    done, _ = wrapper.chat("fits", [user("Hello")], {"temperature": 0})
    assert done["event"] == "done", done
    prompt = done["usage"]["prompt_tokens"]
    assert prompt + done["usage"]["completion_tokens"] <= 96  # the rest of the window, at most
    assert done["usage"]["context_window"] == 96 and "left_out" not in done

    # A page chat's history over the window (protocol 6's fit drop_oldest): its earliest
    # turns are left out, the fewest that make room (a quarter of the window for the reply),
    # and done says how many; what remains is exactly the last message alone here.
    history = [user("Tell me about the sea."), {"role": "assistant", "content": "It is big."},
               user("Hello")]
    refused, _ = wrapper.chat("whole", history, {"temperature": 0})
    assert refused["code"] == wp.E_CONTEXT_TOO_LONG, refused
    cut, _ = wrapper.chat("cut", history, {"temperature": 0}, fit=wp.FIT_DROP_OLDEST)
    assert cut["event"] == "done" and cut["left_out"] == 2, cut
    assert cut["usage"]["prompt_tokens"] == prompt and cut["content"] == done["content"]
    # In a batch too (compare), each row with its own count.
    wrapper.send({"op": wp.OP_CHAT_BATCH, "id": "b", "params": {"temperature": 0},
                  "fit": wp.FIT_DROP_OLDEST, "rows": [
                      {"id": "r1", "messages": history, "adapter": None},
                      {"id": "r2", "messages": [user("Hello")], "adapter": None}]})
    ends = {}
    while len(ends) < 2:
        event = wrapper.next()
        if event["event"] in ("done", "error"):
            ends[event["id"]] = event
    assert ends["r1"].get("left_out") == 2 and "left_out" not in ends["r2"], ends
    assert ends["r1"]["content"] == ends["r2"]["content"] == done["content"]


@pytest.mark.parametrize("mode", ["cli", "script"])
@pytest.mark.parametrize("case, code", [
    ("missing_model", wp.E_MODEL_NOT_FOUND),
    ("missing_adapter", wp.E_ADAPTER_NOT_FOUND),
    ("mismatched_adapter", wp.E_ADAPTER_MISMATCH),
])
def test_load_errors_have_codes_and_hints(spare, tiny, tmp_path, mode, case, code):
    spec = {
        "missing_model": model_spec(tiny) | {"base_model_path": "/nonexistent/model"},
        "missing_adapter": model_spec(tiny) | {"adapter_path": str(tmp_path / "no-adapter")},
        "mismatched_adapter": model_spec(tiny, base="other_base"),
    }[case]
    wrapper = spare(mode)
    error = wrapper.load(spec)
    assert error["event"] == "error", error
    assert error["code"] == code, error
    assert error["hint"] == wp.ERROR_HINTS[code]
    wrapper.send({"op": "chat", "id": "x", "messages": [user("hi")]})
    not_loaded, _ = wrapper.until("error")
    assert not_loaded["code"] == wp.E_NOT_LOADED


@pytest.mark.parametrize("mode, shadow, code, extra", [
    ("cli", "no_pexpect", wp.E_PEXPECT_MISSING, {}),
    ("script", "no_llamafactory", wp.E_LLAMAFACTORY_MISSING, {}),
    ("cli", None, wp.E_CLI_NOT_FOUND, {"cli_path": "/nonexistent/llamafactory-cli"}),
])
def test_missing_box_software_is_named(box_python, tiny, tmp_path, mode, shadow, code, extra):
    env = {"PYTHONPATH": str(SHADOWS / shadow)} if shadow else None
    wrapper = WrapperProcess(box_python, mode, tmp_path / "spy.jsonl", env=env)
    try:
        error = wrapper.load(model_spec(tiny) | extra)
        assert (error["event"], error["code"]) == ("error", code), error
    finally:
        wrapper.kill()


# A CLI that outlives pexpect's close(force=True): pexpect gives a killed child 0.1 s to be
# reaped and raises if it is not, which a loaded machine made happen (a fresh-clone run left
# lfgate-cli-* behind after SIGTERM, and a one-shot job printed nothing). Run on the box's
# Python, where pexpect is.
SLOW_TO_DIE = r"""
import os, subprocess, sys, tempfile
sys.path.insert(0, sys.argv[1])
import pexpect
import chat_cli_wrapper

class SlowToDie:
    def __init__(self):
        self.proc = subprocess.Popen(["sleep", "600"])
        self.pid = self.proc.pid
    def isalive(self):
        return False  # so unload() goes straight to closing it
    def close(self, force=True):
        raise pexpect.ExceptionPexpect("Could not terminate the child.")

engine = chat_cli_wrapper.CliEngine()
engine._dir = tempfile.mkdtemp(prefix="lfgate-cli-")
child = engine._child = SlowToDie()
engine.unload()
print(os.path.isdir(engine._dir), child.proc.poll() is not None)
"""


def test_a_cli_that_outlives_close_is_killed_and_its_temp_dir_removed(box_python):
    done = subprocess.run([box_python, "-c", SLOW_TO_DIE, str(ROOT / "remote")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "True"], "temp dir removed, child ended"


@pytest.mark.parametrize("mode", ["cli", "script"])
@pytest.mark.parametrize("how", ["eof", "sigterm", "sighup"])
def test_shutdown_leaves_no_process_behind(box_python, tiny, tmp_path, mode, how):
    if mode == "script" and how == "sighup":
        pytest.skip("script mode has no child; SIGTERM covers its signal path")
    temp = tmp_path / "tmp"
    temp.mkdir()
    wrapper = WrapperProcess(box_python, mode, tmp_path / "spy.jsonl", env={"TMPDIR": str(temp)})
    assert wrapper.load(model_spec(tiny), GREEDY)["event"] == "ready"
    children = child_pids(wrapper.proc.pid)
    if mode == "cli":
        assert children, "the CLI runs as the wrapper's child"
        assert [p.name for p in temp.iterdir() if p.name.startswith("lfgate-cli-")]
    if how == "eof":
        wrapper.proc.stdin.close()
    else:
        wrapper.proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGHUP)
    wrapper.proc.wait(timeout=30)
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if alive(pid)]
    assert not [p for p in temp.iterdir() if p.name.startswith("lfgate-cli-")], "left in TMPDIR"


def test_cli_dies_with_a_killed_wrapper(box_python, tiny, tmp_path):
    wrapper = WrapperProcess(box_python, "cli", tmp_path / "spy.jsonl")
    assert wrapper.load(model_spec(tiny), GREEDY)["event"] == "ready"
    children = child_pids(wrapper.proc.pid)
    assert children
    wrapper.proc.kill()  # SIGKILL: no cleanup code runs in the wrapper
    wrapper.proc.wait()
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if alive(pid)]


@pytest.mark.parametrize("mode", ["cli", "script"])
def test_one_shot_prints_exactly_one_json_object(box_python, tiny, mode):
    job = model_spec(tiny) | {"message": "Hello there", **GREEDY}
    result = subprocess.run([box_python, str(WRAPPERS[mode]), json.dumps(job)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    reply = json.loads(lines[0])
    assert set(reply) == {"role", "content"} and reply["role"] == "assistant"
    assert reply["content"]

    # The same job on stdin (how a caller keeps message text out of argv).
    piped = subprocess.run([box_python, str(WRAPPERS[mode]), "-"], input=json.dumps(job),
                           capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0, piped.stderr[-2000:]
    assert json.loads(piped.stdout) == reply  # greedy: the same reply


# A wrapper's end while a daemon thread is still inside torch (as generate's thread can be,
# finishing its last step on a busy machine): argv[2] is how the wrapper's program ends.
# Here main() returns at once (no job: the usage, status 2), with two such threads running and
# an atexit callback registered.
TORCH_AT_EXIT = """
import atexit, sys, threading
import torch
sys.path.insert(0, sys.argv[1])
import wrapper_serve
ending = sys.argv[2]
a = torch.randn(300, 300)
def spin():
    while True:
        torch.mm(a, a)
for _ in range(2):
    threading.Thread(target=spin, daemon=True).start()
atexit.register(print, "atexit ran", file=sys.stderr)
sys.argv = ["wrapper"]
if ending == "run_and_exit":
    wrapper_serve.run_and_exit(lambda: None)
sys.exit(wrapper_serve.main(lambda: None))
"""


def test_a_wrapper_ends_with_its_status_while_a_thread_is_inside_torch(box_python):
    """Python's finalization ends such a thread as it takes the GIL back, and unwinding
    torch's C++ frames that way aborts the process (SIGABRT, "terminate called without an
    active exception"): a one-shot job that had printed its answer once exited -6 in a full
    run. The wrappers end by run_and_exit, past finalization; the plain ending (the control)
    shows the abort is real here."""
    def ending(how: str) -> subprocess.CompletedProcess:
        return subprocess.run([box_python, "-c", TORCH_AT_EXIT, str(ROOT / "remote"), how],
                              capture_output=True, text=True, timeout=120, check=False)
    ours = [ending("run_and_exit") for _ in range(3)]
    for done in ours:
        assert done.returncode == 2, done.stderr[-2000:]
        assert "usage:" in done.stderr and "atexit ran" in done.stderr
        assert "terminate called" not in done.stderr
    control = []  # up to three tries; the first abort is enough
    while len(control) < 3 and not any(d.returncode == -signal.SIGABRT for d in control):
        control.append(ending("sys.exit"))
    assert any(done.returncode == -signal.SIGABRT for done in control), (
        "the plain ending no longer aborts here: the condition this test guards is gone",
        [(done.returncode, done.stderr[-300:]) for done in control])


@pytest.mark.parametrize("mode", ["cli", "script"])
def test_one_shot_error_is_json_with_nonzero_exit(box_python, tiny, mode):
    job = model_spec(tiny) | {"base_model_path": "/nonexistent/model", "message": "hi"}
    result = subprocess.run([box_python, str(WRAPPERS[mode]), json.dumps(job)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == wp.E_MODEL_NOT_FOUND
    assert "/nonexistent/model" in error["message"]


def test_wrappers_import_nothing_from_the_gateway():
    for path in Path(ROOT / "remote").glob("*.py"):
        source = path.read_text()
        assert "lfgate" not in source.replace("lfgate-", ""), path
        assert "from backend" not in source and "import backend" not in source, path


def test_a_loads_params_are_no_defaults_for_later_turns(served):
    """The gateway sends every turn's params whole; what the load came with (the chat that
    loaded the model) must not leak into another chat's turn."""
    done, before = served.chat("no-params", [user("Tell me a long story")], {"temperature": 0})
    assert done["event"] == "done", done
    if served.mode == "script":
        assert "max_new_tokens" not in served.spied()[-1]["kwargs"]
        assert done["usage"]["completion_tokens"] > GREEDY["max_new_tokens"]
    else:  # the CLI's flags are the turn's own: a restart without the load's max_new_tokens
        restarted = [e["message"] for e in before if e.get("code") == wp.INFO_CLI_RESTARTED]
        assert restarted and "max_new_tokens" in restarted[0]
