"""Fast checks of the box-side pieces that need no box: protocol validation, reply parsing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# Import the box-side modules the way the box does (by file name), so their classes are the
# same objects the wrappers raise.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "remote"))

from chat_cli_wrapper import (
    _PROMPT,
    MAX_MESSAGE_CHARS,
    ReplyStream,
    _typed,
    prepare_message,
)

import wrapper_protocol as wp
import wrapper_serve
from wrapper_serve import check_paths, classify_failure


def feed_all(chunks: list[str]) -> tuple[str, bool, str]:
    stream = ReplyStream()
    shown = "".join(stream.feed(chunk) for chunk in chunks)
    return shown, stream.ends_with_prompt(), stream.finish()


def test_prompt_split_across_reads_is_held_back_then_dropped():
    shown, at_prompt, tail = feed_all(["Hello", " world\r", "\n\r\nUs", "er: "])
    assert at_prompt
    assert shown + tail == "Hello world"


def test_user_prompt_inside_a_reply_is_released_when_the_reply_goes_on():
    shown, at_prompt, tail = feed_all(["a", _PROMPT, "b"])
    assert not at_prompt
    assert shown + tail == "a\n\nUser: b"


def test_escapes_and_log_lines_are_removed_even_when_split():
    chunks = ["red \x1b[3", "1mtext\x1b[0m\r\n", "[WARNING|2026-01-02 03:04:05] llamafactory",
              ".chat:1 >> slow\r\n", "[1] a list item\r\n"]
    shown, _, tail = feed_all(chunks)
    assert shown + tail == "red text\n[1] a list item\n"


def test_prepare_message_keeps_text_and_reports_changes():
    assert prepare_message("plain\ttext\nline") == ("plain\ttext\nline", [])
    text, notes = prepare_message("a\x07b\r\nc")
    assert text == "ab\nc" and notes
    for command in ("exit", "clear", " exit\n"):
        text, notes = prepare_message(command)
        assert text == command + "\u200b" and text.strip() != command.strip() and notes


def test_prepare_message_refuses_over_the_limit_naming_it():
    prepare_message("x" * MAX_MESSAGE_CHARS)
    with pytest.raises(wp.WrapperError) as error:
        prepare_message("x" * (MAX_MESSAGE_CHARS + 1))
    assert error.value.code == wp.E_MESSAGE_TOO_LONG
    assert str(MAX_MESSAGE_CHARS) in error.value.message


def test_newlines_and_tabs_are_typed_literally():
    assert _typed("a\nb\tc") == "a\x16\nb\x16\tc\r"


@pytest.mark.parametrize("params, field", [
    ({"temperature": True}, "temperature"),
    ({"enable_thinking": "false"}, "enable_thinking"),
    ({"top_k": 1.5}, "top_k"),
    ({"max_tokens": 3}, "max_tokens"),
])
def test_bad_params_are_named(params, field):
    with pytest.raises(wp.WrapperError) as error:
        wp.check_params(params)
    assert field in error.value.message and error.value.code == wp.E_BAD_REQUEST


def test_params_drop_nones_and_keep_values():
    assert wp.check_params({"temperature": 0, "system": None, "enable_thinking": False}) == {
        "temperature": 0, "enable_thinking": False}


@pytest.mark.parametrize("messages", [
    [],
    [{"role": "assistant", "content": "x"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
    [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}],
    [{"role": "user", "content": 3}],
])
def test_bad_histories_are_refused(messages):
    with pytest.raises(wp.WrapperError):
        wp.check_messages(messages)


def test_model_spec_defaults_and_validation():
    spec = wp.check_model({"base_model_path": "/m", "adapter_path": ""})
    assert spec["adapter_path"] is None and spec["finetuning_type"] == "lora"
    with pytest.raises(wp.WrapperError):
        wp.check_model({"base_model_path": "/m", "adapter": "/a"})
    with pytest.raises(wp.WrapperError):
        wp.check_model({"template": "qwen"})


def test_decode_refuses_non_objects():
    assert wp.decode('{"op": "ping"}') == {"op": "ping"}
    for line in ("[1]", "nope", '"op"'):
        with pytest.raises(wp.WrapperError):
            wp.decode(line)


def test_failures_are_classified():
    assert classify_failure("CUDA out of memory. Tried", "x").code == wp.E_OUT_OF_MEMORY
    assert classify_failure("size mismatch for q_proj", "x").code == wp.E_ADAPTER_MISMATCH
    assert classify_failure("something else", "load_failed").code == "load_failed"


def test_hub_ids_are_left_to_llamafactory(tmp_path):
    check_paths(wp.check_model({"base_model_path": "Qwen/Qwen2-0.5B"}))
    with pytest.raises(wp.WrapperError) as error:
        check_paths(wp.check_model({"base_model_path": str(tmp_path / "missing")}))
    assert error.value.code == wp.E_MODEL_NOT_FOUND


def test_every_error_code_has_a_hint():
    codes = {v for k, v in vars(wp).items() if k.startswith("E_")}
    assert codes == set(wp.ERROR_HINTS)


REMOTE = Path(__file__).resolve().parent.parent / "remote"


@pytest.mark.parametrize("script", ["chat_inference.py", "chat_cli_wrapper.py"])
@pytest.mark.parametrize("job, stdin, said", [
    ('{"base_model_path": "/m", "message": "hi",}', None,
     "the job on the argument is not valid JSON: Expecting property name enclosed in double "
     "quotes at line 1, column 43:\n"
     '  {"base_model_path": "/m", "message": "hi",}\n' + " " * 44 + "^"),
    ("-", "{'message': 'hi'}", "the job on stdin is not valid JSON: Expecting property name"),
    ("-", "[1, 2]", "the job on stdin must be a JSON object, not list"),
    ('{"base_model_path": "/m"}', None, "the job needs a string 'message'"),
])
def test_a_one_shot_job_typed_by_hand_is_told_what_is_wrong(script, job, stdin, said):
    """The one-shot interface answers a person: where the JSON is wrong, not a hint about
    gateway versions (that hint is for the --serve protocol)."""
    result = subprocess.run([sys.executable, str(REMOTE / script), job], input=stdin or "",
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "bad_request"
    assert error["message"].startswith(said), error["message"]
    assert "gateway" not in error["hint"] and "Pass one JSON object" in error["hint"]


@pytest.mark.parametrize("stops, pieces, sent", [
    (["END"], ["abc", "dE", "ND more"], "abcd"),  # split over three chunks
    (["END"], ["abc", "dEN", "x", "END"], "abcdENx"),  # a false start is sent once clear
    (["\nUser:", "###"], ["Hi", "\nUs", "er: hello"], "Hi"),
    (["ab", "b"], ["xa", "b"], "x"),  # the match that starts first wins
    (["zz"], ["no", " stop", " here z"], "no stop here z"),  # held back, then flushed
])
def test_stop_strings_are_cut_and_never_sent_in_part(stops, pieces, sent):
    events: list[dict] = []
    turn = wrapper_serve.Turn("t", [{"role": "user", "content": "q"}], {"stop": stops},
                              events.append)
    for piece in pieces:
        if not turn.cancelled.is_set():
            turn.emit_text(piece)
    content, finish = turn.finish_text(wrapper_serve.ChatOutcome("".join(pieces), "stop"))
    streamed = "".join(e["text"] for e in events if e["event"] == wp.EV_DELTA)
    assert content == streamed == sent
    assert finish == wp.FINISH_STOP
    assert turn.stop_matched == (sent != "".join(pieces))


@pytest.mark.parametrize("stop", [[], ["a"] * 5, [""], ["x" * 257], [3], "END"])
def test_bad_stop_params_are_refused(stop):
    with pytest.raises(wp.WrapperError, match="stop"):
        wp.check_params({"stop": stop})


@st.composite
def conversations(draw) -> list[dict[str, str]]:
    """What a page chat sends: asking and answering turns alternating, a tool's call and its
    result among them, ending with an asking turn; words of any length."""
    pairs = draw(st.integers(0, 8))
    texts = st.integers(0, 40).map(lambda n: " ".join(["w"] * n))
    messages: list[dict[str, str]] = []
    for _ in range(pairs):
        asking = draw(st.sampled_from(["user", "user", "observation"]))
        answering = "function" if draw(st.booleans()) and asking == "user" else "assistant"
        messages += [{"role": asking, "content": draw(texts)},
                     {"role": answering, "content": draw(texts)}]
    return [*messages, {"role": draw(st.sampled_from(["user", "observation"])),
                        "content": draw(texts)}]


@settings(max_examples=300, deadline=None)
@given(conversations(), st.integers(0, 200))
def test_drop_to_fit_leaves_out_the_fewest_earliest_turns_at_a_user_message(messages, most):
    """The page's fit (protocol 6): a suffix that starts at a user message (never a tool's
    result without its call), keeps the last message, fits when any cut fits, and no later
    cut was needed (the fewest left out)."""
    def words(part):
        return sum(len(m["content"].split()) for m in part) + 1

    cut = wrapper_serve.drop_to_fit(messages, words, most)
    cuts = [i for i in range(1, len(messages)) if messages[i]["role"] == "user"]
    assert 0 <= cut < len(messages)
    if cut:
        assert cut in cuts and messages[cut]["role"] == "user"
    if words(messages) <= most:
        assert cut == 0
    elif any(words(messages[i:]) <= most for i in cuts):
        assert words(messages[cut:]) <= most
        assert all(words(messages[i:]) > most for i in [0, *cuts] if i < cut)
    elif cuts:
        assert cut == cuts[-1]  # nothing fits: the last turn alone, which the check refuses


@settings(max_examples=200)
@given(texts=st.lists(st.sampled_from(["", "a", "bc", " de", "\n", "é"]), max_size=12),
       cuts=st.lists(st.integers(0, 40), max_size=8), scored=st.integers(0, 12))
def test_streamed_logprobs_never_run_ahead_of_the_text_and_miss_nothing(texts, cuts, scored):
    """A chat's logprobs as they stream (chat_inference._StreamedLogprobs): whatever the
    tokens' texts (special ones have none), however the text went out (held back, in odd
    pieces) and however far generate's thread has scored, each delta's entries are the next
    tokens in order, their text is never past what was sent, and once everything was sent
    and scored all are carried but a trailing token without text (the end-of-turn one)."""
    from chat_inference import _GenerationRecord, _StreamedLogprobs

    record = _GenerationRecord()
    record.step_logits = [None] * min(scored, len(texts))
    record.step_tokens = list(range(len(record.step_logits)))
    record._entries = {step: {"token": text} for step, text in enumerate(texts)}
    whole = "".join(texts)
    streamed = _StreamedLogprobs(tokenizer=None, record=record, top=0)
    carried: list[dict] = []
    sent = 0
    for cut in sorted(cuts):
        sent = min(cut, len(whole))
        carried += streamed(sent)
        assert "".join(e["token"] for e in carried) == whole[:len("".join(
            e["token"] for e in carried))]
        assert len("".join(e["token"] for e in carried)) <= sent
    record.step_logits = [None] * len(texts)
    record.step_tokens = list(range(len(texts)))
    carried += streamed(len(whole))
    assert carried == [{"token": text} for text in texts][:len(carried)]
    last_with_text = max((i for i, t in enumerate(texts) if t), default=-1)
    assert len(carried) == last_with_text + 1
