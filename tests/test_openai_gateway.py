"""Issue 13 end to end: the official `openai` client -> `lfgate serve` /v1 -> asyncssh -> the
real OpenSSH sshd -> the wrapper -> the real LlamaFactory, with the base and discovered
checkpoints chosen by id. Replies are checked against a ChatModel loaded with that model
alone and asked the same conversation directly (tests/wrapper_process.py)."""

from __future__ import annotations

import openai
import pytest

from tests.rig.saves_tree import make_saves
from tests.ui_rig import start_real_gateway
from tests.wrapper_process import WrapperProcess

pytestmark = pytest.mark.box

CHECKPOINT = "tiny--lora--sft-a--checkpoint-10"
SYSTEM = "You are a terse assistant."
CONVERSATION = [
    {"role": "user", "content": "Hello, how are you today?"},
    {"role": "assistant", "content": "Fine, thanks."},
    {"role": "user", "content": "Tell me about the sea."},
]


@pytest.fixture(scope="module")
def gateway(sshd, box_python, tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("v1-saves") / "saves"
    make_saves(root, tiny["base"], adapters=[tiny["adapter"], tiny["adapter2"]])
    process = start_real_gateway(sshd, box_python, tiny, tmp_path_factory.mktemp("gw-v1"),
                                 env={"ADAPTER_DIRS": str(root), "RESCAN_INTERVAL": "0",
                                      "GATEWAY_TOKEN": "t0ken-for-v1"})
    process.http.post("/api/models/refresh", timeout=120)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="t0ken-for-v1", timeout=300,
                         max_retries=0)


def direct_reply(reference: WrapperProcess, spec: dict, params: dict) -> str:
    """What a ChatModel loaded with this model alone answers to the conversation (the
    load replaces whatever `reference`, a script wrapper, held before)."""
    ready = reference.load({"base_model_path": spec["base_model_path"],
                            "adapter_path": spec["adapter_path"],
                            "template": spec["template"]}, params)
    assert ready["event"] == "ready", ready
    done, _ = reference.chat("ref", CONVERSATION, {**params, "system": SYSTEM})
    return done["content"]


def check_sdk_reply(client, reference: WrapperProcess, model: str, messages: list[dict],
                    spec: dict) -> None:
    """The SDK's whole and streamed replies agree, and equal the reference's."""
    whole = client.chat.completions.create(model=model, messages=messages,
                                           temperature=0, max_tokens=24)
    stream = client.chat.completions.create(model=model, messages=messages,
                                            temperature=0, max_tokens=24, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    content = whole.choices[0].message.content
    assert content and streamed == content, model
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].usage == whole.usage
    assert whole.usage.prompt_tokens > 10 and 0 < whole.usage.completion_tokens <= 24
    greedy = {"temperature": 0, "max_new_tokens": 24}
    assert content == direct_reply(reference, spec, greedy), model


def test_the_sdk_lists_and_chats_with_the_base_and_a_checkpoint(gateway, client, box_python,
                                                                tmp_path):
    ids = [m.id for m in client.models.list()]
    assert {"base", "default", CHECKPOINT} <= set(ids)
    assert client.models.retrieve(CHECKPOINT).parent == "base"
    specs = {m["id"]: m for m in gateway.http.get("/api/models").json()["models"]}
    messages = [{"role": "system", "content": SYSTEM}, *CONVERSATION]
    # One reference process for both models: LlamaFactory's import is paid once.
    reference = WrapperProcess(box_python, "script", tmp_path / "spy.jsonl")
    try:
        for model in ("base", CHECKPOINT):
            check_sdk_reply(client, reference, model, messages, specs[model])
    finally:
        reference.kill()
    # Both served by one process holding the base once.
    (shared,) = [s for s in gateway.http.get("/api/models").json()["serving"] if s["shared"]]
    assert shared["held"]["base_loads"] == 1


def test_errors_are_the_sdks_own_classes(gateway, client):
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="tiny--lora--no-such-run", messages=CONVERSATION)
    assert "tiny--lora--no-such-run" in missing.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        # At most 8 choices (rows of one generate call).
        client.chat.completions.create(model=CHECKPOINT, messages=CONVERSATION, n=9)
    assert bad.value.param == "n"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="wrong",
                      max_retries=0).models.list()


def test_seed_and_stop_are_honoured_on_the_real_engine(client):
    def ask(**extra) -> openai.types.chat.ChatCompletion:
        return client.chat.completions.create(model=CHECKPOINT, messages=CONVERSATION,
                                              max_tokens=24, **extra)

    sampled = [ask(temperature=1.0, seed=seed).choices[0].message.content
               for seed in (11, 11, 12, 13)]
    assert sampled[0] == sampled[1]
    assert len(set(sampled)) > 1, "different seeds all gave the same sampled reply"

    greedy = ask(temperature=0).choices[0].message.content
    stop = next(greedy[i:i + 3] for i in range(4, len(greedy) - 3)
                if greedy[i:i + 3].strip() and greedy.find(greedy[i:i + 3]) == i)
    cut = ask(temperature=0, stop=[stop])
    assert cut.choices[0].message.content == greedy[:greedy.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
